"""GroupNorm (and InstanceNorm, num_groups == C) of x (N, C, S) on the GPU.

Each (sample, group) set is C/num_groups channels times S positions: one contiguous run
of n elements in a C-contiguous x, so the kernels see x as (N·num_groups, n) rows.

Forward: LayerNorm's row kernels (kernels.cuda.layer_norm) with a per-channel affine,
    y = ((x - K) - centre)·r·weight[c] + bias[c] (shifted two-pass statistics)
    a warp per set for n ≤ WARP_ROW_MAX, else a block per set with the set in shared
    memory when it fits; traffic: read x, write y = 2·E·s (one launch).

Backward, a block per set, g = dy·weight[c], d = x - mean, c0 = mean(d) (the rounding of
the saved mean):
    per channel of the set: S_dy = sum(dy), S_dyd = sum(dy·d) (block reductions)
    sum(g) = Σ weight[c]·S_dy, sum(g·xhat) = r·(Σ weight[c]·S_dyd - c0·sum(g))
    (reduced from d = x - mean, never as sum(g·x) - sum(g)·mean, which cancels)
    dx = r·g - r·sum(g)/n - xhat·r·sum(g·xhat)/n, xhat = (d - c0)·r
    dweight[c] partial of sample i = r·(S_dyd - c0·S_dy), dbias[c] partial = S_dy, written
    to (N, C) float64 partials that `column_sums` adds over samples in order.
    traffic: read dy and x, write dx = 3·E·s while a set stays in L2 (two launches).
    One block reduction per channel: slow when S is tiny (a GroupNorm on (N, C) inputs).
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float64

from kernels.cuda import helpers
from kernels.cuda.helpers import BLOCK, SCRATCH, block_sum, split_index, step_index
from kernels.cuda.layer_norm import launch_forward


@cuda.jit
def backward_sets(dy, x, mean, inv_std, num_groups, spatial, weight, dx, dweight_part,
                  dbias_part):
    scratch = cuda.shared.array(SCRATCH, float64)
    sets, n = x.shape
    per_group = n // spatial
    zero = x.dtype.type(0.0)
    tid, threads = cuda.threadIdx.x, cuda.blockDim.x
    for row in range(cuda.blockIdx.x, sets, cuda.gridDim.x):
        sample = row // num_groups
        first_channel = (row % num_groups) * per_group
        mu = mean[row]
        sum_d = zero
        sum_g = float64(0.0)
        sum_g_d = float64(0.0)
        for k in range(per_group):
            channel = first_channel + k
            channel_dy = zero
            channel_dy_d = zero
            for j in range(k * spatial + tid, (k + 1) * spatial, threads):
                d = x[row, j] - mu
                sum_d += d
                channel_dy += dy[row, j]
                channel_dy_d += dy[row, j] * d
            total_dy = block_sum(channel_dy, scratch)
            total_dy_d = block_sum(channel_dy_d, scratch)
            w = float64(weight[channel]) if weight is not None else 1.0
            sum_g += w * total_dy
            sum_g_d += w * total_dy_d
            if tid == 0:  # thread 0 alone reads these back below
                dbias_part[sample, channel] = total_dy
                dweight_part[sample, channel] = total_dy_d
        r = float64(inv_std[row])
        correction = block_sum(sum_d, scratch) / n
        sum_g_xhat = r * (sum_g_d - correction * sum_g)
        offset = x.dtype.type(r * sum_g / n)
        xhat_scale = x.dtype.type(r * sum_g_xhat / n)
        correction_t = x.dtype.type(correction)
        r_t = x.dtype.type(r)
        if tid == 0:
            for k in range(per_group):
                channel = first_channel + k
                dweight_part[sample, channel] = r * (
                    dweight_part[sample, channel] - correction * dbias_part[sample, channel])
        channel, position = split_index(tid, spatial)
        step_channel, step_position = split_index(threads, spatial)
        for j in range(tid, n, threads):
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
    sets, n = batch * num_groups, channels // num_groups * spatial
    grid = helpers.blocks_for(sets, 1, most=helpers.row_grid_limit())
    backward_sets[grid, BLOCK, helpers.stream_for(x)](
        dy.reshape(sets, n), x.reshape(sets, n), mean.reshape(sets), inv_std.reshape(sets),
        num_groups, spatial, weight, dx.reshape(sets, n), dweight_part, dbias_part)
    helpers.launch_column_sums(dweight_part, dweight, dbias_part, dbias)
    return (dx, dweight, dbias) if param_grads else (dx, None, None)
