"""The driver every elementwise kernel shares: contiguous 1-D ("flat") arrays, split into one
contiguous span per thread above the serial threshold (kernels/cpu/stats.py)."""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu import buffers
from kernels.cpu.stats import use_parallel
from kernels.validation import HOST as check


def check_flat(base_name: str, base: np.ndarray, **others: np.ndarray) -> None:
    """`base` a contiguous 1-D float32/float64 array; every other array shaped like it."""
    check.array(base_name, base, 1)
    for name, array in others.items():
        check.like(name, array, base, base_name)


def run(serial, parallel, *arrays: np.ndarray) -> np.ndarray:
    """out = a new array like arrays[0], filled by serial(*arrays, out), or by
    parallel(*arrays, out, num_chunks), which hands serial one slice per thread: a loop over
    range(a.size) vectorizes, one over range(start, stop) does not (Numba must allow
    negative indices there; measured 0.7 ms against 16 ms for ReLU backward at 1.6M)."""
    out = buffers.empty_like(arrays[0])
    if use_parallel(out.size):
        parallel(*arrays, out, numba.get_num_threads())
    elif out.size:
        serial(*arrays, out)
    return out
