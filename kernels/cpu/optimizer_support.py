"""What the optimizer kernels (sgd.py, adam.py) share: exact compilation and the thread split.

The updates are compiled with fastmath off: "arcp" would turn m/denom into m·(1/denom) and
"contract" would fuse products into FMAs as LLVM sees fit, and either changes the rounding
that PyTorch's update (one rounding per tensor operation) has. Every operation is in the
parameter's dtype, as PyTorch's for-loop implementation computes it, with the Python-float
hyper-parameters rounded to that dtype first.
"""

from __future__ import annotations

import functools

import numba

from kernels.cpu.stats import use_parallel

exact_jit = functools.partial(numba.njit, cache=True, fastmath=False, error_model="numpy")
exact_parallel_jit = functools.partial(exact_jit, parallel=True)


def num_chunks(size: int) -> int:
    """1 (the serial kernel) for a small array, else one contiguous chunk per thread."""
    return numba.get_num_threads() if use_parallel(size) else 1
