"""Argument checks that every kernel wrapper runs before any kernel, on either backend.

Only what protects memory and typing is checked here: an array's kind (host or device), rank,
dtype, contiguity and shape, and that scalars are of a type the compiled kernels take. A Numba
kernel checks no bounds, so each of these assumptions must hold before it runs, and the error
names the argument, what was expected and what was received. The user-level rules (which eps
values a layer accepts, the user's shapes and argument names) are checked once, by the
framework, where the user's terms are known. Nothing is copied or converted here.

`HOST` checks NumPy arrays (kernels.cpu, kernels.reference); `device(simulator)` checks CUDA
device arrays, anything with `__cuda_array_interface__` (kernels.cuda), where NumPy arrays
stand in under the CUDA simulator. This module imports neither backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _host_contiguous(array: np.ndarray) -> bool:
    return array.flags.c_contiguous


def _interface_contiguous(array) -> bool:
    """C-contiguity read from `__cuda_array_interface__` (strides None means contiguous)."""
    if isinstance(array, np.ndarray):
        return array.flags.c_contiguous
    interface = array.__cuda_array_interface__
    if interface.get("strides") is None:
        return True
    expected = np.dtype(interface["typestr"]).itemsize
    for size, stride in zip(reversed(interface["shape"]), reversed(interface["strides"])):
        if size > 1 and stride != expected:
            return False
        expected *= size
    return True


def array_dtype(array) -> np.dtype:
    """The NumPy dtype of a host or device array; for `__cuda_array_interface__` producers
    (torch, JAX, ...) it is read from the interface's typestr, whatever their own dtype
    objects are."""
    if isinstance(array, np.ndarray):  # first: a missing-attribute getattr costs ~1 us
        return array.dtype
    interface = getattr(array, "__cuda_array_interface__", None)
    if interface is not None:
        return np.dtype(interface["typestr"])
    return np.dtype(array.dtype)


def array_shape(array) -> tuple:
    if isinstance(array, np.ndarray):
        return array.shape
    interface = getattr(array, "__cuda_array_interface__", None)
    if interface is not None:
        return tuple(interface["shape"])
    return tuple(array.shape)


@dataclass(frozen=True)
class Checker:
    """The checks for one kind of array (host or device)."""

    accepts: Callable[[object], bool]
    contiguous: Callable[[object], bool]
    kind: str  # what an accepted array is, for the error message

    def array(self, name: str, array: object, ndim: int, dtype: np.dtype | None = None) -> None:
        """`array` must be a C-contiguous float32/float64 array of this kind and rank `ndim`
        (and of `dtype` when given, i.e. the dtype of x)."""
        if not self.accepts(array):
            raise TypeError(f"{name} must be {self.kind}, got {type(array).__name__}")
        found = array_dtype(array)
        if found not in SUPPORTED_DTYPES:
            raise TypeError(f"{name} must have dtype float32 or float64, got {found}")
        if dtype is not None and found != dtype:
            raise TypeError(f"{name} must have the dtype of x ({dtype}), got {found}")
        shape = array_shape(array)
        if len(shape) != ndim:
            raise ValueError(f"{name} must be {ndim}-D, got {len(shape)}-D array of shape {shape}")
        if not self.contiguous(array):
            raise ValueError(f"{name} must be C-contiguous (make it contiguous first), got a "
                             f"strided array of shape {shape}")

    def shape(self, name: str, array, expected: tuple, why: str) -> None:
        if array_shape(array) != tuple(expected):
            raise ValueError(f"{name} must have shape {tuple(expected)} ({why}), got "
                             f"{array_shape(array)}")

    def like(self, name: str, array, like, like_name: str) -> None:
        """`array` must match `like` (named `like_name`) in rank, shape, dtype and layout."""
        self.array(name, array, len(array_shape(like)), array_dtype(like))
        self.shape(name, array, array_shape(like), f"the shape of {like_name}")

    def vector(self, name: str, array, size: int, dtype: np.dtype, why: str,
               optional: bool = True) -> None:
        """A per-column or per-channel vector of length `size`; None is accepted when
        `optional` (weight, bias) and refused otherwise (statistics, running estimates)."""
        if array is None:
            if optional:
                return
            raise TypeError(f"{name} must be an array of shape ({size},) ({why}), got None")
        self.array(name, array, 1, dtype)
        self.shape(name, array, (size,), why)

    def statistics(self, name: str, array, shape: tuple, dtype: np.dtype, why: str) -> None:
        """Saved statistics (mean, inv_std, ...) of a given shape and x's dtype."""
        if array is None:
            raise TypeError(f"{name} must be an array of shape {shape} ({why}), got None")
        self.array(name, array, len(shape), dtype)
        self.shape(name, array, shape, why)


