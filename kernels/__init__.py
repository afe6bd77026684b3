"""Normalization kernels: `kernels.reference` (float64 NumPy spec), `kernels.cpu`
(Numba), `kernels.cuda` (numba.cuda); same function names and signatures in each.

Threading is configured here, before Numba's OpenMP runtime can start: libgomp's
default (active) wait policy put a 1.5-8 ms floor under every parallel region on
a 2-core machine, passive waiting brings it to microseconds. The layer is pinned
to a thread-safe one (TBB or OpenMP, never 'workqueue') because the kernels may
be called from several Python threads at once. Both are defaults only: an
environment that sets them wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("NUMBA_THREADING_LAYER", "threadsafe")
