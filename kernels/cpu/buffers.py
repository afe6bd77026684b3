"""Large output arrays, recycled once nobody else holds them.

A fresh large NumPy array is paid for in page faults on its first write: faulting in 64 MB
took 6.5 ms here, about as long as LayerNorm's whole forward pass over it, which is why the
kernels ran at 19 GB/s on fresh outputs and 29 GB/s (the copy bandwidth) on reused ones.
Training asks for the same shapes every step, so the kernels take their outputs (y, dx) from
this pool. A pooled array is handed out again only when the pool's own references are the
only ones left: CPython's reference count says so exactly, and a view, a Tensor or a
torch.from_numpy of the array all keep it referenced; a weak reference does not, so an array
that has one is never reused either. A caller may also have changed a result in place, through
its shape, dtype, strides or flags (`y.shape = ...`, `y.flags.writeable = False`): the kernels
would then write through the wrong layout (a segfault) or the next caller would see it, so a
buffer whose metadata is no longer that of a fresh array is dropped from the pool, never
repaired (its bytes may have been reinterpreted). Small arrays (< MIN_BYTES) come back
from malloc's heap without faults and are not pooled; the pool never holds more than
MAX_POOL_BYTES, so it cannot grow without bound.
"""

from __future__ import annotations

import math
import sys
import threading
import weakref

import numpy as np

MIN_BYTES = 1 << 20
MAX_POOL_BYTES = 256 << 20

_lock = threading.Lock()
_pool: dict[tuple, list[np.ndarray]] = {}
_pool_bytes = 0


def _references_when_free() -> int:
    """sys.getrefcount of a pooled array that nobody else holds, seen from the loop in
    `empty_like` (measured, not assumed: the count of loop and argument references differs
    between Python versions)."""
    buffers = [np.empty(1)]
    for buffer in buffers:
        return sys.getrefcount(buffer)
    raise AssertionError("unreachable")


_FREE = _references_when_free()


def _c_strides(shape: tuple, itemsize: int) -> tuple:
    strides, step = [], itemsize
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _is_as_allocated(buffer: np.ndarray, shape: tuple, dtype: np.dtype) -> bool:
    """Whether `buffer` still has the metadata np.empty(shape, dtype) gave it."""
    flags = buffer.flags
    return (buffer.shape == shape and buffer.dtype == dtype
            and buffer.strides == _c_strides(shape, dtype.itemsize)
            and flags.writeable and flags.aligned and flags.owndata)


def empty(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of this shape and dtype, reused when possible."""
    global _pool_bytes
    shape, dtype = tuple(shape), np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize  # np.prod of a tuple: 3 us
    if nbytes < MIN_BYTES:
        return np.empty(shape, dtype)
    key = (shape, dtype.str)
    with _lock:
        buffers = _pool.setdefault(key, [])
        changed = -1
        # a plain loop, as in _references_when_free (enumerate's tuple would hold a reference)
        for buffer in buffers:
            changed += 1
            if sys.getrefcount(buffer) != _FREE or weakref.getweakrefcount(buffer):
                continue
            if _is_as_allocated(buffer, shape, dtype):
                return buffer
            del buffer
            # dropped from the pool: the list must not change while it is looped over
            del buffers[changed]
            _pool_bytes -= nbytes
            break
        buffer = np.empty(shape, dtype)
        if _pool_bytes + buffer.nbytes <= MAX_POOL_BYTES:
            buffers.append(buffer)
            _pool_bytes += buffer.nbytes
        return buffer


def empty_like(x: np.ndarray) -> np.ndarray:
    """An uninitialised C-contiguous array of x's shape and dtype, reused when possible."""
    return empty(x.shape, x.dtype)


def claim(array: np.ndarray) -> bool:
    """Take `array` out of the pool for good if it is pooled (True), so that a caller may keep
    it, e.g. as a leaf's .grad, instead of copying it: the pool then never hands it out again.
    """
    global _pool_bytes
    with _lock:
        buffers = _pool.get((array.shape, array.dtype.str), [])
        for index in range(len(buffers)):
            if buffers[index] is array:
                del buffers[index]
                _pool_bytes -= array.nbytes
                return True
    return False
