"""GroupNorm (and InstanceNorm, num_groups == C) of x (N, C, S) on the GPU.

Each (sample, group) set is C/num_groups channels times S positions: one contiguous run
of n elements in a C-contiguous x, so the kernels see x as (N·num_groups, n) rows.

Forward: LayerNorm's row kernels (kernels.cuda.layer_norm) with a per-channel affine,
    y = ((x - K) - centre)·r·weight[c] + bias[c] (shifted two-pass statistics)
    a warp per set for n ≤ WARP_ROW_MAX, else a block per set with the set in shared
    memory when it fits; traffic: read x, write y = 2·E·s (one launch).

Backward, per-(sample, channel) partials across blocks (PyTorch's approach), then a
(set, slice) grid; g = dy·weight[c], d = x - mean, c0 = mean(d) (the rounding of the saved
mean):
    1. `channel_sums`: a warp per (sample, channel) row of S positions:
       S_dy = sum(dy), S_dyd = sum(dy·d), S_d = sum(d), in float64 (N·C, 3).
    2. `input_gradient`: block (set, p) reduces its set's channels, in a fixed order:
       sum(g) = Σ weight[c]·S_dy, sum(g·xhat) = r·(Σ weight[c]·S_dyd - c0·sum(g))
       (reduced from d = x - mean, never as sum(g·x) - sum(g)·mean, which cancels),
       then writes dx = r·g - r·sum(g)/n - xhat·r·sum(g·xhat)/n, xhat = (d - c0)·r, for
       slice p of the set; block (set, 0) writes the (N, C) float64 partials
       dweight[c] of sample i = r·(S_dyd - c0·S_dy), dbias[c] = S_dy,
    3. which `column_sums` adds over samples in order.
    traffic: read dy and x twice, write dx = 5·E·s (the second read mostly from L2).
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float64

from kernels.cuda import helpers
from kernels.cuda.batch_norm import UNROLL, slice_bounds
from kernels.cuda.helpers import SCRATCH, WARP, block_sum, split_index, step_index, warp_sum
from kernels.cuda.layer_norm import launch_forward


@cuda.jit
def channel_sums(dy, x, mean, per_group, sums):
    """sums[row] = (sum(dy), sum(dy·d), sum(d)), d = x - mean of the row's set, for each
    (sample, channel) row of x (N·C, S): a warp per row, UNROLL loads per lane per trip."""
    scratch = cuda.shared.array(SCRATCH, float64)
    xs = cuda.local.array(UNROLL, x.dtype)
    gs = cuda.local.array(UNROLL, x.dtype)
    rows, spatial = x.shape
    zero = x.dtype.type(0.0)
    lane = cuda.threadIdx.x % WARP
    warps = cuda.blockDim.x // WARP
    for first in range(cuda.blockIdx.x * warps, rows, cuda.gridDim.x * warps):
        row = first + cuda.threadIdx.x // WARP
        source = min(row, rows - 1)
        mu = mean[source // per_group]
        x_row = x[source]
        dy_row = dy[source]
        sum_dy = zero
        sum_dy_d = zero
        sum_d = zero
        for base in range(lane, spatial, WARP * UNROLL):
            for u in range(UNROLL):
                s = base + u * WARP
                xs[u] = x_row[s] if s < spatial else mu  # padding: d = 0
                gs[u] = dy_row[s] if s < spatial else zero
            for u in range(UNROLL):
                d = xs[u] - mu
                sum_dy += gs[u]
                sum_dy_d += gs[u] * d
                sum_d += d
        total_dy = warp_sum(sum_dy, scratch)
        total_dy_d = warp_sum(sum_dy_d, scratch)
        total_d = warp_sum(sum_d, scratch)
        if row < rows and lane == 0:
            sums[row, 0] = total_dy
            sums[row, 1] = total_dy_d
            sums[row, 2] = total_d


@cuda.jit
def input_gradient(dy, x, mean, inv_std, num_groups, spatial, weight, sums, dx,
                   dweight_part, dbias_part):
    """Block (set, p): the set's coefficients from its channels' sums (sets, per_group, 3),
    then dx for slice p of the set; block (set, 0) writes the set's (set, per_group)
    dweight and dbias partials."""
    scratch = cuda.shared.array(SCRATCH, float64)
    _, n = x.shape
    per_group = n // spatial
    row, part = cuda.blockIdx.x, cuda.blockIdx.y
    tid, threads = cuda.threadIdx.x, cuda.blockDim.x
    first_channel = (row % num_groups) * per_group
    sum_g = float64(0.0)
    sum_g_d = float64(0.0)
    sum_d = float64(0.0)
    for k in range(tid, per_group, threads):
        w = float64(weight[first_channel + k]) if weight is not None else 1.0
        sum_g += w * sums[row, k, 0]
        sum_g_d += w * sums[row, k, 1]
        sum_d += sums[row, k, 2]
    sum_g = block_sum(sum_g, scratch)
    sum_g_d = block_sum(sum_g_d, scratch)
    correction = block_sum(sum_d, scratch) / n
    r = float64(inv_std[row])
    sum_g_xhat = r * (sum_g_d - correction * sum_g)
    if part == 0:
        for k in range(tid, per_group, threads):
            dbias_part[row, k] = sums[row, k, 0]
            dweight_part[row, k] = r * (sums[row, k, 1] - correction * sums[row, k, 0])
    offset = x.dtype.type(r * sum_g / n)
    xhat_scale = x.dtype.type(r * sum_g_xhat / n)
    correction_t = x.dtype.type(correction)
    r_t = x.dtype.type(r)
    mu = mean[row]
    start, stop = slice_bounds(n, cuda.gridDim.y, part)
    channel, position = split_index(start + tid, spatial)
    step_channel, step_position = split_index(threads, spatial)
    for j in range(start + tid, stop, threads):
        xhat = ((x[row, j] - mu) - correction_t) * r_t
        scale = r_t * weight[first_channel + channel] if weight is not None else r_t
        dx[row, j] = scale * dy[row, j] - offset - xhat * xhat_scale
        channel, position = step_index(channel, position, step_channel, step_position,
                                       spatial)


def _check_group_input(x, num_groups: int) -> None:
    helpers.check_array("x", x, 3)
    helpers.check_num_groups(num_groups, x.shape[1])


def group_norm_forward(x, num_groups: int, weight, bias, eps: float):
    """y = (x - mu)/sqrt(var + eps)·weight[c] + bias[c], one (mu, var) per
    (sample, group) of x (N, C, S), on the GPU.

    Returns (y, mean, inv_std, var); the statistics have shape (N, num_groups), var the
    biased variance.
    """
    _check_group_input(x, num_groups)
    batch, channels, spatial = x.shape
    dtype = np.dtype(x.dtype)
    helpers.check_vector("weight", weight, channels, dtype, "one per channel, x.shape[1]")
    helpers.check_vector("bias", bias, channels, dtype, "one per channel, x.shape[1]")
    eps = helpers.check_eps(eps)
    y = helpers.empty(x, x.shape)
    if batch * channels * spatial == 0:
        stats = (batch, num_groups)
        return (y, *(helpers.full(x, stats, np.nan) for _ in range(3)))
    mean, inv_std, var = (helpers.empty(x, (batch, num_groups)) for _ in range(3))
    sets, n = batch * num_groups, channels // num_groups * spatial
    launch_forward(x.reshape(sets, n), weight, bias, eps, y.reshape(sets, n),
                   mean.reshape(sets), inv_std.reshape(sets), var.reshape(sets), num_groups,
                   spatial)
    return y, mean, inv_std, var


def group_norm_backward(dy, x, mean, inv_std, num_groups: int, weight,
                        param_grads: bool = True):
    """dx = (r/n)·(n·g - sum(g) - xhat·sum(g·xhat)), g = dy·weight[c], per
    (sample, group); dweight[c] = sum over N, S of dy·xhat, dbias[c] = sum of dy.

    Returns (dx, dweight, dbias); dweight and dbias have shape (C,), or are None when
    param_grads is False.
    """
    _check_group_input(x, num_groups)
    batch, channels, spatial = x.shape
    dtype = np.dtype(x.dtype)
    helpers.check_like("dy", dy, x, "x")
    for name, stats in (("mean", mean), ("inv_std", inv_std)):
        helpers.check_array(name, stats, 2, dtype)
        helpers.check_shape(name, stats, (batch, num_groups), "(N, num_groups)")
    helpers.check_vector("weight", weight, channels, dtype, "one per channel, x.shape[1]")
    dx = helpers.empty(x, x.shape)
    if batch * channels * spatial == 0:
        zeros = (helpers.full(x, (channels,), 0.0), helpers.full(x, (channels,), 0.0))
        return (dx, *zeros) if param_grads else (dx, None, None)
    dweight = helpers.empty(x, (channels,))
    dbias = helpers.empty(x, (channels,))
    dweight_part = helpers.empty(x, (batch, channels), np.float64)
    dbias_part = helpers.empty(x, (batch, channels), np.float64)
    sets, per_group = batch * num_groups, channels // num_groups
    n = per_group * spatial
    block, stream = helpers.GEOMETRY.block, helpers.stream_for(x)
    sums = helpers.empty(x, (batch * channels, 3), np.float64)
    grid = helpers.blocks_for(batch * channels, block // WARP, most=helpers.row_grid_limit())
    channel_sums[grid, block, stream](dy.reshape(batch * channels, spatial),
                                      x.reshape(batch * channels, spatial),
                                      mean.reshape(sets), per_group, sums)
    slices = helpers.blocks_for(n, block, most=max(1, helpers.grid_blocks() // sets))
    input_gradient[(sets, slices), block, stream](
        dy.reshape(sets, n), x.reshape(sets, n), mean.reshape(sets), inv_std.reshape(sets),
        num_groups, spatial, weight, sums.reshape(sets, per_group, 3), dx.reshape(sets, n),
        dweight_part.reshape(sets, per_group), dbias_part.reshape(sets, per_group))
    helpers.launch_column_sums(dweight_part, dweight, dbias_part, dbias)
    return (dx, dweight, dbias) if param_grads else (dx, None, None)
