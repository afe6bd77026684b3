"""Normalization kernels: `kernels.reference` (float64 NumPy spec), `kernels.cpu`
(Numba), `kernels.cuda` (numba.cuda); same function names and signatures in each.

Threading is configured here, before Numba's OpenMP runtime can start: libgomp's
default wait policy spins, and beside OpenBLAS's own spinning threads on a busy 2-core
machine that put a 1.5-8 ms floor under every parallel region; passive waiting brought it
to microseconds. libgomp reads the policy once, when it is loaded, and processes share one
libgomp: if another library (PyTorch, typically) loaded it first, setting the policy here
is too late, so that case is reported with a warning. The layer is pinned to a
thread-safe one (TBB or OpenMP, never 'workqueue') because the kernels may be
called from several Python threads at once.

NumPy's OpenBLAS runs its parallel jobs on Numba's OpenMP threads where it can
(kernels/cpu/blas_pool.py): two pools of threads, each spinning after its work, took each other's
cores. With one pool, libgomp's own wait policy (spin briefly, then sleep) is the default;
passive waiting is the default only where OpenBLAS keeps its own threads (an OpenBLAS older than
0.3.28, another BLAS, or more OpenBLAS threads than Numba's). OPENBLAS_THREAD_TIMEOUT=4 (its
idle threads sleep at once) was the default for a while, and measured worse on a later machine;
OpenBLAS's own settings are left alone. The thread settings here are defaults only: an
environment that sets them wins.

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


def _numba_pool_size() -> int:
    """Numba's thread count, as numba.config will read it (NUMBA_NUM_THREADS, else the CPUs
    this process may run on)."""
    try:
        return int(os.environ["NUMBA_NUM_THREADS"])
    except (KeyError, ValueError):
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1


from kernels import openblas  # noqa: E402  (ctypes only: no OpenMP runtime is loaded)

# whether kernels/cpu/blas_pool.py will be able to run OpenBLAS's jobs on Numba's threads
ONE_THREAD_POOL = openblas.can_run_on(_numba_pool_size())
THREAD_DEFAULTS = {"NUMBA_THREADING_LAYER": "threadsafe"}
if not ONE_THREAD_POOL:
    THREAD_DEFAULTS["OMP_WAIT_POLICY"] = "passive"

if ("OMP_WAIT_POLICY" in THREAD_DEFAULTS and "OMP_WAIT_POLICY" not in os.environ
        and _openmp_already_loaded()):
    warnings.warn(
        "an OpenMP runtime was loaded (by PyTorch or another library) before tinygrad_norm "
        "could set OMP_WAIT_POLICY=passive; on a busy machine its spinning threads can add "
        "milliseconds to every parallel kernel call. Set OMP_WAIT_POLICY=passive in the "
        "environment, or import tinygrad_norm before torch.",
        RuntimeWarning, stacklevel=2)
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
