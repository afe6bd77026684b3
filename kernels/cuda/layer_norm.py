"""LayerNorm over the last dimension of x (rows, cols) on the GPU, forward and backward.

The forward row kernels also serve RMSNorm (mean=None: no shift, no centre, no bias) and
GroupNorm's forward (rows = (sample, group) sets, a per-channel affine), and the backward
row kernels RMSNorm's backward, so these normalizations share one tested code path.

Forward, per row of n = cols elements (shifted two-pass, KERNELS.md):
    K = x[row, 0]; centre = mean(x - K); var = mean((x - K - centre)^2)
    r = 1/sqrt(var + eps); y = ((x - K) - centre)·r·weight + bias; mean = K + centre
    RMSNorm: K = centre = 0, so var = mean(x^2) and y = x·r·weight.
    Rows of up to WARP_ROW_MAX elements: a warp per row, the row in registers.
    Longer rows: a block per row, the row cached in shared memory when it fits.
    traffic: read x, write y = 2·E·s (one launch).

Backward, per row, g = dy·weight, d = x - mean:
    c = mean(d) (the saved mean is rounded to x's dtype; c = 0 if it were exact)
    sum(g·xhat) = r·(sum(g·d) - c·sum(g))
    dx = r·g - r·sum(g)/n - xhat·r·sum(g·xhat)/n, xhat = (d - c)·r
    RMSNorm: mean = c = 0 and the sum(g) term is absent: dx = r·g - x·r^3·sum(g·x)/n.
    dweight, dbias: each block owns a strip of rows and writes one partial row (its warps'
    register sums added in warp order); `column_sums` adds the partial rows.
    traffic: read dy and x, write dx = 3·E·s, plus the partials (two launches).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from kernels.cuda import helpers
from kernels.cuda.helpers import (
    BLOCK,
    ROW_REGISTERS,
    SCRATCH,
    WARP,
    block_sum,
    device_function,
    split_index,
    step_index,
    warp_sum,
)

# Dynamic shared memory per block, leaving room for the scratch array (48 KB is the limit
# without opting in on every CUDA GPU).
SHARED_ROW_BYTES = 47 * 1024


@device_function
def affine(deviation, r, weight, bias, index):
    """deviation·r·weight[index] + bias[index]; a None weight or bias is compiled out."""
    out = deviation * r
    if weight is not None:
        out *= weight[index]
    if bias is not None:
        out += bias[index]
    return out


@cuda.jit
def forward_warp_rows(x, weight, bias, eps, num_groups, spatial, y, mean, inv_std, var):
    """One warp per row; lane l holds columns l, l + 32, ... in registers."""
    scratch = cuda.shared.array(SCRATCH, float64)
    values = cuda.local.array(ROW_REGISTERS, x.dtype)
    rows, cols = x.shape
    zero = x.dtype.type(0.0)
    centered = mean is not None
    lane = cuda.threadIdx.x % WARP
    warps = cuda.blockDim.x // WARP
    # block-uniform loop: every warp runs the same trips, inactive ones with active = False
    for first in range(cuda.blockIdx.x * warps, rows, cuda.gridDim.x * warps):
        row = first + cuda.threadIdx.x // WARP
        active = row < rows
        shift = x[row, 0] if active and centered else zero
        total = zero
        for k in range(ROW_REGISTERS):
            if k * WARP >= cols:
                break
            j = lane + k * WARP
            values[k] = x[row, j] - shift if active and j < cols else zero
            total += values[k]
        centre = warp_sum(total, scratch) / cols if centered else 0.0
        centre_t = x.dtype.type(centre)
        squares = zero
        for k in range(ROW_REGISTERS):
            if k * WARP >= cols:
                break
            if lane + k * WARP < cols:
                d = values[k] - centre_t
                squares += d * d
        variance = warp_sum(squares, scratch) / cols
        r = 1.0 / math.sqrt(variance + eps)
        r_t = x.dtype.type(r)
        if active:
            # GroupNorm: column j belongs to channel first + j // spatial of this row's group
            first = (row % num_groups) * (cols // spatial)
            channel, position = split_index(lane, spatial)
            step_channel, step_position = split_index(WARP, spatial)
            for k in range(ROW_REGISTERS):
                j = lane + k * WARP
                if k * WARP >= cols:
                    break
                if j < cols:
                    y[row, j] = affine(values[k] - centre_t, r_t, weight, bias, first + channel)
                channel, position = step_index(channel, position, step_channel, step_position,
                                               spatial)
            if lane == 0:
                if mean is not None:
                    mean[row] = shift + centre
                inv_std[row] = r
                if var is not None:
                    var[row] = variance


@cuda.jit
def forward_block_rows(x, weight, bias, eps, num_groups, spatial, cached, y, mean, inv_std,
                       var):
    """One block per row; the shifted row is kept in shared memory when `cached`."""
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


@cuda.jit
def backward_warp_rows(dy, x, mean, inv_std, weight, dx, dweight_part, dbias_part):
    """One warp per row; each warp accumulates its rows' dweight/dbias in registers, and at
    the end the block's warps add theirs, in warp order, into the block's partial row."""
    scratch = cuda.shared.array(SCRATCH, float64)
    deviations = cuda.local.array(ROW_REGISTERS, x.dtype)
    grads = cuda.local.array(ROW_REGISTERS, x.dtype)
    dweight_acc = cuda.local.array(ROW_REGISTERS, x.dtype)
    dbias_acc = cuda.local.array(ROW_REGISTERS, x.dtype)
    rows, cols = x.shape
    zero = x.dtype.type(0.0)
    centered = mean is not None
    lane, warp = cuda.threadIdx.x % WARP, cuda.threadIdx.x // WARP
    warps = cuda.blockDim.x // WARP
    block = cuda.blockIdx.x
    for k in range(ROW_REGISTERS):
        dweight_acc[k] = zero
        dbias_acc[k] = zero
    for first in range(cuda.blockIdx.x * warps, rows, cuda.gridDim.x * warps):
        row = first + cuda.threadIdx.x // WARP
        active = row < rows
        mu = zero
        if mean is not None:  # RMSNorm passes None: compiled out
            if active:
                mu = mean[row]
        sum_d = zero
        sum_g = zero
        sum_g_d = zero
        for k in range(ROW_REGISTERS):
            if k * WARP >= cols:
                break
            j = lane + k * WARP
            deviations[k] = zero
            grads[k] = zero
            if active and j < cols:
                deviations[k] = x[row, j] - mu
                grads[k] = dy[row, j]
                g = grads[k] * weight[j] if weight is not None else grads[k]
                sum_d += deviations[k]
                sum_g += g
                sum_g_d += g * deviations[k]
        n = float64(cols)
        r = float64(inv_std[row]) if active else 0.0
        sum_g_total = warp_sum(sum_g, scratch)
        correction = warp_sum(sum_d, scratch) / n if centered else 0.0
        sum_g_xhat = r * (warp_sum(sum_g_d, scratch) - correction * sum_g_total)
        offset = x.dtype.type(r * sum_g_total / n if centered else 0.0)
        xhat_scale = x.dtype.type(r * sum_g_xhat / n)
        correction_t = x.dtype.type(correction)
        r_t = x.dtype.type(r)
        if active:
            for k in range(ROW_REGISTERS):
                if k * WARP >= cols:
                    break
                j = lane + k * WARP
                if j < cols:
                    xhat = (deviations[k] - correction_t) * r_t
                    g = grads[k] * weight[j] if weight is not None else grads[k]
                    dx[row, j] = r_t * g - offset - xhat * xhat_scale
                    dweight_acc[k] += grads[k] * xhat
                    dbias_acc[k] += grads[k]
    for turn in range(warps):
        if warp == turn:
            for k in range(ROW_REGISTERS):
                j = lane + k * WARP
                if k * WARP >= cols:
                    break
                if j < cols:
                    if turn == 0:
                        dweight_part[block, j] = dweight_acc[k]
                    else:
                        dweight_part[block, j] += dweight_acc[k]
                    if dbias_part is not None:
                        if turn == 0:
                            dbias_part[block, j] = dbias_acc[k]
                        else:
                            dbias_part[block, j] += dbias_acc[k]
        cuda.syncthreads()  # also makes this warp's global writes visible to the next


@cuda.jit
def backward_block_rows(dy, x, mean, inv_std, weight, dx, dweight_part, dbias_part):
    """One block per row, grid-strided; block b accumulates its rows' dweight/dbias into
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


