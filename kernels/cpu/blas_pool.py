"""NumPy's matrix products on Numba's OpenMP threads: one thread pool for the whole step.

A training step alternates matrix products (NumPy's OpenBLAS, with its own pthreads) with
parallel Numba kernels (OpenMP threads). Each pool's idle threads spin for a while after their
work, so on a small machine each took a core from the other: OpenBLAS's idle thread spins for
2^28 cycles (about 0.1 s) after every product, and the Numba kernels that followed ran up to
2x slower; making either side sleep at once instead (OMP_WAIT_POLICY=passive, or
OPENBLAS_THREAD_TIMEOUT=4) made every product or kernel wait for a thread to be woken, and
slowed the small steps. PyTorch avoids this by running its BLAS on its OpenMP threads.

OpenBLAS 0.3.28+ can do the same (kernels/openblas.py finds the hook): it hands each parallel
product to a callback as `numjobs` jobs, and the callback runs `dojob(i, jobdata + i * elsize,
data)` for every i. This module's callback runs them in a `prange`, on Numba's OpenMP threads.
OpenBLAS's own threads then stay asleep, and the wait policy can be libgomp's default (spin
briefly, then sleep): nothing else wants the cores. Measured in the README.

The jobs of one product wait for each other (they share packed panels), so they must all run
at once: each needs a thread of its own. Hence the conditions under which `install` sets the
callback: the threading layer is OpenMP (TBB may run two iterations on one thread), and
OpenBLAS uses no more threads than Numba's pool has. If the calling thread's Numba thread count
was lowered (`numba.set_num_threads`), the callback raises it to `numjobs` for the product. A
forked child has no OpenMP threads (kernels/cpu/fork_safety.py), so there the callback is
removed and OpenBLAS runs its own threads again. Raising OpenBLAS's thread count above Numba's
pool after import (`openblas_set_num_threads`, threadpoolctl) is not supported.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.ufunc import parallel

from kernels import openblas

# the threading layer registers the functions _run_jobs calls by name (below) when it launches
parallel._launch_threads()


@intrinsic
def _call_job(typingctx, dojob, index, job, data):
    """dojob(index, job, data), dojob a C function's address: void (int, void *, int)."""
    signature = types.void(types.intp, types.int32, types.intp, types.int32)

    def codegen(context, builder, signature, args):
        address, index, job, data = args
        pointer = ir.IntType(8).as_pointer()
        function_type = ir.FunctionType(ir.VoidType(), [ir.IntType(32), pointer, ir.IntType(32)])
        function = builder.inttoptr(address, function_type.as_pointer())
        builder.call(function, [index, builder.inttoptr(job, pointer), data])
        return context.get_dummy_value()
    return signature, codegen


# Numba's threading layer registers its thread-count functions with LLVM under these names;
# calling them by name keeps _run_jobs cacheable (numba.get_num_threads holds a ctypes pointer)
_INTP = ir.IntType(types.intp.bitwidth)  # as Numba's own parfor code declares them


def _layer_function(builder, name, return_type, argument_types):
    function_type = ir.FunctionType(return_type, argument_types)
    return cgutils.get_or_insert_function(builder.module, function_type, name)


@intrinsic
def _get_thread_count(typingctx):
    def codegen(context, builder, signature, args):
        return builder.call(_layer_function(builder, "get_num_threads", _INTP, []), [])
    return types.intp(), codegen


@intrinsic
def _set_thread_count(typingctx, count):
    def codegen(context, builder, signature, args):
        function = _layer_function(builder, "set_num_threads", ir.VoidType(), [_INTP])
        builder.call(function, [context.cast(builder, args[0], count, types.intp)])
        return context.get_dummy_value()
    return types.void(count), codegen


@numba.njit(parallel=True, nogil=True, cache=True)
def _run_jobs(dojob, numjobs, jobdata, elsize, data):
    threads = _get_thread_count()
    if numjobs > threads:  # every job needs a thread of its own
        _set_thread_count(numjobs)
    for i in numba.prange(numjobs):
        _call_job(dojob, np.int32(i), jobdata + i * elsize, data)
    _set_thread_count(threads)


# openblas_threads_callback: void (int sync, dojob, int numjobs, size_t elsize, void *jobdata,
# int data); OpenBLAS always passes sync = 1 (wait for the jobs), which a prange does
@numba.cfunc(types.void(types.int32, types.intp, types.int32, types.intp, types.intp,
                        types.int32), cache=True)
def _callback(sync, dojob, numjobs, elsize, jobdata, data):
    _run_jobs(dojob, numjobs, jobdata, elsize, data)


INSTALLED = False


def _remove_in_child() -> None:
    global INSTALLED
    if INSTALLED:
        openblas.set_threads_callback(None)
        INSTALLED = False


def install() -> bool:
    """Hand NumPy's OpenBLAS jobs to Numba's threads where that is safe (the docstring)."""
    global INSTALLED
    if INSTALLED:
        return True
    if (numba.threading_layer() != "omp"  # the layer launched at import, above
            or not openblas.can_run_on(numba.config.NUMBA_NUM_THREADS)):
        return False
    openblas.set_threads_callback(_callback.address)
    INSTALLED = True
    return True


os.register_at_fork(after_in_child=_remove_in_child)
