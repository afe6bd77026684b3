"""Normalization kernels: `kernels.reference` (float64 NumPy spec), `kernels.cpu`
(Numba), `kernels.cuda` (numba.cuda); same function names and signatures in each.

Threading is configured here, before Numba's OpenMP runtime can start: libgomp's
default wait policy spins, and on a busy 2-core machine that put a 1.5-8 ms floor
under every parallel region; passive waiting brings it to microseconds. libgomp
reads the policy once, when it is loaded, and processes share one libgomp: if
another library (PyTorch, typically) loaded it first, setting the policy here is
too late, so that case is reported with a warning. The layer is pinned to a
thread-safe one (TBB or OpenMP, never 'workqueue') because the kernels may be
called from several Python threads at once.

NumPy's OpenBLAS is left with its own thread settings. Its idle worker spins for about
2^28 cycles (0.1 s) after a matrix product, which can take a core from the parallel Numba
loops that follow; OPENBLAS_THREAD_TIMEOUT=4 (sleep at once) was the default here for a while,
until whole steps on the project's later machine measured it worse on four of the five
benchmark models (some processes ran 4-8x slower throughout; our reading: a sleeping thread
must be woken for every product; numbers in the README). Both thread settings here are
defaults only: an environment that sets them wins.

glibc's malloc gives the top of its heap back to the kernel whenever enough of it is free
(its trim threshold), and a training step frees and allocates the same arrays every step,
so each step faulted their pages in again: freeing the digits CNN's 74 KB conv3 weight
gradient took 78 us, zero_grad 91 us in all. `import kernels` sets the trim threshold to
HEAP_TRIM_THRESHOLD (what the output pool may hold, kernels/cpu/buffers.py). Setting it turns
off glibc's own raising of the size from which an array gets a mapping of its own (the mmap
threshold, 128 KiB at start, raised up to 32 MiB as large arrays are freed), so that is set
to glibc's 32 MiB ceiling, HEAP_MMAP_THRESHOLD: left at 128 KiB, every larger array was mapped
and faulted in afresh (MLP steps 2x slower), and at 4 MiB the 16 MB layers were 2-5x slower.
Measured (README): the digits CNN step 2.65 -> 2.05 ms, the other steps and the 16 MB layers
within noise. Freed memory stays in the process, up to the trim threshold, for the next
arrays. An environment that sets MALLOC_TRIM_THRESHOLD_ or MALLOC_MMAP_THRESHOLD_ keeps
glibc's handling as it chose.
"""

import ctypes
import os
import sys
import warnings


def _openmp_already_loaded() -> bool:
    """Whether a libgomp that Numba would share (soname libgomp.so.1; wheels that vendor a
    private, renamed copy don't count) is already in this process."""
    try:
        with open("/proc/self/maps") as maps:
            return any(line.rsplit("/", 1)[-1].startswith("libgomp.so") for line in maps)
    except OSError:  # not Linux: nothing to check
        return False


if "OMP_WAIT_POLICY" not in os.environ and _openmp_already_loaded():
    warnings.warn(
        "an OpenMP runtime was loaded (by PyTorch or another library) before tinygrad_norm "
        "could set OMP_WAIT_POLICY=passive; on a busy machine its spinning threads can add "
        "milliseconds to every parallel kernel call. Set OMP_WAIT_POLICY=passive in the "
        "environment, or import tinygrad_norm before torch.",
        RuntimeWarning, stacklevel=2)
THREAD_DEFAULTS = {"OMP_WAIT_POLICY": "passive", "NUMBA_THREADING_LAYER": "threadsafe"}
# the names this import set because the environment had none: user_environment() takes them out
APPLIED_DEFAULTS = tuple(name for name in THREAD_DEFAULTS if name not in os.environ)
for _name in APPLIED_DEFAULTS:
    os.environ[_name] = THREAD_DEFAULTS[_name]


HEAP_TRIM_THRESHOLD = 256 << 20
HEAP_MMAP_THRESHOLD = 32 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers, glibc's malloc.h


def _keep_freed_heap_memory() -> bool:
    """Set glibc's trim and mmap thresholds (the docstring above); False where they were not
    set (the environment sets one, not Linux, or a C library without mallopt)."""
    if ({"MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"} & os.environ.keys()
            or not sys.platform.startswith("linux")):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    return (mallopt(_M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD) == 1
            and mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD) == 1)


HEAP_THRESHOLDS_SET = _keep_freed_heap_memory()


def user_environment() -> dict[str, str]:
    """os.environ without the defaults this package set: the environment a process of another
    framework must get to run as its users run it (our defaults change PyTorch too: with
    OMP_WAIT_POLICY=passive its small-batch CNN step measured 2.6-3.0 -> 3.7-5.1 ms)."""
    environment = dict(os.environ)
    for name in APPLIED_DEFAULTS:
        if environment.get(name) == THREAD_DEFAULTS[name]:
            del environment[name]
    return environment
