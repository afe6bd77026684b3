"""NumPy's OpenBLAS, found in this process: its thread count and its threads-callback hook.

OpenBLAS 0.3.28 and later let a caller run its parallel jobs on the caller's own threads
(`openblas_set_threads_callback_function`, OpenBLAS PR #4577). NumPy's wheels bundle OpenBLAS
under a prefixed, ILP64 name (`scipy_openblas_..._64_`). This module finds the library NumPy
loaded and that hook with ctypes, and nothing else: it imports neither Numba nor an OpenMP
runtime, so `import kernels` can ask it before choosing the OpenMP wait policy.
kernels/cpu/blas_pool.py uses the hook.
"""

from __future__ import annotations

import ctypes

import numpy as np  # noqa: F401  (loads NumPy's BLAS, which is what is looked for)

# symbol names without their ILP64 suffix: NumPy's prefixed ones first, then a plain build's
_PREFIXES = ("scipy_openblas_", "openblas_")
_SUFFIXES = ("64_", "_64", "")


def _loaded_openblas() -> ctypes.CDLL | None:
    """The first OpenBLAS shared library mapped into this process (NumPy's), or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = [line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1]]
    except OSError:  # not Linux
        return None
    for path in paths:
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def _symbol(library: ctypes.CDLL | None, name: str):
    for prefix in _PREFIXES if library is not None else ():
        for suffix in _SUFFIXES:
            function = getattr(library, prefix + name + suffix, None)
            if function is not None:
                return function
    return None


_LIBRARY = _loaded_openblas()
_get_num_threads = _symbol(_LIBRARY, "get_num_threads")
set_threads_callback = _symbol(_LIBRARY, "set_threads_callback_function")
if set_threads_callback is not None:
    set_threads_callback.argtypes, set_threads_callback.restype = [ctypes.c_void_p], None


def num_threads() -> int:
    """The threads OpenBLAS splits a product over now (0 where there is no OpenBLAS)."""
    return int(_get_num_threads()) if _get_num_threads is not None else 0


HAS_THREADS_CALLBACK = set_threads_callback is not None and _get_num_threads is not None


def can_run_on(pool_size: int) -> bool:
    """Whether OpenBLAS's jobs can run on a pool of `pool_size` threads: it has the hook, it
    splits products at all, and every job of a product gets a thread of its own."""
    return HAS_THREADS_CALLBACK and 1 < num_threads() <= pool_size
