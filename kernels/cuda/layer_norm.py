"""LayerNorm over the last dimension of x (rows, cols) on the GPU, forward and backward.

The forward row kernels also serve RMSNorm (mean=None: no shift, no centre, no bias) and
GroupNorm's forward (rows = (sample, group) sets, a per-channel affine), and the backward
row kernels RMSNorm's backward, so these normalizations share one tested code path.

Forward, per row of n = cols elements (shifted two-pass, kernels/README.md):
    K = x[row, 0]; centre = mean(x - K); var = mean((x - K - centre)^2)
    r = 1/sqrt(var + eps); y = ((x - K) - centre)·r·weight + bias; mean = K + centre
    RMSNorm: K = centre = 0, so var = mean(x^2) and y = x·r·weight.
    Rows of up to WARP·per_lane elements (the row-length buckets of helpers.GEOMETRY): a
    warp per row, the row in registers, loads first, then arithmetic, then stores; up to
    block·per_lane: the same with a block per row; longer rows: a block per row
    (forward_long_rows), the row cached in shared memory when it fits.
    traffic: read x, write y = 2·E·s (one launch).

Backward, per row, g = dy·weight, d = x - mean:
    c = mean(d) (the saved mean is rounded to x's dtype; c = 0 if it were exact)
    sum(g·xhat) = r·(sum(g·d) - c·sum(g))
    dx = r·g - r·sum(g)/n - xhat·r·sum(g·xhat)/n, xhat = (d - c)·r
    RMSNorm: mean = c = 0 and the sum(g) term is absent: dx = r·g - x·r^3·sum(g·x)/n.
    dweight, dbias: each block owns a strip of rows and writes one partial row once (its
    warps' shared-memory sums added in warp order; long rows: the block's partial row is
    updated in global memory once per row); `column_sums` adds the partial rows.
    traffic: read dy and x, write dx = 3·E·s, plus the partials (two launches).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float64, int32, uint32

from kernels.cuda import helpers
from kernels.cuda.helpers import (
    SCRATCH,
    WARP,
    block_sum,
    device_function,
    split_index,
    step_index,
    warp_sum,
)


@device_function
def affine(deviation, r, weight, bias, index):
    """deviation·r·weight[index] + bias[index]; a None weight or bias is compiled out."""
    out = deviation * r
    if weight is not None:
        out *= weight[index]
    if bias is not None:
        out += bias[index]
    return out


@device_function
def lane_view(array, lane):
    """array[lane:] (None for None): its element k·WARP is column lane + k·WARP at a
    constant offset, with no index arithmetic or negative-index wraparound per element."""
    if array is None:
        return None
    return array[lane:]


# The row kernels are specialised by row-length bucket (helpers.row_bucket): a row is held
# by WARP threads (a warp per row) or by a whole block (a block per row, rows longer than a
# warp's registers), lane l holding columns l + k·stride for k < per_lane, stride = the
# row's threads, so a short row pays only for the registers it uses. Each row is processed
# in phases: every global load first, with a fixed trip count and no dependence between
# them (load_lane), so all of a lane's loads are in flight together; then the arithmetic;
# then every store. Numba marks no array noalias, so a load placed after a store could not
# move above it. Column offsets within a row view are 32-bit (uint32: no negative-index
# wraparound either). Rows longer than a block's registers go to the *_long_rows kernels,
# not restructured yet (a chunked version with these phases took 130-176 registers on
# sm_80: NVVM unrolled its chunk loops).


@device_function
def load_lane(values, part, per_lane, stride, tail, pad):
    """values[k] = part[k·stride] where k·stride < tail, else pad, for k < per_lane."""
    for k in range(per_lane):
        values[k] = part[uint32(k * stride)] if k * stride < tail else pad


@functools.cache
def forward_kernel(per_lane: int, block: int | None = None):
    """The forward for rows held in registers: a warp per row of at most WARP·per_lane
    columns, or a block (launched with `block` threads) per row of at most block·per_lane."""
    whole_block = block is not None
    group_sum = block_sum if whole_block else warp_sum
    stride = block if whole_block else WARP  # threads per row, a constant: immediate offsets

    @cuda.jit
    def forward_rows(x, weight, bias, eps, num_groups, spatial, y, mean, inv_std, var):
        scratch = cuda.shared.array(SCRATCH, float64)
        values = cuda.local.array(per_lane, x.dtype)
        rows, cols = x.shape
        zero = x.dtype.type(0.0)
        centered = mean is not None
        tid = cuda.threadIdx.x
        lane = tid if whole_block else tid % WARP
        per_block = 1 if whole_block else cuda.blockDim.x // WARP  # rows per block and trip
        tail = int32(cols - lane)  # this lane's columns are lane + k·stride for k·stride < tail
        weight_lane = lane_view(weight, lane)
        bias_lane = lane_view(bias, lane)
        # block-uniform loop: every warp runs the same trips, inactive ones (row >= rows)
        # compute on the last row and store nothing
        for first in range(cuda.blockIdx.x * per_block, rows, cuda.gridDim.x * per_block):
            row = first if whole_block else first + tid // WARP
            active = row < rows
            x_row = x[min(row, rows - 1)]
            shift = x_row[0] if centered else zero
            load_lane(values, x_row[lane:], per_lane, stride, tail, shift)  # pad: deviation 0
            total = zero
            for k in range(per_lane):
                values[k] -= shift
                total += values[k]
            centre = group_sum(total, scratch) / cols if centered else 0.0
            centre_t = x.dtype.type(centre)
            squares = zero
            for k in range(per_lane):
                if k * stride < tail:
                    d = values[k] - centre_t
                    squares += d * d
            variance = group_sum(squares, scratch) / cols
            r = 1.0 / math.sqrt(variance + eps)
            r_t = x.dtype.type(r)
            if active:
                if num_groups is None:  # LayerNorm, RMSNorm: weight and bias per column
                    for k in range(per_lane):
                        if k * stride < tail:
                            values[k] = affine(values[k] - centre_t, r_t, weight_lane,
                                               bias_lane, uint32(k * stride))
                else:  # GroupNorm: column j belongs to channel first_channel + j // spatial
                    first_channel = (row % num_groups) * (cols // spatial)
                    channel, position = split_index(lane, spatial)
                    step_channel, step_position = split_index(stride, spatial)
                    for k in range(per_lane):
                        if k * stride < tail:
                            values[k] = affine(values[k] - centre_t, r_t, weight, bias,
                                               first_channel + channel)
                        channel, position = step_index(channel, position, step_channel,
                                                       step_position, spatial)
                y_lane = y[row, lane:]
                for k in range(per_lane):
                    if k * stride < tail:
                        y_lane[uint32(k * stride)] = values[k]
                if lane == 0:
                    if mean is not None:
                        mean[row] = shift + centre
                    inv_std[row] = r
                    if var is not None:  # GroupNorm: for InstanceNorm's running_var
                        var[row] = variance

    return forward_rows


@cuda.jit
def forward_long_rows(x, weight, bias, eps, num_groups, spatial, cached, y, mean, inv_std,
                      var):
    """One block per row longer than its registers hold (not restructured yet: a loop per
    element, which NVVM unrolls by 4); the shifted row is kept in shared memory when
    `cached`."""
    scratch = cuda.shared.array(SCRATCH, float64)
    row_cache = cuda.shared.array(0, x.dtype)
    rows, cols = x.shape
    zero = x.dtype.type(0.0)
    centered = mean is not None
    tid, threads = cuda.threadIdx.x, cuda.blockDim.x
    for row in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
        shift = x[row, 0] if centered else zero
        total = zero
        for j in range(tid, cols, threads):
            d = x[row, j] - shift
            if cached:
                row_cache[j] = d  # each thread rereads only its own columns: no sync needed
            total += d
        centre = block_sum(total, scratch) / cols if centered else 0.0
        centre_t = x.dtype.type(centre)
        squares = zero
        for j in range(tid, cols, threads):
            d = (row_cache[j] if cached else x[row, j] - shift) - centre_t
            squares += d * d
        variance = block_sum(squares, scratch) / cols
        r = 1.0 / math.sqrt(variance + eps)
        r_t = x.dtype.type(r)
        first = (row % num_groups) * (cols // spatial)
        channel, position = split_index(tid, spatial)
        step_channel, step_position = split_index(threads, spatial)
        for j in range(tid, cols, threads):
            d = (row_cache[j] if cached else x[row, j] - shift) - centre_t
            y[row, j] = affine(d, r_t, weight, bias, first + channel)
            channel, position = step_index(channel, position, step_channel, step_position,
                                           spatial)
        if tid == 0:
            if mean is not None:
                mean[row] = shift + centre
            inv_std[row] = r
            if var is not None:
                var[row] = variance


@functools.cache
def backward_kernel(per_lane: int, block: int | None = None):
    """The backward for rows held in registers: a warp per row of at most WARP·per_lane
    columns, or a block (launched with `block` threads) per row of at most block·per_lane. Each
    warp (or the block) adds its rows' dweight/dbias terms into its own row of shared
    memory (not registers: that would cost 2·per_lane more of them); at the end the block
    adds its warps' rows, in warp order, and writes its partial row once. Dynamic shared
    memory: (1 or 2)·(rows per block)·cols."""
    whole_block = block is not None
    group_sum = block_sum if whole_block else warp_sum
    stride = block if whole_block else WARP  # threads per row, a constant: immediate offsets

    @cuda.jit
    def backward_rows(dy, x, mean, inv_std, weight, dx, dweight_part, dbias_part):
        scratch = cuda.shared.array(SCRATCH, float64)
        sums = cuda.shared.array(0, x.dtype)  # [dweight, dbias][group][cols]
        deviations = cuda.local.array(per_lane, x.dtype)
        grads = cuda.local.array(per_lane, x.dtype)
        rows, cols = x.shape
        zero = x.dtype.type(0.0)
        centered = mean is not None
        tid, threads = cuda.threadIdx.x, cuda.blockDim.x
        lane = tid if whole_block else tid % WARP
        group = 0 if whole_block else tid // WARP  # the block's row this thread works on
        groups = 1 if whole_block else threads // WARP
        tail = int32(cols - lane)  # this lane's columns are lane + k·stride for k·stride < tail
        weight_lane = lane_view(weight, lane)
        own_weight = uint32(group * cols + lane)  # shared-memory offsets are 32-bit
        own_bias = uint32((groups + group) * cols + lane)
        for k in range(per_lane):
            if k * stride < tail:
                sums[own_weight + uint32(k * stride)] = zero
                if dbias_part is not None:
                    sums[own_bias + uint32(k * stride)] = zero
        for first in range(cuda.blockIdx.x * groups, rows, cuda.gridDim.x * groups):
            row = first + group
            active = row < rows
            source = min(row, rows - 1)
            load_lane(deviations, x[source, lane:], per_lane, stride, tail, zero)
            load_lane(grads, dy[source, lane:], per_lane, stride, tail, zero)
            mu = zero
            if mean is not None:  # RMSNorm passes None: compiled out
                mu = mean[source]
            r = float64(inv_std[source])
            sum_d = zero
            sum_g = zero
            sum_g_d = zero
            for k in range(per_lane):
                if k * stride < tail:
                    d = deviations[k] - mu
                    deviations[k] = d
                    g = grads[k] * weight_lane[uint32(k * stride)] if weight is not None \
                        else grads[k]
                    sum_d += d
                    sum_g += g
                    sum_g_d += g * d
            n = float64(cols)
            sum_g_total = group_sum(sum_g, scratch)
            correction = group_sum(sum_d, scratch) / n if centered else 0.0
            sum_g_xhat = r * (group_sum(sum_g_d, scratch) - correction * sum_g_total)
            offset = x.dtype.type(r * sum_g_total / n if centered else 0.0)
            xhat_scale = x.dtype.type(r * sum_g_xhat / n)
            correction_t = x.dtype.type(correction)
            r_t = x.dtype.type(r)
            if active:
                for k in range(per_lane):
                    if k * stride < tail:
                        column = uint32(k * stride)
                        xhat = (deviations[k] - correction_t) * r_t
                        g = grads[k] * weight_lane[column] if weight is not None else grads[k]
                        deviations[k] = r_t * g - offset - xhat * xhat_scale
                        sums[own_weight + column] += grads[k] * xhat
                        if dbias_part is not None:
                            sums[own_bias + column] += grads[k]
                dx_lane = dx[row, lane:]
                for k in range(per_lane):
                    if k * stride < tail:
                        dx_lane[uint32(k * stride)] = deviations[k]
        cuda.syncthreads()
        part = cuda.blockIdx.x
        for j in range(tid, cols, threads):
            total = zero
            for w in range(groups):
                total += sums[w * cols + j]
            dweight_part[part, j] = total
            if dbias_part is not None:
                total = zero
                for w in range(groups):
                    total += sums[(groups + w) * cols + j]
                dbias_part[part, j] = total

    return backward_rows


@cuda.jit
def backward_long_rows(dy, x, mean, inv_std, weight, dx, dweight_part, dbias_part):
    """One block per row longer than its registers hold (not restructured yet), grid-strided;
    block b accumulates its rows' dweight/dbias into
    partial row b (every block has at least one row: the grid is at most `rows`)."""
    scratch = cuda.shared.array(SCRATCH, float64)
    rows, cols = x.shape
    zero = x.dtype.type(0.0)
    centered = mean is not None
    tid, threads, block = cuda.threadIdx.x, cuda.blockDim.x, cuda.blockIdx.x
    for row in range(block, rows, cuda.gridDim.x):
        mu = zero
        if mean is not None:
            mu = mean[row]
        sum_d = zero
        sum_g = zero
        sum_g_d = zero
        for j in range(tid, cols, threads):
            d = x[row, j] - mu
            g = dy[row, j] * weight[j] if weight is not None else dy[row, j]
            sum_d += d
            sum_g += g
            sum_g_d += g * d
        n = float64(cols)
        r = float64(inv_std[row])
        sum_g_total = block_sum(sum_g, scratch)
        correction = block_sum(sum_d, scratch) / n if centered else 0.0
        sum_g_xhat = r * (block_sum(sum_g_d, scratch) - correction * sum_g_total)
        offset = x.dtype.type(r * sum_g_total / n if centered else 0.0)
        xhat_scale = x.dtype.type(r * sum_g_xhat / n)
        correction_t = x.dtype.type(correction)
        r_t = x.dtype.type(r)
        for j in range(tid, cols, threads):
            grad = dy[row, j]
            xhat = ((x[row, j] - mu) - correction_t) * r_t
            g = grad * weight[j] if weight is not None else grad
            dx[row, j] = r_t * g - offset - xhat * xhat_scale
            if row == block:
                dweight_part[block, j] = grad * xhat
                if dbias_part is not None:
                    dbias_part[block, j] = grad
            else:
                dweight_part[block, j] += grad * xhat
                if dbias_part is not None:
                    dbias_part[block, j] += grad


def launch_forward(x, weight, bias, eps: float, y, mean, inv_std, var=None,
                   num_groups: int = 1, spatial: int = 1) -> None:
    """Pick the row kernel of x's row-length bucket (a warp per row, a block per row with
    the row in registers, or the long-row kernel) and launch it; mean is None
    for RMSNorm; GroupNorm passes its (sample, group) rows and layout, and var for the
    biased variance."""
    rows, cols = x.shape
    block, stream = helpers.GEOMETRY.block, helpers.stream_for(x)
    grouped = spatial > 1 or num_groups > 1  # GroupNorm: a per-channel affine
    arguments = (x, weight, bias, eps, num_groups if grouped else None, spatial, y, mean,
                 inv_std, var)
    per_lane = helpers.row_bucket(cols, x.dtype)
    if per_lane is not None:
        grid = helpers.blocks_for(rows, block // WARP, most=helpers.row_grid_limit())
        forward_kernel(per_lane)[grid, block, stream](*arguments)
        return
    grid = helpers.blocks_for(rows, 1, most=helpers.row_grid_limit())
    per_thread = helpers.row_bucket(cols, x.dtype, threads=block)
    if per_thread is not None:
        forward_kernel(per_thread, block)[grid, block, stream](*arguments)
        return
    row_bytes = cols * x.dtype.itemsize
    cached = row_bytes <= helpers.GEOMETRY.shared_bytes
    forward_long_rows[grid, block, stream, row_bytes if cached else 0](
        x, weight, bias, eps, num_groups, spatial, cached, y, mean, inv_std, var)


def backward_warps(cols: int, itemsize: int, partials: int) -> int:
    """Warps per block of the warp-per-row backward: GEOMETRY.block's, fewer where their
    shared-memory rows (`partials`·cols·itemsize bytes each) would not fit."""
    fit = helpers.GEOMETRY.shared_bytes // (partials * cols * itemsize)
    return max(1, min(helpers.GEOMETRY.block // WARP, fit))


def launch_backward(dy, x, mean, inv_std, weight, dx, dweight, dbias) -> None:
    """Row kernel writing one partial row per block, then `column_sums` (two launches); mean
    is None for RMSNorm."""
    rows, cols = x.shape
    block, stream = helpers.GEOMETRY.block, helpers.stream_for(x)
    per_lane = helpers.row_bucket(cols, x.dtype)
    partials = 1 if dbias is None else 2
    row_bytes = partials * cols * x.dtype.itemsize  # one row of shared partials
    per_thread = helpers.row_bucket(cols, x.dtype, threads=block)
    if per_lane is not None:
        warps = backward_warps(cols, x.dtype.itemsize, partials)
        grid, block = helpers.blocks_for(rows, warps), warps * WARP
        kernel = backward_kernel(per_lane)[grid, block, stream, warps * row_bytes]
    elif per_thread is not None and row_bytes <= helpers.GEOMETRY.shared_bytes:
        grid = helpers.blocks_for(rows, 1)
        kernel = backward_kernel(per_thread, block)[grid, block, stream, row_bytes]
    else:
        grid = helpers.blocks_for(rows, 1)
        kernel = backward_long_rows[grid, block, stream]
    dweight_part = helpers.empty(x, (grid, cols))
    dbias_part = None if dbias is None else helpers.empty(x, (grid, cols))
    kernel(dy, x, mean, inv_std, weight, dx, dweight_part, dbias_part)
    helpers.launch_column_sums(dweight_part, dweight, dbias_part, dbias)


def layer_norm_forward(x, weight, bias, eps: float):
    """y = (x - mu)/sqrt(var + eps)·weight + bias per row of x (rows, cols), on the GPU.

    Returns (y, mean, inv_std) as device arrays of x's kind; mean and inv_std have shape
    (rows,) and x's dtype.
    """
    helpers.check_array("x", x, 2)
    rows, cols = x.shape
    dtype = np.dtype(x.dtype)
    helpers.check_vector("weight", weight, cols, dtype, "normalized_shape = x.shape[1:]")
    helpers.check_vector("bias", bias, cols, dtype, "normalized_shape = x.shape[1:]")
    eps = helpers.check_eps(eps)
    y = helpers.empty(x, (rows, cols))
    if cols == 0 or rows == 0:
        return y, helpers.full(x, (rows,), np.nan), helpers.full(x, (rows,), np.nan)
    mean = helpers.empty(x, (rows,))
    inv_std = helpers.empty(x, (rows,))
    launch_forward(x, weight, bias, eps, y, mean, inv_std)
    return y, mean, inv_std


def layer_norm_backward(dy, x, mean, inv_std, weight, param_grads: bool = True):
    """dx = (r/n)·(n·g - sum(g) - xhat·sum(g·xhat)), g = dy·weight, per row;
    dweight = sum over rows of dy·xhat, dbias = sum over rows of dy.

    Returns (dx, dweight, dbias); dweight and dbias have shape (cols,), or are None when
    param_grads is False (the row kernels still accumulate them: their partials are one
    strip per block, small next to dx).
    """
    helpers.check_array("x", x, 2)
    rows, cols = x.shape
    dtype = np.dtype(x.dtype)
    helpers.check_like("dy", dy, x, "x")
    for name, stats in (("mean", mean), ("inv_std", inv_std)):
        helpers.check_vector(name, stats, rows, dtype, "one per row of x", optional=False)
    helpers.check_vector("weight", weight, cols, dtype, "normalized_shape = x.shape[1:]")
    dx = helpers.empty(x, (rows, cols))
    if rows == 0 or cols == 0:
        dweight, dbias = helpers.full(x, (cols,), 0.0), helpers.full(x, (cols,), 0.0)
    else:
        dweight, dbias = helpers.empty(x, (cols,)), helpers.empty(x, (cols,))
        launch_backward(dy, x, mean, inv_std, weight, dx, dweight, dbias)
    return (dx, dweight, dbias) if param_grads else (dx, None, None)
