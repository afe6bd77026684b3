"""A child forked after a parallel kernel ran keeps working, on one thread.

GNU OpenMP (Numba's 'omp' threading layer, the one picked here when TBB is absent) is not
fork-safe: its worker threads do not exist in a forked child, but the child inherits the
runtime's record of them, so the child's first parallel region waits forever for a team that
will never arrive (`multiprocessing.Pool` with the default fork start method hangs in `map`).
Nothing can restart the runtime in the child, so the child runs the kernels serially: after
every fork this sets the child's thread count to 1, both for the forking thread (Numba's
`set_num_threads`) and for threads the child starts later (the layer's default count, which
`launch_threads` sets; Numba keeps that function internal, hence the fallback). One thread makes
`use_parallel` false, and the kernels then never enter an OpenMP region. A child of a parent
that never launched the threading layer is left alone: it starts a fresh runtime of its own.
"""

from __future__ import annotations

import ctypes
import os

import numba
from numba.np.ufunc import parallel


def _run_serially_in_child() -> None:
    if not (parallel._is_initialized and parallel._threading_layer == "omp"):
        return
    try:
        from numba.np.ufunc import omppool

        ctypes.CFUNCTYPE(None, ctypes.c_int)(omppool.launch_threads)(1)  # later threads
    except (ImportError, AttributeError):  # a Numba that moved it: this thread only
        pass
    numba.set_num_threads(1)


os.register_at_fork(after_in_child=_run_serially_in_child)
