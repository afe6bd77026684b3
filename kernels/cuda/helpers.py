"""Shared pieces of the numba.cuda kernels: reductions, launch geometry, argument checks
(kernels/validation.py's device checker) and output allocation.

Reductions: a thread's own partial sum is kept in the data's dtype (float32 for float32
data); the sum across threads is done in float64, through warp shuffles on a GPU and
through a shared-memory twin under the CUDA simulator (NUMBA_ENABLE_CUDASIM=1), which has
no shuffles. Both visit the partials in a fixed order, so results are deterministic, and
every thread of the warp or block receives the same total. The twins call syncthreads, so
every thread of a block must call them the same number of times (the kernels keep their
loops block-uniform for that reason).

Device functions are `inline="always"`: they are inlined into the kernel's IR, which is
also what lets `numba.cuda.compile_ptx` compile a kernel without a GPU (a non-inlined
device function asks the driver for the current device's compute capability).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math

import numpy as np
from numba import cuda, float64

from kernels import validation
from kernels.cuda import simulator

SIMULATOR = simulator.ACTIVE  # the simulator's fixes are applied on that import
WARP = 32
FULL_MASK = 0xFFFFFFFF
MAX_BLOCK = 1024
# The simulator twin needs one slot per thread; the shuffle version one per warp.
SCRATCH = MAX_BLOCK if SIMULATOR else WARP
SCRATCH_GROUPS = MAX_BLOCK // WARP
# Registers a lane may spend on one row of the warp-per-row kernels, in 32-bit words:
# 8 float32 or 4 float64 elements (rows of 256 / 128); longer rows go to the block-per-row
# kernels. ptx_check --resources measured 16 words at 130-146 registers on sm_80.
ROW_WORDS = 8


@dataclasses.dataclass
class Geometry:
    """Launch constants. The simulator runs one Python thread per CUDA thread, so there they
    are small, and tests shrink them further (`geometry(...)`) so that small shapes reach
    the multi-row, grid-stride and multi-block paths that real shapes reach on a GPU."""

    block: int  # threads per block of every kernel (a multiple of WARP)
    blocks: int | None  # blocks of the cross-block kernels; None: two per SM
    row_buckets: tuple[int, ...]  # elements per lane of the warp-per-row kernels, ascending
    # dynamic shared memory a row kernel may use (48 KB without opting in on every CUDA GPU,
    # less the scratch array)
    shared_bytes: int = 47 * 1024


GEOMETRY = (Geometry(block=64, blocks=4, row_buckets=(1, 2, 4)) if SIMULATOR
            else Geometry(block=256, blocks=None, row_buckets=(2, 4, 8)))


@contextlib.contextmanager
def geometry(**changes):
    """Run the block with some launch constants replaced (tests and gpu_check)."""
    global GEOMETRY
    saved = GEOMETRY
    GEOMETRY = dataclasses.replace(saved, **changes)
    try:
        yield GEOMETRY
    finally:
        GEOMETRY = saved


def row_buckets(dtype) -> tuple[int, ...]:
    """The per-lane sizes usable for `dtype`: a row of per_lane elements must fit ROW_WORDS."""
    words = max(1, np.dtype(dtype).itemsize // 4)
    return tuple(b for b in GEOMETRY.row_buckets if b * words <= ROW_WORDS)


def row_bucket(cols: int, dtype, threads: int = WARP) -> int | None:
    """Smallest per-lane size at which `threads` (a warp, or a block) hold a row of `cols`
    in registers, or None (a longer row: a block per row, threads = GEOMETRY.block)."""
    for per_lane in row_buckets(dtype):
        if cols <= threads * per_lane:
            return per_lane
    return None


# The longest float32 row normalized by one warp with the row in registers.
WARP_ROW_MAX = WARP * GEOMETRY.row_buckets[-1]
BLOCK = GEOMETRY.block  # the default; launchers read GEOMETRY.block


device_function = cuda.jit(device=True, inline="always")


@device_function
def _warp_sum_shuffle(value, scratch):
    value = float64(value)
    offset = WARP // 2
    while offset > 0:
        # xor butterfly: every lane adds the same two numbers, so all lanes end bitwise equal
        value += cuda.shfl_xor_sync(FULL_MASK, value, offset)
        offset //= 2
    return value


@device_function
def _warp_sum_shared(value, scratch):
    tid = cuda.threadIdx.x
    scratch[tid] = float64(value)
    cuda.syncthreads()
    total = float64(0.0)
    first = tid - tid % WARP
    for lane in range(WARP):
        total += scratch[first + lane]
    cuda.syncthreads()
    return total


@device_function
def _block_sum_shuffle(value, scratch):
    total = _warp_sum_shuffle(value, scratch)
    tid = cuda.threadIdx.x
    if tid % WARP == 0:
        scratch[tid // WARP] = total
    cuda.syncthreads()
    total = float64(0.0)
    for warp in range((cuda.blockDim.x + WARP - 1) // WARP):
        total += scratch[warp]
    cuda.syncthreads()
    return total


@device_function
def _block_sum_shared(value, scratch):
    scratch[cuda.threadIdx.x] = float64(value)
    cuda.syncthreads()
    total = float64(0.0)
    for t in range(cuda.blockDim.x):
        total += scratch[t]
    cuda.syncthreads()
    return total


# warp_sum(value, scratch) / block_sum(value, scratch): float64 total over the warp / block;
# scratch = cuda.shared.array(SCRATCH, float64) declared by the kernel.
warp_sum = _warp_sum_shared if SIMULATOR else _warp_sum_shuffle
block_sum = _block_sum_shared if SIMULATOR else _block_sum_shuffle


@device_function
def chan_merge(count_a, mean_a, m2_a, count_b, mean_b, m2_b):
    """(count, mean, M2) of the union of two sets (Chan et al.); either may be empty."""
    count = count_a + count_b
    if count == 0:
        return count, mean_a, m2_a
    delta = mean_b - mean_a
    mean = mean_a + delta * (count_b / count)
    return count, mean, m2_a + m2_b + delta * delta * (count_a * count_b / count)


@device_function
def split_index(flat, inner_size):
    """(flat // inner_size, flat % inner_size): done once per thread, because a 64-bit
    integer division costs dozens of instructions, more than a memory-bound loop can hide."""
    return flat // inner_size, flat % inner_size


@device_function
def step_index(outer, inner, step_outer, step_inner, inner_size):
    """Advance the split index (outer, inner) by a stride already split as
    (step_outer, step_inner), with one carry instead of a division."""
    inner += step_inner
    outer += step_outer
    if inner >= inner_size:
        inner -= inner_size
        outer += 1
    return outer, inner


@functools.cache
def _multiprocessors() -> int:
    return cuda.get_current_device().MULTIPROCESSOR_COUNT


def grid_blocks() -> int:
    """Blocks that own a strip of rows or a slice of a channel: two per SM (GEOMETRY)."""
    if GEOMETRY.blocks is not None:
        return GEOMETRY.blocks
    return 2 * _multiprocessors()


def row_grid_limit() -> int:
    """Most blocks for the kernels whose rows need no cross-block merge: enough to fill the
    GPU many times over (the kernels grid-stride past it); just grid_blocks() under the
    simulator, where every extra block is more Python threads."""
    return grid_blocks() if SIMULATOR else 16 * grid_blocks()


def blocks_for(work: int, per_block: int, most: int | None = None) -> int:
    """Enough blocks for `work` items at `per_block` each, at most `most` (default
    grid_blocks()), at least 1."""
    most = grid_blocks() if most is None else most
    return max(1, min(most, math.ceil(work / per_block)))


# ---------------------------------------------------------------- arguments and outputs


def _is_cupy(array: object) -> bool:
    return type(array).__module__.split(".")[0] == "cupy"


# the device-array checks of kernels/validation.py; the dtype of any __cuda_array_interface__
# producer is read from its typestr (a torch tensor's .dtype is not a NumPy dtype)
check = validation.device(SIMULATOR)
check_array, check_vector, check_like, check_shape = (check.array, check.vector, check.like,
                                                     check.shape)
check_num_groups = validation.check_num_groups


def check_eps(eps: object) -> float:
    """kernels/validation.py's rule (a real number) plus finite and >= 0: the CUDA kernels'
    math.sqrt raises on a negative argument under the simulator, so the negative or NaN eps
    that the framework (like PyTorch) computes with on the CPU is a clear error on CUDA for
    now, rather than a device fault."""
    eps = validation.check_eps(eps)
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0 on CUDA, got {eps}")
    return eps
array_dtype = validation.array_dtype


def _cupy():
    """CuPy, or None where it is not installed."""
    try:
        import cupy
    except ImportError:
        return None
    return cupy


def empty(like, shape: tuple, dtype=None):
    """An uninitialised array on the device of `like`. CuPy inputs get CuPy arrays, and
    numba device arrays get numba views of CuPy arrays: both come from CuPy's memory pool,
    so a call allocates no device memory once the pool is warm, and freeing does not
    synchronize (numba's own allocator calls cuMemAlloc per array and defers frees
    behind a device-wide sync). Other producers (torch, ...) get CuPy arrays; without
    CuPy, numba device arrays."""
    dtype = np.dtype(array_dtype(like) if dtype is None else dtype)
    if isinstance(like, np.ndarray):  # the simulator's stand-in device arrays
        return np.empty(shape, dtype)
    cupy = _cupy()
    if cupy is None:
        return cuda.device_array(shape, dtype)
    out = cupy.empty(shape, dtype)
    if type(like).__module__.startswith("numba"):  # a numba device array
        return cuda.as_cuda_array(out)  # holds a reference to `out`, so the pool keeps it
    return out


def interface_stream(array) -> int | None:
    """The stream named by `__cuda_array_interface__` (version 3): None (no stream: the
    data is ready), 1 (the legacy default stream), 2 (the per-thread default stream) or a
    cudaStream_t pointer; NumPy stand-ins and version-2 producers: 1."""
    if isinstance(array, np.ndarray):
        return 1
    return array.__cuda_array_interface__.get("stream", 1)


def stream_for(array):
    """The stream to launch on, so that the kernels are ordered after the work that made
    `array` and before the work that reads their results, with no host sync (kernels.cuda
    turns numba's per-argument stream sync off):
    CuPy arrays: CuPy's current stream, as for any CuPy op;
    other producers: the stream their `__cuda_array_interface__` names;
    NumPy stand-ins (simulator) and the legacy default stream: 0, numba's default stream."""
    if _is_cupy(array):
        import cupy

        pointer = cupy.cuda.get_current_stream().ptr
    else:
        pointer = interface_stream(array)
    if pointer is None or pointer == 1 or pointer == 0:
        return 0
    if pointer == 2:
        return cuda.per_thread_default_stream()
    return _external_stream(pointer)


@functools.lru_cache(maxsize=16)
def _external_stream(pointer: int):
    return cuda.external_stream(pointer)


def full(like, shape: tuple, value: float, dtype=None):
    """An array of `empty`'s kind filled with `value`; used only for empty-input results."""
    host = np.full(shape, value, np.dtype(array_dtype(like) if dtype is None else dtype))
    if isinstance(like, np.ndarray):
        return host
    out = empty(like, shape, host.dtype)
    if _is_cupy(out):
        out.fill(value)
    else:
        out.copy_to_device(host)
    return out


@device_function
def _column_sum(part, out):
    """out[j] = sum over rows of part[:, j] for this block's WARP columns (see column_sums)."""
    lane, group = cuda.threadIdx.x % WARP, cuda.threadIdx.x // WARP
    groups = cuda.blockDim.x // WARP
    j = cuda.blockIdx.x * WARP + lane
    total = float64(0.0)
    if j < out.shape[0]:
        for w in range(group, part.shape[0], groups):
            total += part[w, j]
    partials = cuda.shared.array((SCRATCH_GROUPS, WARP), float64)
    partials[group, lane] = total
    cuda.syncthreads()
    if group == 0 and j < out.shape[0]:
        for g in range(1, groups):
            total += partials[g, lane]
        out[j] = total
    cuda.syncthreads()


@cuda.jit
def column_sums(part_a, out_a, part_b, out_b):
    """out_a[j] = sum over rows w of part_a[w, j], float64 accumulation; the same for
    (part_b, out_b) unless part_b is None. A block owns WARP columns: its warps take every
    (blockDim/WARP)-th row, lanes read neighbouring columns (coalesced), and the warps'
    sums are added in warp order (deterministic).
    traffic: read the partials once, write the outputs: (W + 1)·cols·s per output."""
    _column_sum(part_a, out_a)
    if part_b is not None:
        _column_sum(part_b, out_b)


def launch_column_sums(part_a, out_a, part_b=None, out_b=None) -> None:
    grid = blocks_for(out_a.shape[0], WARP, most=1 << 30)
    column_sums[grid, GEOMETRY.block, stream_for(part_a)](part_a, out_a, part_b, out_b)
