"""tinygrad_norm: a small tensor and autograd engine for studying normalization layers."""

import kernels  # noqa: F401, I001  (first: its thread defaults must precede numpy's OpenBLAS)
import numpy as _np

from .autograd import Function, enable_grad, is_grad_enabled, no_grad
from .checkpoint import load, save
from .gradcheck import GradcheckError, gradcheck
from .random import manual_seed
from .tensor import (
    Tensor,
    arange,
    cat,
    full,
    ones,
    ones_like,
    rand,
    randn,
    stack,
    tensor,
    zeros,
    zeros_like,
)

float32 = _np.float32
float64 = _np.float64
float16 = _np.float16
int64 = _np.int64

from . import nn, optim  # noqa: E402  (nn and optim build on the names above)
from .interop import from_torch, to_torch  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Function", "GradcheckError", "Tensor", "arange", "cat", "enable_grad", "float16", "float32",
    "float64", "from_torch", "full", "gradcheck", "int64", "is_grad_enabled", "load",
    "manual_seed", "nn", "no_grad", "ones", "ones_like", "optim", "rand", "randn", "save",
    "stack", "tensor", "to_torch", "zeros", "zeros_like",
]