def launch_forward(x, weight, bias, eps: float, y, mean, inv_std, var=None, num_groups: int = 1,
                   spatial: int = 1) -> None:
    """Pick the warp-per-row or block-per-row kernel for x's row length and launch it;
    mean is None for RMSNorm; GroupNorm passes its (sample, group) rows and layout, and var
    for the biased variance."""
    rows, cols = x.shape
    if cols <= helpers.WARP_ROW_MAX:
        warps = BLOCK // WARP
        grid = helpers.blocks_for(rows, warps, most=helpers.row_grid_limit())
        forward_warp_rows[grid, BLOCK, helpers.stream_for(x)](x, weight, bias, eps, num_groups,
                                                              spatial, y, mean, inv_std, var)
        return
    row_bytes = cols * x.dtype.itemsize
    cached = row_bytes <= SHARED_ROW_BYTES
    grid = helpers.blocks_for(rows, 1, most=helpers.row_grid_limit())
    forward_block_rows[grid, BLOCK, helpers.stream_for(x), row_bytes if cached else 0](
        x, weight, bias, eps, num_groups, spatial, cached, y, mean, inv_std, var)


def launch_backward(dy, x, mean, inv_std, weight, dx, dweight, dbias) -> None:
    """Row kernel writing partial rows, then `column_sums` (two launches); mean is None
    for RMSNorm. The row kernels always accumulate dweight/dbias (their partials are a
    strip per block, a small cost next to dx); with param_grads False the wrappers drop them."""
    rows, cols = x.shape
    if cols <= helpers.WARP_ROW_MAX:
        warps = BLOCK // WARP
        grid = helpers.blocks_for(rows, warps)
        kernel = backward_warp_rows
    else:
        grid = helpers.blocks_for(rows, 1)
        kernel = backward_block_rows
    dweight_part = helpers.empty(x, (grid, cols))
    dbias_part = None if dbias is None else helpers.empty(x, (grid, cols))
    kernel[grid, BLOCK, helpers.stream_for(x)](dy, x, mean, inv_std, weight, dx, dweight_part,
                                               dbias_part)
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
    param_grads is False.
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
