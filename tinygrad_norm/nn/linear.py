"""Linear (y = x W^T + b) and Identity."""

from __future__ import annotations

import math

import numpy as np

from ..tensor import Tensor, _as_dtype, _normalize_device
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


def empty_parameter(shape: tuple, device, dtype) -> Parameter:
    """An uninitialised CPU Parameter with `dtype` (float32 default); `device` is checked here
    and applied by the module once its parameters are initialized."""
    _normalize_device(device)
    return Parameter(np.empty(shape, dtype=_as_dtype(dtype)))


def default_init(weight: Parameter, bias: Parameter | None) -> None:
    """PyTorch's default for Linear and Conv2d: weight ~ kaiming_uniform_(a=sqrt(5)), i.e.
    U(+-1/sqrt(fan_in)), and bias ~ U(+-1/sqrt(fan_in))."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = init._calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(bias, -bound, bound)


def add_weight_and_bias(module: Module, weight_shape: tuple, bias: bool, device,
                        dtype) -> None:
    """Register `weight` (and `bias` of size weight_shape[0], or None), fill them with
    module.reset_parameters(), then move them to `device` (the generator is on the host)."""
    module.weight = empty_parameter(weight_shape, device, dtype)
    if bias:
        module.bias = empty_parameter(weight_shape[:1], device, dtype)
    else:
        module.register_parameter("bias", None)
    module.reset_parameters()
    if device is not None:
        module.to(device)


class Identity(Module):
    """Returns its input unchanged; any constructor arguments are ignored, as in PyTorch."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def forward(self, input: Tensor) -> Tensor:
        return input


class Linear(Module):
    """y = x @ weight.T + bias; weight (out_features, in_features), bias (out_features,).

    Initialised like PyTorch: weight ~ kaiming_uniform_(a=sqrt(5)), i.e. U(+-1/sqrt(in)),
    and bias ~ U(+-1/sqrt(in_features)).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        add_weight_and_bias(self, (out_features, in_features), bias, device, dtype)

    def reset_parameters(self) -> None:
        default_init(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