HOST = Checker(lambda a: isinstance(a, np.ndarray), _host_contiguous, "a numpy.ndarray")


def device(simulator: bool) -> Checker:
    """Device arrays; under the simulator NumPy arrays are the device arrays."""
    def accepts(array) -> bool:
        return hasattr(array, "__cuda_array_interface__") or (
            simulator and isinstance(array, np.ndarray))

    return Checker(accepts, _interface_contiguous,
                   "a CUDA device array (CuPy, numba.cuda, torch or anything with "
                   "__cuda_array_interface__); move it with Tensor.to('cuda') or cupy.asarray")


def check_eps(eps: object) -> float:
    """eps as the float the kernels are compiled for. Its value is the framework's rule (a
    layer may accept zero or negative eps, as PyTorch's do); only its type is checked here."""
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.floating,
                                                                 np.integer)):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    return float(eps)


def check_num_groups(num_groups: object, channels: int) -> int:
    """num_groups must be a positive int dividing the channel count: the kernels index
    channels by group, so anything else would read past a set."""
    if isinstance(num_groups, (bool, np.bool_)) or not isinstance(num_groups, (int, np.integer)):
        raise TypeError(f"num_groups must be an int, got {type(num_groups).__name__}")
    if num_groups <= 0:
        raise ValueError(f"num_groups must be a positive int, got {num_groups}")
    if channels % num_groups:
        raise ValueError(
            f"num_groups must divide the number of channels: x has {channels} channels, "
            f"not divisible by num_groups={num_groups}"
        )
    return int(num_groups)


def is_int(value: object) -> bool:
    return type(value) is int or (isinstance(value, (int, np.integer))
                                  and not isinstance(value, (bool, np.bool_)))


