"""Functional normalizations: batch_norm, layer_norm, instance_norm, group_norm, rms_norm,
local_response_norm.

PyTorch's signatures. Each checks the user's arguments (shapes, dtypes, sizes) and raises a
clear error naming what was expected and what was received, then calls one autograd Function
from tinygrad_norm.nn.norm_ops, which runs the forward and backward kernels.
"""

from __future__ import annotations

import math
import operator
from typing import Sequence

import numpy as np

from ..tensor import Tensor
from . import norm_ops

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _size_text(shape: tuple) -> str:
    return f"[{', '.join(str(s) for s in shape)}]"


def _check_input(input, name: str) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
    if input.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name}: input dtype {input.dtype} is not supported; expected float32 or float64"
        )


def _check_param(param, expected_shape: tuple, input: Tensor, what: str, name: str):
    """Return the parameter as given (a Tensor, or None) after checking its shape and dtype."""
    if param is None:
        return None
    array = param.data if isinstance(param, Tensor) else np.asarray(param)
    if tuple(array.shape) != tuple(expected_shape):
        raise RuntimeError(
            f"{name}: {what} has shape {_size_text(array.shape)}, expected "
            f"{_size_text(expected_shape)}"
        )
    if array.dtype != input.dtype:
        raise TypeError(
            f"{name}: input dtype {input.dtype} does not match {what} dtype {array.dtype}; "
            f"convert one of them (module.double() / module.float() or input.to(dtype))"
        )
    return param


def _real(value, what: str, name: str) -> float:
    """PyTorch's rule for eps, momentum and LRN's alpha/beta/k: any real number, bools and NumPy
    scalars included (True is 1.0). Its value is not checked: zero, negative, NaN and infinite
    values compute (a negative eps below -var gives NaN), except batch_norm's eps below."""
    if isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
        return float(value)
    raise TypeError(f"{name}: {what} must be a real number, got {type(value).__name__}")


def _check_eps(eps, name: str) -> float:
    return _real(eps, "eps", name)


def _batch_norm_eps(eps, training: bool) -> float:
    """batch_norm alone restricts eps's value: > 0 in training (the batch's variance can be 0),
    >= 0 with running statistics. NaN passes, as in PyTorch (both comparisons are False)."""
    eps = _real(eps, "eps", "batch_norm")
    if training and eps <= 0:
        raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    if eps < 0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")
    return eps


def _int_arg(value, what: str, name: str) -> int:
    """An int argument (sizes, num_groups): Python or NumPy ints; bools and floats refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: {what} must be an int, got {type(value).__name__}")
    return int(value)


def _as_size(value, what: str) -> int:
    """An integer argument; a float is refused (int() would truncate 5.5 to 5), as PyTorch
    refuses it."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int, got {value!r} of type "
                        f"{type(value).__name__}") from None


def _normalized(normalized_shape) -> tuple:
    if isinstance(normalized_shape, (int, np.integer)):
        return (int(normalized_shape),)
    return tuple(_as_size(s, f"normalized_shape element {i}")
                 for i, s in enumerate(normalized_shape))


def _check_trailing(input: Tensor, normalized_shape: tuple, name: str) -> None:
    n = len(normalized_shape)
    if n == 0 or input.ndim < n or tuple(input.shape[input.ndim - n:]) != normalized_shape:
        raise RuntimeError(
            f"{name}: Given normalized_shape={list(normalized_shape)}, expected input with "
            f"shape [*, {', '.join(str(s) for s in normalized_shape)}], but got input of "
            f"size{_size_text(input.shape)}"
        )


