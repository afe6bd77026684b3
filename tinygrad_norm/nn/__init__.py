"""tinygrad_norm.nn: Module, layers, losses, init and functional, with PyTorch's names."""

from . import functional, init, parallel
from .activation import LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
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
from .sync_batch_norm import SyncBatchNorm

__all__ = [
    "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Conv2d", "CrossEntropyLoss",
    "Dropout", "Flatten", "GroupNorm", "Identity", "InstanceNorm1d", "InstanceNorm2d",
    "InstanceNorm3d", "LayerNorm", "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d",
    "LazyInstanceNorm1d", "LazyInstanceNorm2d", "LazyInstanceNorm3d", "Linear",
    "LocalResponseNorm", "LogSoftmax", "MSELoss", "MaxPool2d", "Module", "ModuleList", "NLLLoss",
    "Parameter", "RMSNorm", "ReLU", "Sequential", "Sigmoid", "Softmax", "SyncBatchNorm", "Tanh",
    "UninitializedBuffer", "UninitializedParameter", "functional", "init", "parallel",
]
