"""Devices: where a Tensor's array lives and how it moves.

"cpu": a NumPy array. "cuda": a CuPy array on the GPU; the normalization layers hand it to
the numba.cuda kernels (kernels.cuda) without copies, and CuPy runs every other op (CuPy
implements NumPy's __array_ufunc__/__array_function__ protocols, so the np.* calls in
ops.py dispatch to it). Under the CUDA simulator (NUMBA_ENABLE_CUDASIM=1, read by numba at
import) NumPy arrays stand in for device arrays, so the same dispatch path runs without a
GPU. Arrays move between devices only through `to_device`, which always copies; an op on
tensors of two devices is an error (autograd.Function.apply).
"""

from __future__ import annotations

import functools

import numba
import numpy as np

DEVICES = ("cpu", "cuda")
INSTALL_HINT = 'pip install "tinygrad_norm[cuda]" (numba-cuda[cu13] and cupy-cuda13x)'


def simulator() -> bool:
    """Whether numba's CUDA simulator stands in for the GPU in this process."""
    return bool(numba.config.ENABLE_CUDASIM)


@functools.cache
def _cuda_unavailable_reason() -> str | None:
    """Why device 'cuda' cannot be used here, or None when it can."""
    try:
        from numba import cuda
    except ImportError as error:
        return f"numba.cuda cannot be imported ({error}); {INSTALL_HINT}"
    if simulator():
        return None
    try:
        import cupy
    except ImportError:
        return f"CuPy is not installed; {INSTALL_HINT}"
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0 or not cuda.is_available():
            return "no CUDA GPU is visible (numba.cuda.is_available() is False)"
    except Exception as error:  # CuPy raises its own runtime errors when no driver is there
        return f"no usable CUDA GPU: {error}"
    return None


def normalize_device(device) -> str:
    """'cpu' or 'cuda' for None, a name, or 'cuda:0'; a clear error for anything else,
    and for 'cuda' when this machine cannot run it (saying what to install)."""
    name = "cpu" if device is None else str(device)
    base, _, index = name.partition(":")
    if base not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
    if base == "cuda":
        if index not in ("", "0"):
            raise ValueError(f"only one GPU is supported ('cuda' or 'cuda:0'), got {device!r}")
        reason = _cuda_unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"device 'cuda' is not available: {reason}")
    elif index:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
    return base


def array_module(device: str):
    """The array library of `device`: numpy, or cupy on a real GPU."""
    if device == "cpu" or simulator():
        return np
    import cupy

    return cupy


def is_device_array(array) -> bool:
    return hasattr(array, "__cuda_array_interface__")


def as_array(value):
    """An op's result as an array: NumPy scalars and lists become NumPy arrays, device
    arrays stay what they are."""
    return value if is_device_array(value) else np.asarray(value)


def to_device(array, device: str):
    """A copy of `array` on `device` (never a view: the two devices do not share memory)."""
    if device == "cpu":
        return array.get() if is_device_array(array) and hasattr(array, "get") else np.array(
            array, copy=True)
    return array_module(device).array(array, copy=True)


def to_host(array) -> np.ndarray:
    """A NumPy view or copy of an array of any device, for printing and checkpoints."""
    return array.get() if is_device_array(array) and hasattr(array, "get") else np.asarray(array)