def layer_norm(input: Tensor, normalized_shape: int | Sequence[int], weight=None, bias=None,
               eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing `normalized_shape` dims; elementwise affine."""
    _check_input(input, "layer_norm")
    shape = _normalized(normalized_shape)
    _check_trailing(input, shape, "layer_norm")
    weight = _check_param(weight, shape, input, "weight", "layer_norm")
    bias = _check_param(bias, shape, input, "bias", "layer_norm")
    return norm_ops.LayerNormFunction.apply(input, weight, bias, normalized_ndim=len(shape),
                                            eps=_check_eps(eps, "layer_norm"))


def rms_norm(input: Tensor, normalized_shape: int | Sequence[int], weight=None,
             eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x^2) + eps) * weight; eps None means finfo(input.dtype).eps."""
    _check_input(input, "rms_norm")
    shape = _normalized(normalized_shape)
    _check_trailing(input, shape, "rms_norm")
    weight = _check_param(weight, shape, input, "weight", "rms_norm")
    eps = float(np.finfo(input.dtype).eps) if eps is None else _check_eps(eps, "rms_norm")
    return norm_ops.RMSNormFunction.apply(input, weight, normalized_ndim=len(shape), eps=eps)


def group_norm(input: Tensor, num_groups: int, weight=None, bias=None,
               eps: float = 1e-5) -> Tensor:
    """Statistics per (sample, group of C/num_groups channels); per-channel affine."""
    _check_input(input, "group_norm")
    if input.ndim < 2:
        raise RuntimeError(
            f"group_norm: expected input of shape (N, C, *) with at least 2 dimensions, got "
            f"size{_size_text(input.shape)}"
        )
    num_groups = _int_arg(num_groups, "num_groups", "group_norm")
    channels = input.shape[1]
    if num_groups <= 0:
        raise RuntimeError(f"group_norm: expected num_groups to be greater than 0, got "
                           f"{num_groups}")
    # PyTorch's order: one value per group is refused before divisibility is checked
    _verify_batch_size(input.shape[0] * (channels // num_groups), input.shape[2:],
                       [input.shape[0] * (channels // num_groups), num_groups,
                        *input.shape[2:]])
    if channels % num_groups:
        raise RuntimeError(
            f"group_norm: expected the number of channels of the input ({channels}) to be "
            f"divisible by num_groups ({num_groups}), got input of size{_size_text(input.shape)}"
        )
    weight = _check_param(weight, (channels,), input, "weight", "group_norm")
    bias = _check_param(bias, (channels,), input, "bias", "group_norm")
    return norm_ops.GroupNormFunction.apply(input, weight, bias, num_groups=num_groups,
                                            eps=_check_eps(eps, "group_norm"))


def _verify_batch_size(count: int, spatial: tuple, size: list) -> None:
    """PyTorch's refusal of one value per normalized set in training (its variance is 0/0)."""
    if count * math.prod(spatial) == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                         f"{_size_text(size)}")


def _running_buffer(buffer, channels: int, input: Tensor, what: str, name: str):
    if buffer is None:
        return None
    array = buffer.data if isinstance(buffer, Tensor) else buffer
    if not isinstance(array, np.ndarray):  # updated in place: a copy would lose the update
        raise TypeError(f"{name}: {what} must be a Tensor or numpy array, got "
                        f"{type(buffer).__name__}")
    if array.dtype != input.dtype:  # PyTorch: "mixed dtype (CPU): expect parameter to have..."
        raise TypeError(
            f"{name}: input dtype {input.dtype} does not match {what} dtype {array.dtype}; "
            f"convert one of them (module.double() / module.float() or input.to(dtype))"
        )
    if array.shape != (channels,):
        raise RuntimeError(
            f"{name}: {what} has shape {_size_text(array.shape)} but the input has "
            f"{channels} channels in dimension 1 (input size{_size_text(input.shape)})"
        )
    return array


def batch_norm(input: Tensor, running_mean, running_var, weight=None, bias=None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Per-channel statistics over N and all spatial positions.

    training=True: normalize with the batch's statistics and, when running buffers are given,
    update them in place with `momentum`. training=False: use the running buffers.
    """
    _check_input(input, "batch_norm")
    if training and input.ndim >= 1:
        _verify_batch_size(input.shape[0], input.shape[2:], list(input.shape))
    eps = _batch_norm_eps(eps, training)
    momentum = _real(momentum, "momentum", "batch_norm")
    if input.shape == (0,):  # PyTorch returns an empty 1-D input as it is, whatever the rest
        return input.clone()
    if input.ndim < 2:
        raise ValueError(
            f"batch_norm: expected input of shape (N, C, *) with at least 2 dimensions, got "
            f"size{_size_text(input.shape)}"
        )
    channels = input.shape[1]
    running_mean = _running_buffer(running_mean, channels, input, "running_mean", "batch_norm")
    running_var = _running_buffer(running_var, channels, input, "running_var", "batch_norm")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: give both running_mean and running_var, or neither")
    weight = _check_param(weight, (channels,), input, "weight", "batch_norm")
    bias = _check_param(bias, (channels,), input, "bias", "batch_norm")
    if not training:
        if running_mean is None:
            raise RuntimeError("batch_norm: running_mean must be defined in evaluation mode "
                               "(training=False needs running_mean and running_var)")
        return norm_ops.BatchNormEvalFunction.apply(input, weight, bias, eps=eps,
                                                    running_mean=running_mean,
                                                    running_var=running_var)
    return norm_ops.BatchNormFunction.apply(input, weight, bias, eps=eps, momentum=momentum,
                                            running_mean=running_mean, running_var=running_var)


def instance_norm(input: Tensor, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats: bool = True, momentum: float = 0.1,
                  eps: float = 1e-5) -> Tensor:
    """Statistics per (sample, channel) over the spatial positions; input (N, C, *spatial).

    With use_input_stats and running buffers, the buffers move toward the batch averages of the
    per-instance means and unbiased variances. Without use_input_stats the running buffers
    normalize, as BatchNorm's eval mode does.
    """
    _check_input(input, "instance_norm")
    if input.ndim < 3:
        raise ValueError(
            f"instance_norm: expected input of shape (N, C, *spatial) with at least 3 "
            f"dimensions, got size{_size_text(input.shape)}"
        )
    channels = input.shape[1]
    running_mean = _running_buffer(running_mean, channels, input, "running_mean",
                                   "instance_norm")
    running_var = _running_buffer(running_var, channels, input, "running_var", "instance_norm")
    weight = _check_param(weight, (channels,), input, "weight", "instance_norm")
    bias = _check_param(bias, (channels,), input, "bias", "instance_norm")
    eps = _check_eps(eps, "instance_norm")
    momentum = _real(momentum, "momentum", "instance_norm")
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise RuntimeError("instance_norm: expected running_mean and running_var to be "
                               "defined when use_input_stats is False")
        return norm_ops.BatchNormEvalFunction.apply(input, weight, bias, eps=eps,
                                                    running_mean=running_mean,
                                                    running_var=running_var)
    spatial = math.prod(input.shape[2:])
    if spatial == 1:
        raise ValueError(
            f"Expected more than 1 spatial element when training, got input size "
            f"{_size_text(input.shape)}"
        )
    # one group per channel; zero channels is an empty input, not "num_groups must be positive"
    return norm_ops.GroupNormFunction.apply(input, weight, bias, num_groups=max(channels, 1),
                                            eps=eps, momentum=momentum,
                                            running_mean=running_mean, running_var=running_var)


def local_response_norm(input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> Tensor:
    """x / (k + alpha/size · sum of x^2 over `size` neighbouring channels)^beta, input
    (N, C, *spatial); the window [c - size//2, c + (size-1)//2] counts missing channels as 0."""
    name = "local_response_norm"
    _check_input(input, name)
    if input.ndim < 3:
        raise ValueError(f"{name}: expected 3D or higher dimensionality input (got "
                         f"{input.ndim} dimensions)")
    if input.numel() == 0:  # PyTorch returns the empty input itself, before any other check
        return input
    size = _int_arg(size, "size", name)
    if size <= 0:
        raise RuntimeError(f"{name}: size (the window of channels) should be greater than "
                           f"zero, got {size}")
    alpha, beta, k = (_real(v, what, name) for v, what in ((alpha, "alpha"), (beta, "beta"),
                                                           (k, "k")))
    if input.device != "cpu":
        raise RuntimeError(f"{name}: no {input.device} kernel; move the input to the CPU")
    return norm_ops.LocalResponseNormFunction.apply(input, size=size, alpha=alpha, beta=beta,
                                                    k=k)