def int_pair(name: str, value: object, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum, as a pair of Python ints."""
    # the usual call first: every conv and pooling call checks three or four of these, and
    # the general path below took 1.3-1.4 us a call, these 0.2-0.6 (bool is not type int)
    if type(value) is int and value >= minimum:
        return value, value
    if (type(value) is tuple and len(value) == 2 and type(value[0]) is int
            and type(value[1]) is int and min(value) >= minimum):
        return value
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not (is_int(pair[0]) and is_int(pair[1])):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


class ConvGeometry(NamedTuple):
    """A checked conv2d geometry: every size the kernels index with (a NamedTuple, built on
    every conv2d call: 0.6-0.7 us, a frozen dataclass 1.7-1.8 us)."""

    stride: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))
    dilation: tuple[int, int]
    groups: int
    out_size: tuple[int, int]  # (Ho, Wo)


def _holds_a_sequence(values) -> bool:
    """Whether a tuple or list holds a tuple or list (conv padding given per side); a loop:
    any() over a generator cost about 1 us here, on every conv2d call."""
    for value in values:
        if isinstance(value, (tuple, list)):
            return True
    return False


def check_conv_geometry(x_shape: tuple, weight_shape: tuple, stride: object, padding: object,
                        dilation: object, groups: object) -> ConvGeometry:
    """stride and dilation: an int or a pair of positive ints; padding: an int, a pair
    (symmetric) or ((top, bottom), (left, right)) of non-negative ints; groups: a positive int
    dividing the output channels, with C == weight.shape[1]·groups; the output at least 1x1."""
    stride = int_pair("stride", stride, 1)
    dilation = int_pair("dilation", dilation, 1)
    if isinstance(padding, (tuple, list)) and _holds_a_sequence(padding):
        if len(padding) != 2:
            raise TypeError(f"padding must be ((top, bottom), (left, right)), got {padding!r}")
        pads = tuple(int_pair("padding", p, 0) for p in padding)
    else:
        pads = tuple((p, p) for p in int_pair("padding", padding, 0))
    if not is_int(groups):
        raise TypeError(f"groups must be an int, got {type(groups).__name__}")
    out_channels, group_channels, kh, kw = weight_shape
    if groups <= 0 or out_channels % groups:
        raise ValueError(f"groups must be a positive int dividing the output channels "
                         f"(weight.shape[0] = {out_channels}), got {groups}")
    if x_shape[1] != group_channels * groups:
        raise ValueError(f"x must have weight.shape[1]·groups = {group_channels * groups} "
                         f"channels, got x of shape {x_shape}")
    if min(out_channels, group_channels, kh, kw) == 0:
        raise ValueError(f"weight must have no zero size, got shape {weight_shape}")
    (top, bottom), (left, right) = pads
    out_size = ((x_shape[2] + top + bottom - dilation[0] * (kh - 1) - 1) // stride[0] + 1,
                (x_shape[3] + left + right - dilation[1] * (kw - 1) - 1) // stride[1] + 1)
    if min(out_size) < 1:
        raise ValueError(f"output size {out_size} < 1: x of shape {x_shape} with padding "
                         f"{pads} is smaller than the kernel of weight {weight_shape} at "
                         f"dilation {dilation} (stride {stride})")
    return ConvGeometry(stride, pads, dilation, int(groups), out_size)


def check_output_mask(output_mask: object) -> tuple[bool, bool, bool]:
    """(dx, dweight, dbias) wanted: three bools, as PyTorch's output_mask."""
    if (not isinstance(output_mask, (tuple, list)) or len(output_mask) != 3
            or not all(isinstance(m, (bool, np.bool_)) for m in output_mask)):
        raise TypeError(f"output_mask must be three bools (dx, dweight, dbias), got "
                        f"{output_mask!r}")
    return tuple(bool(m) for m in output_mask)


# ------------------------------------------------------------------ optimizer kernels


def check_real(name: str, value: object, low: float | None = None,
               below: float | None = None) -> float:
    """A finite real number (not a bool) as a float, optionally low <= value < below."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating,
                                                                     np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if (low is not None and value < low) or (below is not None and value >= below):
        bounds = f"[{low}, {below})" if below is not None else f">= {low}"
        raise ValueError(f"{name} must be in {bounds}, got {value}")
    return value


def check_flag(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _check_list(name: str, values: object, length: int | None) -> None:
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{name} must be a list of arrays, one per parameter, got "
                        f"{type(values).__name__}")
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must have one entry per parameter ({length}), got "
                         f"{len(values)}")


def check_parameter_lists(params: object, grads: object, buffers: dict,
                          may_be_none: frozenset = frozenset()) -> None:
    """Host arrays for an in-place optimizer update: `params` a list of writeable C-contiguous
    float32/float64 arrays; `grads` and each list of `buffers` (name -> list) as long, their
    i-th entries C-contiguous of params[i]'s shape and dtype, the buffers writeable. Entries
    of the lists named in `may_be_none` may be None (a state buffer made on this step)."""
    _check_list("params", params, None)
    others = {"grads": grads, **buffers}
    for name, values in others.items():
        _check_list(name, values, len(params))
    columns = list(buffers.values())
    required = [values for name, values in buffers.items() if name not in may_be_none]
    for i, p in enumerate(params):  # the common case at once, then what is wrong
        if update_ready(p, grads[i], *[c[i] for c in columns]) and (
                not required or all(v[i] is not None for v in required)):
            continue
        HOST.array(f"params[{i}]", p, getattr(p, "ndim", 0))
        _check_writeable(f"params[{i}]", p)
        for name, values in others.items():
            if values[i] is None and name in may_be_none:
                continue
            if values[i] is None:
                raise TypeError(f"{name}[{i}] must be an array of shape {p.shape}, got None")
            HOST.array(f"{name}[{i}]", values[i], getattr(values[i], "ndim", 0))
            if values[i].dtype != p.dtype:
                raise TypeError(f"{name}[{i}] must have the dtype of params[{i}] ({p.dtype}), "
                                f"got {values[i].dtype}")
            HOST.shape(f"{name}[{i}]", values[i], p.shape, f"the shape of params[{i}]")
            if name != "grads":
                _check_writeable(f"{name}[{i}]", values[i])


def update_ready(param: object, grad: object, *buffers: object) -> bool:
    """Whether an in-place update kernel takes these arrays as they are: `param` a writeable
    C-contiguous float32/float64 ndarray, `grad` and each buffer (None: made on this step)
    C-contiguous ndarrays of its shape and dtype, the buffers writeable. The optimizers ask
    this to choose the kernel; check_parameter_lists says what is wrong otherwise."""
    if type(param) is not np.ndarray or param.dtype not in SUPPORTED_DTYPES:
        return False
    flags = param.flags
    if not (flags.c_contiguous and flags.writeable and _same_layout(grad, param)):
        return False
    for buffer in buffers:  # a loop, not all(...): this runs for every parameter and step
        if buffer is not None and not (_same_layout(buffer, param) and buffer.flags.writeable):
            return False
    return True


def _same_layout(array: object, like: np.ndarray) -> bool:
    return (type(array) is np.ndarray and array.shape == like.shape
            and array.dtype == like.dtype and array.flags.c_contiguous)


def _check_writeable(name: str, array: np.ndarray) -> None:
    if not array.flags.writeable:
        raise ValueError(f"{name} must be writeable: it is updated in place")
