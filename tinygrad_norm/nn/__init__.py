"""tinygrad_norm.nn: Module, layers, losses, init and functional, with PyTorch's names."""

from . import functional, init, utils
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
    RMSNorm,
)
from .parameter import Parameter
from .pooling import AvgPool2d, MaxPool2d
from .rnn import GRU, LSTM, RNN, GRUCell, LayerNormLSTMCell, LSTMCell, RNNCell

__all__ = [
    "GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "LayerNormLSTMCell", "RNNCell", "utils",
    "BatchRenorm1d", "BatchRenorm2d",
    "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Conv2d", "CrossEntropyLoss",
    "Dropout", "Flatten", "GroupNorm", "Identity", "InstanceNorm1d", "InstanceNorm2d",
    "InstanceNorm3d", "LayerNorm", "Linear", "LogSoftmax", "MSELoss", "MaxPool2d", "Module",
    "ModuleList", "NLLLoss", "Parameter", "RMSNorm", "ReLU", "Sequential", "Sigmoid", "Softmax",
    "Tanh", "functional", "init",
]
