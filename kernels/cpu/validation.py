"""Argument checks run by the public wrappers before any kernel.

Numba kernels do not check bounds, so every shape, dtype and layout assumption
is checked here, and the error says which argument, what was expected and what
was received. Nothing is copied or converted: the caller makes arrays contiguous.
"""

from __future__ import annotations

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_array(name: str, array: object, ndim: int, dtype: np.dtype | None = None) -> None:
    """`array` must be a C-contiguous float32/float64 ndarray of rank `ndim`
    (and of `dtype` when given, i.e. the dtype of x)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(array).__name__}")
    if array.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {array.dtype}")
    if dtype is not None and array.dtype != dtype:
        raise TypeError(f"{name} must have the dtype of x ({dtype}), got {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(
            f"{name} must be {ndim}-D, got {array.ndim}-D array of shape {array.shape}"
        )
    if not array.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous (use numpy.ascontiguousarray), got strides "
            f"{array.strides} for shape {array.shape}"
        )


def check_shape(name: str, array: np.ndarray, expected: tuple[int, ...], why: str) -> None:
    if array.shape != expected:
        raise ValueError(f"{name} must have shape {expected} ({why}), got {array.shape}")


def check_like(name: str, array: np.ndarray, like: np.ndarray, like_name: str) -> None:
    """`array` must match `like` (named `like_name`) in rank, shape, dtype and layout."""
    check_array(name, array, like.ndim, like.dtype)
    check_shape(name, array, like.shape, f"the shape of {like_name}")


def check_vector(name: str, array: np.ndarray | None, size: int, dtype: np.dtype, why: str,
                 optional: bool = True) -> None:
    """A per-column or per-channel vector of length `size`; None is accepted when `optional`
    (weight, bias) and refused otherwise (statistics, running estimates)."""
    if array is None and optional:
        return
    check_array(name, array, 1, dtype)
    check_shape(name, array, (size,), why)


def check_eps(eps: object) -> None:
    """Only eps's type: its value is the framework's rule (PyTorch's layers compute with zero,
    negative, NaN or infinite eps; batch_norm's own limits are checked in nn.functional)."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")


def check_num_groups(num_groups: object, channels: int) -> None:
    if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)):
        raise TypeError(f"num_groups must be an int, got {type(num_groups).__name__}")
    if num_groups <= 0:
        raise ValueError(f"num_groups must be a positive int, got {num_groups}")
    if channels % num_groups:
        raise ValueError(
            f"num_groups must divide the number of channels: x has {channels} channels, "
            f"not divisible by num_groups={num_groups}"
        )
