"""tinygrad_norm.nn: Module, layers, losses, init and functional, with PyTorch's names."""

from . import functional, init, parallel, utils
from .activation import LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .batch_renorm import BatchRenorm1d, BatchRenorm2d
from .container import ModuleList, Sequential
from .conv import Conv2d
from .dropout import Dropout
from .flatten import Flatten
from .linear import Identity, Linear
from .loss import CrossEntropyLoss, MSELoss, NLLLoss
from .module import Module
from .normalization import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    LayerNorm,
    LazyBatchNorm1d,
    LazyBatchNorm2d,
    LazyBatchNorm3d,
    LazyInstanceNorm1d,
    LazyInstanceNorm2d,
    LazyInstanceNorm3d,
    LocalResponseNorm,
    RMSNorm,
)
from .parameter import Parameter, UninitializedBuffer, UninitializedParameter
from .pooling import AvgPool2d, MaxPool2d
from .rnn import GRU, LSTM, RNN, GRUCell, LayerNormLSTMCell, LSTMCell, RNNCell
from .sync_batch_norm import SyncBatchNorm

__all__ = [
    "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "BatchRenorm1d", "BatchRenorm2d",
    "Conv2d", "CrossEntropyLoss", "Dropout", "Flatten", "GRU", "GRUCell", "GroupNorm", "Identity",
    "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "LSTM", "LSTMCell", "LayerNorm",
    "LayerNormLSTMCell", "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d",
    "LazyInstanceNorm1d", "LazyInstanceNorm2d", "LazyInstanceNorm3d", "Linear",
    "LocalResponseNorm", "LogSoftmax", "MSELoss", "MaxPool2d", "Module", "ModuleList", "NLLLoss",
    "Parameter", "RMSNorm", "RNN", "RNNCell", "ReLU", "Sequential", "Sigmoid", "Softmax",
    "SyncBatchNorm", "Tanh", "UninitializedBuffer", "UninitializedParameter", "functional",
    "init", "parallel", "utils",
]
