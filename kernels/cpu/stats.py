"""Statistics and reduction helpers shared by the CPU kernels.

Numerics: every set is shifted by its first element K before summing (d = x - K
is exact when x is close to K, which is the large-offset case), and sums are
accumulated in float64. The mean and variance come from one pass of sum(d) and
sum(d^2) (`shifted_moments` says why that is exact enough). E[x^2] - E[x]^2 of unshifted
data is never used.

Fast math: only the reductions below are compiled with "reassoc", the flag that
lets LLVM vectorize a sum. Everywhere else it is off, because it also licenses
rewriting (x - mean) - c as x - (mean + c), and in float32 mean + c rounds away
most of the deviation when |mean| >> std (measured: 0.013-0.05 output error at
x = 1e4 + 0.01·N(0,1), against 5e-7 without it).

Widening: both operands of every difference x - K (x - mean, x - shift) are widened
to float64 before subtracting, in these reductions and in the kernels' output loops:
a float32 difference of values near ±FLT_MAX overflows (3e38 - (-3e38) = inf, and
the set's output became NaN where the float64 reference is finite). The output loops
multiply the float64 difference by inv_std before rounding to the input's dtype.

Threading: a kernel runs serially below `SERIAL_MAX_ELEMENTS` because even with
OMP_WAIT_POLICY=passive waking the OpenMP team costs several microseconds,
more than a small set of rows takes on one core. Parallel drivers split the sets
into one contiguous chunk per thread; cross-set reductions (dweight, dbias,
BatchNorm statistics) write one partial row per chunk, merged in chunk order, so
results are bitwise reproducible for a given thread count.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

# "nnan"/"ninf" are left out on purpose: NaN and Inf must propagate within their
# set, and LLVM may drop them otherwise. "reassoc" only for REDUCTION (see above).
STRICT_FASTMATH = {"contract", "arcp", "nsz", "afn"}
REDUCTION_FASTMATH = STRICT_FASTMATH | {"reassoc"}

# error_model="numpy": 0/0 gives NaN instead of raising, and no zero-division checks
# sit in the inner loops.
jit = functools.partial(numba.njit, cache=True, fastmath=STRICT_FASTMATH, error_model="numpy")
parallel_jit = functools.partial(jit, parallel=True)
reduction_jit = functools.partial(numba.njit, cache=True, fastmath=REDUCTION_FASTMATH,
                                  error_model="numpy")

# Measured crossover (python -m kernels.bench --crossover): below this many elements
# the serial kernel is faster than waking the second thread. Rechecked in whole training steps
# once OpenBLAS ran on the same threads (wake-ups are cheaper under libgomp's own wait policy):
# 16384 and 4096 were no better (digits CNN 4.3 and 4.8 ms against 4.2, MLP BatchNorm1d 8.2
# and 8.6 against 8.6; medians of 4 alternating processes on a noisy AMD EPYC, spread +-15 %).
SERIAL_MAX_ELEMENTS = 65536


def use_parallel(num_elements: int) -> bool:
    """Whether a call over `num_elements` elements should take the parallel driver."""
    return num_elements > SERIAL_MAX_ELEMENTS and numba.get_num_threads() > 1


@jit
def chunk_bounds(total, num_chunks, chunk):
    """[start, stop) of the `chunk`-th of `num_chunks` near-equal contiguous chunks."""
    return total * chunk // num_chunks, total * (chunk + 1) // num_chunks


@reduction_jit
def shifted_sums(values, shift):
    """(sum(d), sum(d^2)) in float64 of a contiguous 1-D set, d = values - shift."""
    total = 0.0
    squares = 0.0
    shift64 = np.float64(shift)
    for i in range(values.size):
        d = np.float64(values[i]) - shift64
        total += d
        squares += d * d
    return total, squares


@reduction_jit
def shifted_moments(values):
    """Statistics of a contiguous 1-D set in one pass, shifted by its first element.

    Returns (shift, centre, var): mean = shift + centre, with shift in the set's
    dtype and centre small, so (x - shift) - centre keeps full precision even when
    |mean| >> std; var is the biased variance, in float64, from the float64 sums of
    d = x - shift and d^2: var = mean(d^2) - centre^2. That difference cancels only as far
    as centre^2 exceeds var, and centre^2 <= n·var because the shift is one of the set's
    own values, so at most log10(n + 1) of float64's 16 digits go (one pass measured
    0.59-0.67 ms against 0.90-0.96 ms for two passes over 16 MB of rows).
    """
    n = values.size
    # an infinite first element would turn every d into NaN: the mean must stay ±inf
    shift = values[0] if np.isfinite(values[0]) else values.dtype.type(0)
    total, squares = shifted_sums(values, shift)
    centre = total / n
    var = squares / n - centre * centre
    if var < 0.0:  # rounding, never NaN (NaN < 0 is false: NaN and Inf propagate)
        var = 0.0
    return shift, centre, var


@jit
def inv_sqrt(var, eps):
    """1/sqrt(var + eps) in float64."""
    return 1.0 / np.sqrt(var + eps)


@reduction_jit
def gradient_sums(x, dy, mu):
    """(sum(d), sum(dy), sum(dy·d)) in float64 over a contiguous 1-D set, d = x - mu."""
    sum_d = 0.0
    sum_dy = 0.0
    sum_dy_d = 0.0
    mu64 = np.float64(mu)
    for i in range(x.size):
        d = np.float64(x[i]) - mu64
        g = np.float64(dy[i])
        sum_d += d
        sum_dy += g
        sum_dy_d += g * d
    return sum_d, sum_dy, sum_dy_d


@reduction_jit
def weighted_gradient_sums(x, dy, weight, mu):
    """(sum(d), sum(g), sum(g·d)) in float64 over a contiguous 1-D set, d = x - mu,
    g = dy·weight elementwise (LayerNorm, RMSNorm); weight None means g = dy."""
    sum_d = 0.0
    sum_g = 0.0
    sum_g_d = 0.0
    mu64 = np.float64(mu)
    for i in range(x.size):
        d = np.float64(x[i]) - mu64
        g = np.float64(dy[i]) if weight is None else np.float64(dy[i]) * np.float64(weight[i])
        sum_d += d
        sum_g += g
        sum_g_d += g * d
    return sum_d, sum_g, sum_g_d


@jit
def sum_partials(partials, out):
    """out[j] = sum over rows of partials[:, j], rows added in order (deterministic)."""
    for j in range(out.size):
        total = 0.0
        for t in range(partials.shape[0]):
            total += partials[t, j]
        out[j] = total


# Cross-row sums (LayerNorm/RMSNorm dweight, dbias) are added up in the data's dtype over a
# block of this many rows, then each block is added to the float64 partial row. A float64
# accumulator in the per-element loop costs a float32 -> float64 conversion and a float64
# load-add-store per element and per sum, and kept that loop at 4 lanes (8 without it):
# serial, cache-resident, LayerNorm backward went from 0.90-0.99 to 0.67-0.76 ns per element.
# A block sum reaches float64 after at most BLOCK_ROWS roundings in the data's dtype.
BLOCK_ROWS = 8


@jit
def add_block(block, partial):
    """partial += block (in float64), then block = 0; nothing when block is None."""
    if block is None:
        return
    for j in range(block.size):
        partial[j] += block[j]
        block[j] = 0


def add_at(block, j, value):
    """block[j] += value, or nothing when block is None, chosen by type at compile time: a loop
    body inlined with inline="always" cannot hold an `is None` branch (Numba types the dead
    branch too and fails on none[j])."""
    raise NotImplementedError("add_at is for jitted code only")


@overload(add_at, inline="always")
def _add_at(block, j, value):
    if block is types.none:
        return lambda block, j, value: None

    def add(block, j, value):
        block[j] += value
    return add


def new_partials(num_chunks: int, size: int, needed: bool) -> np.ndarray | None:
    """Zeroed float64 partial rows, one per thread chunk, or None when the sum it would
    hold is not wanted (the kernels then compile without it)."""
    return np.zeros((num_chunks, size)) if needed else None


def merge_partials(partials: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    """The chunk-ordered sum of the partial rows, in `dtype`; None stays None."""
    if partials is None:
        return None
    out = np.empty(partials.shape[1], dtype)
    sum_partials(partials, out)
    return out


# Prefetching the next row (LayerNorm and RMSNorm backward). The second pass over a row runs
# from L1 with no loads in flight, and (our reading) the hardware prefetcher stops at the 4 KiB
# page that ends a 1024-column float32 row, so the next row's loads and dx's read-for-ownership
# began only after the second pass: memory time plus compute time. Prefetching the next row's
# x and dy into L2 and its dx into L1 for writing, one group every PREFETCH_BLOCK columns of
# the second pass, overlaps them. Measured on this 2-core machine (shared; interleaved runs,
# medians): LayerNorm backward (16384, 1024) 54-60 % -> 68-76 % of the same-run copy, RMSNorm
# 60-66 % -> 73-82 % (README.md). Read prefetches alone gained nothing, and the write
# prefetches issued as one burst per row 3 %. Cache-resident inputs only pay for the blocks
# (LayerNorm 64 x 1024 20 % slower, 2048 x 1024 5 % slower, 4096 x 1024 even, 8192 x 1024
# 17 % faster), hence PREFETCH_MIN_BYTES; below it the second pass is one loop per row.
PREFETCH_BLOCK = 64
PREFETCH_MIN_BYTES = 16 << 20
PREFETCH_STRIDE = 16


def _prefetch_intrinsic(write: int, locality: int):
    @intrinsic
    def prefetch(typingctx, array, row, column):
        """Prefetch the line holding array[row, column] of a 2-D array (never faults)."""
        if not (isinstance(array, types.Array) and array.ndim == 2
                and isinstance(row, types.Integer) and isinstance(column, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            array_type = signature.args[0]
            view = context.make_array(array_type)(context, builder, args[0])
            pointer = cgutils.get_item_pointer(context, builder, array_type, view,
                                               [args[1], args[2]], wraparound=False)
            i32 = ir.IntType(32)
            function = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32]),
                "llvm.prefetch.p0")
            builder.call(function, [pointer, i32(write), i32(locality), i32(1)])  # 1: data
            return context.get_dummy_value()

        return types.void(array, row, column), codegen

    return prefetch


prefetch_to_l2 = _prefetch_intrinsic(write=0, locality=2)  # prefetcht1
prefetch_for_write = _prefetch_intrinsic(write=1, locality=3)  # prefetchw


@jit(inline="always")
def prefetch_next_row(x, dy, dx, i, stop, start):
    """Prefetch columns [start, start + PREFETCH_BLOCK) of the row after row i (row i itself
    when it is the last below `stop`): x and dy into L2, dx into L1 for writing. One prefetch
    per PREFETCH_STRIDE elements (a 64-byte line of float32; for float64 every other line,
    the L2's adjacent-line prefetch brings the pair)."""
    following = i + 1 if i + 1 < stop else i
    for k in range(start, start + PREFETCH_BLOCK, PREFETCH_STRIDE):
        prefetch_to_l2(x, following, k)
        prefetch_to_l2(dy, following, k)
        prefetch_for_write(dx, following, k)


@functools.partial(numba.njit, cache=True, fastmath=False, error_model="numpy")
def product_minus(a, b, c):
    """a·b - c with the product rounded first: compiled without "contract", so LLVM cannot fuse
    it into an FMA (exact a·b - c), and a·b - c is exactly 0 whenever c is the rounded a·b —
    the one-element set of LayerNorm/GroupNorm backward, where c = mean(g) = g."""
    return a * b - c
