"""Two fixes that numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) needs to run these kernels
quickly and correctly; applied on import, and only under the simulator.

The simulator runs one Python thread per CUDA thread, one block at a time, while its block
manager polls the threads from the main thread with the GIL held.

1. GIL hand-over. At CPython's default 5 ms switch interval every hand-over can wait 5 ms,
   so the interval is shortened to 0.2 ms. Measured: the GroupNorm reference and
   determinism tests on "cuda" take 18 s at 0.2 ms and 68 s at 5 ms (0.1 ms: 21 s,
   0.5 ms: 19 s).
2. Shared arrays. numba-cuda 0.68's `FakeCUDAShared.array` finds a block's shared array in
   a dict keyed by the calling source line, and creates it when it is missing, with no lock
   between the look-up and the store. A thread switch between them lets two threads both
   miss, and each keeps its own array: the first block of a launch then sums shared slots
   that one thread never wrote. This happened in CI: a BatchNorm1d weight gradient on
   "cuda" was wrong in channel 0 only (block 0; later blocks find the array already made).
   The replacement below takes a lock for the look-up and the store. It also finds the
   caller with `sys._getframe(1)`, where numba walks the whole stack with
   `traceback.extract_stack`, which is slow under pytest's deep stacks.
"""

from __future__ import annotations

import sys
import threading

import numba
import numpy as np

ACTIVE = bool(numba.config.ENABLE_CUDASIM)
SWITCH_INTERVAL = 2e-4  # seconds
_shared_lock = threading.Lock()


def _shared_array(self, shape, dtype, alignment=None):
    """`cuda.shared.array` under the simulator: one array per block and source line, the same
    for every thread of the block."""
    if shape == 0 or alignment is not None:
        # dynamic shared memory (one buffer, no look-up) or an error: numba's own code
        return _numba_shared_array(self, shape, dtype, alignment)
    if isinstance(dtype, kernelapi.types.Type):  # a numba type, as numba converts it
        dtype = kernelapi.numpy_support.as_dtype(dtype)
    caller = sys._getframe(1)
    key = (caller.f_code.co_filename, caller.f_lineno)
    with _shared_lock:
        array = self._allocations.get(key)
        if array is None:
            array = self._allocations[key] = np.empty(shape, dtype)
    return array


def _numba_keeps_shared_arrays_in_a_dict(kernelapi) -> bool:
    """Whether the simulator is built as the replacement expects (numba-cuda 0.68): a
    FakeCUDAShared class whose instances keep their arrays in `_allocations`."""
    shared = getattr(kernelapi, "FakeCUDAShared", None)
    return shared is not None and isinstance(getattr(shared(0), "_allocations", None), dict)


if ACTIVE:
    from numba.cuda.simulator import kernelapi

    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)
    if _numba_keeps_shared_arrays_in_a_dict(kernelapi):  # else leave numba's own code
        # __wrapped__: numba's method, also when this module is imported again (reload)
        _numba_shared_array = getattr(kernelapi.FakeCUDAShared.array, "__wrapped__",
                                      kernelapi.FakeCUDAShared.array)
        _shared_array.__wrapped__ = _numba_shared_array
        kernelapi.FakeCUDAShared.array = _shared_array
