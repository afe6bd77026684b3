"""Shared pieces of the numba.cuda kernels: reductions, launch geometry, argument checks and
output allocation.

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

import functools
import math

import numba
import numpy as np
from numba import cuda, float64

from kernels.cpu import validation

SIMULATOR = bool(numba.config.ENABLE_CUDASIM)
WARP = 32
FULL_MASK = 0xFFFFFFFF
# The simulator twin needs one slot per thread; the shuffle version one per warp.
SCRATCH = 1024 if SIMULATOR else WARP
# Rows up to WARP·ROW_REGISTERS elements are normalized by one warp with the row in registers.
# The simulator runs one Python thread per CUDA thread, so there everything is small: short
# rows, small blocks, few blocks, and small test shapes still reach every code path.
ROW_REGISTERS = 4 if SIMULATOR else 32
WARP_ROW_MAX = WARP * ROW_REGISTERS
BLOCK = 64 if SIMULATOR else 256
SCRATCH_GROUPS = BLOCK // WARP

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
def grid_blocks() -> int:
    """Blocks that own a strip of rows or a slice of a channel: two per SM."""
    if SIMULATOR:
        return 4
    return 2 * cuda.get_current_device().MULTIPROCESSOR_COUNT


def row_grid_limit() -> int:
    """Most blocks for the kernels whose rows need no cross-block merge: enough to fill the
    GPU many times over (the kernels grid-stride past it); just grid_blocks() under the
    simulator, where every extra block is 64 more Python threads."""
    return grid_blocks() if SIMULATOR else 16 * grid_blocks()


def blocks_for(work: int, per_block: int, most: int | None = None) -> int:
    """Enough blocks for `work` items at `per_block` each, at most `most` (default
    grid_blocks()), at least 1."""
    most = grid_blocks() if most is None else most
    return max(1, min(most, math.ceil(work / per_block)))


# ---------------------------------------------------------------- arguments and outputs


def _is_device_array(array: object) -> bool:
    return hasattr(array, "__cuda_array_interface__")


def _is_contiguous(array) -> bool:
    if isinstance(array, np.ndarray):
        return array.flags.c_contiguous
    interface = array.__cuda_array_interface__
    if interface["strides"] is None:
        return True
    expected = np.dtype(interface["typestr"]).itemsize
    for size, stride in zip(reversed(interface["shape"]), reversed(interface["strides"])):
        if size > 1 and stride != expected:
            return False
        expected *= size
    return True


def check_array(name: str, array: object, ndim: int, dtype: np.dtype | None = None) -> None:
    """`array` must be a C-contiguous float32/float64 device array of rank `ndim` (NumPy
    arrays stand in for device arrays under the simulator only)."""
    accepted = _is_device_array(array) or (SIMULATOR and isinstance(array, np.ndarray))
    if not accepted:
        raise TypeError(
            f"{name} must be a CUDA device array (CuPy, numba.cuda, anything with "
            f"__cuda_array_interface__), got {type(array).__name__}; move it with "
            "Tensor.to('cuda') or cupy.asarray"
        )
    if np.dtype(array.dtype) not in validation.SUPPORTED_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {array.dtype}")
    if dtype is not None and np.dtype(array.dtype) != dtype:
        raise TypeError(f"{name} must have the dtype of x ({dtype}), got {array.dtype}")
    shape = tuple(array.shape)
    if len(shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {len(shape)}-D array of shape {shape}")
    if not _is_contiguous(array):
        raise ValueError(f"{name} must be C-contiguous, got a strided array of shape {shape}")


def check_vector(name: str, array, size: int, dtype: np.dtype, why: str,
                 optional: bool = True) -> None:
    """A per-column or per-channel vector of length `size`; None is accepted if optional."""
    if array is None:
        if not optional:
            raise TypeError(f"{name} must be an array of shape ({size},) ({why}), got None")
        return
    check_array(name, array, 1, dtype)
    validation.check_shape(name, array, (size,), why)


def check_like(name: str, array, like, like_name: str) -> None:
    check_array(name, array, len(like.shape), np.dtype(like.dtype))
    validation.check_shape(name, array, tuple(like.shape), f"the shape of {like_name}")


def check_eps(eps: object) -> None:
    """The CPU rule (a real number) plus finite and >= 0: the CUDA kernels' math.sqrt raises on
    a negative argument under the simulator, so the framework's negative/NaN eps (which
    PyTorch computes with) is for now a clear error on CUDA rather than a device fault."""
    validation.check_eps(eps)
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0 on CUDA, got {eps}")
check_num_groups = validation.check_num_groups


def empty(like, shape: tuple, dtype=None):
    """An uninitialised array on the device of `like`, of the same kind (CuPy stays CuPy)."""
    dtype = np.dtype(like.dtype if dtype is None else dtype)
    if isinstance(like, np.ndarray):  # the simulator's stand-in device arrays
        return np.empty(shape, dtype)
    if type(like).__module__.split(".")[0] == "cupy":
        return type(like)(shape, dtype)
    return cuda.device_array(shape, dtype)


def stream_for(array):
    """The stream to launch on: CuPy's current stream for CuPy arrays, so that the kernels
    are ordered with the CuPy ops around them (kernels.cuda turns off numba's per-argument
    stream sync), else numba's default stream, 0."""
    if type(array).__module__.split(".")[0] != "cupy":
        return 0
    import cupy

    pointer = cupy.cuda.get_current_stream().ptr
    return 0 if pointer == 0 else _external_stream(pointer)


@functools.lru_cache(maxsize=16)
def _external_stream(pointer: int):
    return cuda.external_stream(pointer)


def full(like, shape: tuple, value: float, dtype=None):
    """`empty` filled with `value` on the host side; used only for empty-input results."""
    host = np.full(shape, value, np.dtype(like.dtype if dtype is None else dtype))
    if isinstance(like, np.ndarray):
        return host
    if type(like).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy.asarray(host)
    return cuda.to_device(host)


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
    column_sums[grid, BLOCK, stream_for(part_a)](part_a, out_a, part_b, out_b)
