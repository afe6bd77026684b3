"""BatchNorm of x (N, C, S) on the GPU: one set per channel over N and S.

The statistics kernels run on a (P, C) grid: block (p, c) owns the p-th of P equal slices
of channel c's N·S elements (a slice is a run of contiguous S-segments, read coalesced),
and P is chosen so that P·C is about two blocks per SM. Their per-block partials are
merged once per channel, in block order, by one warp (deterministic, no atomics): lane l
merges partials l, l + 32, ..., then lane 0 merges the 32 lane results in lane order.
The merge writes per-channel coefficients that the streaming kernels read.

Training forward, three launches (statistics need every block before any output):
    1. `channel_moments`: block (p, c) sums d = x - K_c and d^2 (K_c = x[0, c, 0], so d is
       small and exact when |mean| >> std) and stores its slice's (count, mean(d), M2).
    2. `merge_moments`: a warp per channel merges its P partials with Chan's formula in
       float64 (n = nA + nB, δ = μB - μA, μ = μA + δ·nB/n, M2 = M2A + M2B + δ²·nA·nB/n),
       stores mean, inv_std and the biased var, and the coefficients (K_c, centre_c, r_c·
       weight_c, bias_c) of y = ((x - K_c) - centre_c)·r_c·weight_c + bias_c.
    3. `affine_channels`: y from the coefficients.
    traffic: read x twice, write y = 3·E·s.
Eval forward, two launches: `eval_coefficients` (K = running_mean_c, centre 0,
    a_c = weight_c/sqrt(running_var_c + eps), bias_c), then `affine_channels`; 2·E·s.
Backward, three launches (training and eval), d = x - centre_c, centre = the saved mean
(training) or running_mean (eval):
    1. `channel_gradient_sums`: per block sum(dy), sum(dy·d), sum(d).
    2. `merge_gradient_sums`: a warp per channel adds its partials in order, then
       training: c0 = sum(d)/n (the rounding of the saved mean), dbias = sum(dy),
           dweight = r·(sum(dy·d) - c0·sum(dy)),
           dx = (weight·r/n)·(n·dy - dbias - xhat·dweight), xhat = (d - c0)·r
       eval: r = 1/sqrt(running_var + eps), dx = dy·weight·r,
           dweight = r·sum(dy·d), dbias = sum(dy)
       and stores dweight, dbias and the coefficients of dx = dy·a - d·b - o.
    3. `input_gradient`: dx from the coefficients.
    traffic: read dy and x twice (once in eval), write dx: 5·E·s (4·E·s in eval).
The streaming loops issue UNROLL loads per thread before any store (numba marks no array
noalias, so a load after a store could not move above it).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64, int64

from kernels.cuda import helpers
from kernels.cuda.helpers import (
    SCRATCH,
    WARP,
    block_sum,
    chan_merge,
    device_function,
    split_index,
    step_index,
)

MAX_CHANNELS = 65535  # the grid's y dimension
UNROLL = 4  # elements per thread per trip of the streaming loops, loaded before any store
MERGE_WARPS = 4  # channels per block of the merge kernels


@device_function
def slice_bounds(channel_size, slices, index):
    """[start, stop) of the index-th of `slices` near-equal slices of channel_size elements."""
    return channel_size * index // slices, channel_size * (index + 1) // slices


@device_function
def unrolled_positions(i, s, step_i, step_s, spatial, rows, columns):
    """rows[u], columns[u] = the (sample, position) of a thread's u-th element of this trip
    (its elements are blockDim apart); returns the next trip's first (sample, position)."""
    for u in range(UNROLL):
        rows[u], columns[u] = i, s
        i, s = step_index(i, s, step_i, step_s, spatial)
    return i, s


@cuda.jit
def channel_moments(x, moments):
    """moments[c, p] = (count, mean(x - K_c), M2) of block p's slice of channel c."""
    scratch = cuda.shared.array(SCRATCH, float64)
    _, _, spatial = x.shape
    channel, part = cuda.blockIdx.y, cuda.blockIdx.x
    start, stop = slice_bounds(x.shape[0] * spatial, cuda.gridDim.x, part)
    shift = x[0, channel, 0]
    sum_d = x.dtype.type(0.0)
    sum_d2 = x.dtype.type(0.0)
    i, s = split_index(start + cuda.threadIdx.x, spatial)
    step_i, step_s = split_index(cuda.blockDim.x, spatial)
    for _ in range(start + cuda.threadIdx.x, stop, cuda.blockDim.x):
        d = x[i, channel, s] - shift
        sum_d += d
        sum_d2 += d * d
        i, s = step_index(i, s, step_i, step_s, spatial)
    total = block_sum(sum_d, scratch)
    squares = block_sum(sum_d2, scratch)
    if cuda.threadIdx.x == 0:
        count = float64(stop - start)
        centre = total / count if count > 0 else 0.0
        moments[channel, part, 0] = count
        moments[channel, part, 1] = centre
        moments[channel, part, 2] = max(squares - total * centre, 0.0)


@cuda.jit
def merge_moments(moments, x, weight, bias, eps, coefficients, mean, inv_std, var):
    """A warp per channel: Chan-merge its P moments (lane-strided, then lane 0 in lane
    order), store the statistics and the coefficients of `affine_channels`."""
    lanes = cuda.shared.array((MERGE_WARPS, WARP, 3), float64)
    lane, warp = cuda.threadIdx.x % WARP, cuda.threadIdx.x // WARP
    channel = cuda.blockIdx.x * MERGE_WARPS + warp
    channels, parts, _ = moments.shape
    if channel < channels:
        count, centre, m2 = float64(0.0), float64(0.0), float64(0.0)
        for p in range(lane, parts, WARP):
            count, centre, m2 = chan_merge(count, centre, m2, moments[channel, p, 0],
                                           moments[channel, p, 1], moments[channel, p, 2])
        lanes[warp, lane, 0] = count
        lanes[warp, lane, 1] = centre
        lanes[warp, lane, 2] = m2
    cuda.syncthreads()
    if channel < channels and lane == 0:
        count, centre, m2 = float64(0.0), float64(0.0), float64(0.0)
        for other in range(WARP):
            count, centre, m2 = chan_merge(count, centre, m2, lanes[warp, other, 0],
                                           lanes[warp, other, 1], lanes[warp, other, 2])
        variance = m2 / count
        r = 1.0 / math.sqrt(variance + eps)
        shift = float64(x[0, channel, 0])
        coefficients[channel, 0] = shift
        coefficients[channel, 1] = centre
        coefficients[channel, 2] = r * weight[channel] if weight is not None else r
        coefficients[channel, 3] = bias[channel] if bias is not None else 0.0
        mean[channel] = shift + centre
        inv_std[channel] = r
        var[channel] = variance


@cuda.jit
def eval_coefficients(running_mean, running_var, weight, bias, eps, coefficients):
    """coefficients of `affine_channels` for eval: y = (x - running_mean_c)·a_c + bias_c."""
    channel = cuda.grid(1)
    if channel < running_mean.shape[0]:
        scale = 1.0 / math.sqrt(float64(running_var[channel]) + eps)
        coefficients[channel, 0] = running_mean[channel]
        coefficients[channel, 1] = 0.0
        coefficients[channel, 2] = scale * weight[channel] if weight is not None else scale
        coefficients[channel, 3] = bias[channel] if bias is not None else 0.0


@cuda.jit
def affine_channels(x, coefficients, y):
    """y = ((x - K_c) - centre_c)·scale_c + offset_c for block p's slice of channel c."""
    values = cuda.local.array(UNROLL, x.dtype)
    rows = cuda.local.array(UNROLL, int64)
    columns = cuda.local.array(UNROLL, int64)
    _, _, spatial = x.shape
    channel, part = cuda.blockIdx.y, cuda.blockIdx.x
    shift = x.dtype.type(coefficients[channel, 0])
    centre = x.dtype.type(coefficients[channel, 1])
    scale = x.dtype.type(coefficients[channel, 2])
    offset = x.dtype.type(coefficients[channel, 3])
    start, stop = slice_bounds(x.shape[0] * spatial, cuda.gridDim.x, part)
    i, s = split_index(start + cuda.threadIdx.x, spatial)
    step_i, step_s = split_index(cuda.blockDim.x, spatial)
    threads = cuda.blockDim.x
    for t in range(start + cuda.threadIdx.x, stop, threads * UNROLL):
        i, s = unrolled_positions(i, s, step_i, step_s, spatial, rows, columns)
        for u in range(UNROLL):
            if t + u * threads < stop:
                values[u] = x[rows[u], channel, columns[u]]
        for u in range(UNROLL):
            if t + u * threads < stop:
                y[rows[u], channel, columns[u]] = ((values[u] - shift) - centre) * scale + offset


@cuda.jit
def channel_gradient_sums(dy, x, centre, sums):
    """sums[c, p] = (sum(dy), sum(dy·d), sum(d)), d = x - centre_c, over block p's slice."""
    scratch = cuda.shared.array(SCRATCH, float64)
    _, _, spatial = x.shape
    channel, part = cuda.blockIdx.y, cuda.blockIdx.x
    mu = centre[channel]
    sum_dy = x.dtype.type(0.0)
    sum_dy_d = x.dtype.type(0.0)
    sum_d = x.dtype.type(0.0)
    start, stop = slice_bounds(x.shape[0] * spatial, cuda.gridDim.x, part)
    i, s = split_index(start + cuda.threadIdx.x, spatial)
    step_i, step_s = split_index(cuda.blockDim.x, spatial)
    for _ in range(start + cuda.threadIdx.x, stop, cuda.blockDim.x):
        d = x[i, channel, s] - mu
        g = dy[i, channel, s]
        sum_dy += g
        sum_dy_d += g * d
        sum_d += d
        i, s = step_index(i, s, step_i, step_s, spatial)
    total_dy = block_sum(sum_dy, scratch)
    total_dy_d = block_sum(sum_dy_d, scratch)
    total_d = block_sum(sum_d, scratch)
    if cuda.threadIdx.x == 0:
        sums[channel, part, 0] = total_dy
        sums[channel, part, 1] = total_dy_d
        sums[channel, part, 2] = total_d


@cuda.jit
def merge_gradient_sums(sums, x, statistic, weight, eps, training, coefficients, dweight,
                        dbias):
    """A warp per channel: add its P partial sums (lane-strided, then lane 0 in lane order),
    store dweight, dbias and the coefficients of `input_gradient`. `statistic` is inv_std
    (training) or running_var (eval)."""
    lanes = cuda.shared.array((MERGE_WARPS, WARP, 3), float64)
    lane, warp = cuda.threadIdx.x % WARP, cuda.threadIdx.x // WARP
    channel = cuda.blockIdx.x * MERGE_WARPS + warp
    channels, parts, _ = sums.shape
    if channel < channels:
        for q in range(3):
            total = float64(0.0)
            for p in range(lane, parts, WARP):
                total += sums[channel, p, q]
            lanes[warp, lane, q] = total
    cuda.syncthreads()
    if channel < channels and lane == 0:
        sum_dy, sum_dy_d, sum_d = float64(0.0), float64(0.0), float64(0.0)
        for other in range(WARP):
            sum_dy += lanes[warp, other, 0]
            sum_dy_d += lanes[warp, other, 1]
            sum_d += lanes[warp, other, 2]
        n = float64(x.shape[0] * x.shape[2])
        if training:
            r = float64(statistic[channel])
            correction = sum_d / n
            channel_dweight = r * (sum_dy_d - correction * sum_dy)
        else:
            r = 1.0 / math.sqrt(float64(statistic[channel]) + eps)
            correction = 0.0
            channel_dweight = r * sum_dy_d
        dy_scale = r * weight[channel] if weight is not None else r
        x_scale = dy_scale * r * channel_dweight / n if training else 0.0
        coefficients[channel, 0] = dy_scale
        coefficients[channel, 1] = x_scale
        coefficients[channel, 2] = dy_scale * sum_dy / n - x_scale * correction if training \
            else 0.0
        dweight[channel] = channel_dweight
        dbias[channel] = sum_dy


@cuda.jit
def input_gradient(dy, x, centre, coefficients, dx):
    """dx = dy·a_c - (x - centre_c)·b_c - o_c for block p's slice of channel c."""
    grads = cuda.local.array(UNROLL, x.dtype)
    values = cuda.local.array(UNROLL, x.dtype)
    rows = cuda.local.array(UNROLL, int64)
    columns = cuda.local.array(UNROLL, int64)
    _, _, spatial = x.shape
    channel, part = cuda.blockIdx.y, cuda.blockIdx.x
    dy_scale = x.dtype.type(coefficients[channel, 0])
    x_scale = x.dtype.type(coefficients[channel, 1])
    offset = x.dtype.type(coefficients[channel, 2])
    mu = centre[channel]
    start, stop = slice_bounds(x.shape[0] * spatial, cuda.gridDim.x, part)
    i, s = split_index(start + cuda.threadIdx.x, spatial)
    step_i, step_s = split_index(cuda.blockDim.x, spatial)
    threads = cuda.blockDim.x
    for t in range(start + cuda.threadIdx.x, stop, threads * UNROLL):
        i, s = unrolled_positions(i, s, step_i, step_s, spatial, rows, columns)
        for u in range(UNROLL):
            if t + u * threads < stop:
                grads[u] = dy[rows[u], channel, columns[u]]
                values[u] = x[rows[u], channel, columns[u]]
        for u in range(UNROLL):
            if t + u * threads < stop:
                dx[rows[u], channel, columns[u]] = grads[u] * dy_scale - (values[u] - mu) \
                    * x_scale - offset


def _grid(x) -> tuple[int, int]:
    """(P, C): P slices per channel, about grid_blocks() blocks in all, ≥ block elements each."""
    batch, channels, spatial = x.shape
    per_channel = helpers.blocks_for(helpers.grid_blocks(), channels)
    return helpers.blocks_for(batch * spatial, helpers.GEOMETRY.block, most=per_channel), \
        channels


def _merge_grid(channels: int) -> int:
    return helpers.blocks_for(channels, MERGE_WARPS, most=1 << 30)


def _check_channel_input(x, weight) -> None:
    helpers.check_array("x", x, 3)
    if x.shape[1] > MAX_CHANNELS:
        raise ValueError(f"x may have at most {MAX_CHANNELS} channels on the GPU, got "
                         f"{x.shape[1]}")
    helpers.check_vector("weight", weight, x.shape[1], np.dtype(x.dtype),
                         "one per channel, x.shape[1]")


def _check_running_stats(x, running_mean, running_var) -> None:
    why = "one per channel, x.shape[1]"
    for name, stats in (("running_mean", running_mean), ("running_var", running_var)):
        helpers.check_vector(name, stats, x.shape[1], np.dtype(x.dtype), why, optional=False)


def batch_norm_forward_train(x, weight, bias, eps: float):
    """y = (x - mu_c)/sqrt(var_c + eps)·weight_c + bias_c, statistics per channel over
    N and S of x (N, C, S), on the GPU.

    Returns (y, mean, inv_std, var), each statistic of shape (C,) and x's dtype; var is
    the biased variance.
    """
    _check_channel_input(x, weight)
    batch, channels, spatial = x.shape
    helpers.check_vector("bias", bias, channels, np.dtype(x.dtype), "one per channel, x.shape[1]")
    eps = helpers.check_eps(eps)
    y = helpers.empty(x, x.shape)
    if batch * channels * spatial == 0:
        return (y, *(helpers.full(x, (channels,), np.nan) for _ in range(3)))
    mean, inv_std, var = (helpers.empty(x, (channels,)) for _ in range(3))
    grid, block = _grid(x), helpers.GEOMETRY.block
    moments = helpers.empty(x, (channels, grid[0], 3), np.float64)
    coefficients = helpers.empty(x, (channels, 4), np.float64)
    stream = helpers.stream_for(x)
    channel_moments[grid, block, stream](x, moments)
    merge_moments[_merge_grid(channels), MERGE_WARPS * WARP, stream](
        moments, x, weight, bias, eps, coefficients, mean, inv_std, var)
    affine_channels[grid, block, stream](x, coefficients, y)
    return y, mean, inv_std, var


def batch_norm_forward_eval(x, running_mean, running_var, weight, bias, eps: float):
    """y = (x - running_mean_c)·a_c + bias_c, a_c = weight_c/sqrt(running_var_c + eps)."""
    _check_channel_input(x, weight)
    _check_running_stats(x, running_mean, running_var)
    helpers.check_vector("bias", bias, x.shape[1], np.dtype(x.dtype),
                         "one per channel, x.shape[1]")
    eps = helpers.check_eps(eps)
    y = helpers.empty(x, x.shape)
    if math.prod(x.shape) == 0:
        return y
    channels = x.shape[1]
    coefficients = helpers.empty(x, (channels, 4), np.float64)
    stream = helpers.stream_for(x)
    eval_coefficients[helpers.blocks_for(channels, WARP, most=1 << 30), WARP, stream](
        running_mean, running_var, weight, bias, eps, coefficients)
    affine_channels[_grid(x), helpers.GEOMETRY.block, stream](x, coefficients, y)
    return y


def _backward(dy, x, centre, statistic, weight, eps: float, training: bool):
    channels = x.shape[1]
    dx = helpers.empty(x, x.shape)
    if math.prod(x.shape) == 0:
        return dx, helpers.full(x, (channels,), 0.0), helpers.full(x, (channels,), 0.0)
    dweight, dbias = helpers.empty(x, (channels,)), helpers.empty(x, (channels,))
    grid, block = _grid(x), helpers.GEOMETRY.block
    sums = helpers.empty(x, (channels, grid[0], 3), np.float64)
    coefficients = helpers.empty(x, (channels, 3), np.float64)
    stream = helpers.stream_for(x)
    channel_gradient_sums[grid, block, stream](dy, x, centre, sums)
    merge_gradient_sums[_merge_grid(channels), MERGE_WARPS * WARP, stream](
        sums, x, statistic, weight, eps, training, coefficients, dweight, dbias)
    input_gradient[grid, block, stream](dy, x, centre, coefficients, dx)
    return dx, dweight, dbias


def batch_norm_backward(dy, x, mean, inv_std, weight, param_grads: bool = True):
    """Training-mode backward: dx = (weight·r/n)·(n·dy - sum(dy) - xhat·sum(dy·xhat)),
    dweight = sum(dy·xhat), dbias = sum(dy), per channel over N and S.

    Returns (dx, dweight, dbias); dweight and dbias have shape (C,).
    """
    _check_channel_input(x, weight)
    channels = x.shape[1]
    dtype = np.dtype(x.dtype)
    helpers.check_like("dy", dy, x, "x")
    for name, stats in (("mean", mean), ("inv_std", inv_std)):
        helpers.check_vector(name, stats, channels, dtype, "one per channel, x.shape[1]",
                             optional=False)
    return _masked(_backward(dy, x, mean, inv_std, weight, 0.0, True), param_grads)


def batch_norm_backward_eval(dy, x, running_mean, running_var, weight, eps: float,
                             param_grads: bool = True):
    """Eval-mode backward of y = a_c·x + b_c: dx = dy·a_c,
    dweight = sum(dy·(x - running_mean))/sqrt(running_var + eps), dbias = sum(dy)."""
    _check_channel_input(x, weight)
    helpers.check_like("dy", dy, x, "x")
    _check_running_stats(x, running_mean, running_var)
    eps = helpers.check_eps(eps)
    return _masked(_backward(dy, x, running_mean, running_var, weight, eps, False),
                   param_grads)


def _masked(grads: tuple, param_grads: bool) -> tuple:
    """(dx, None, None) when the parameter gradients are not wanted: the per-channel sums
    are needed for dx in training, and are one small pass in eval."""
    return grads if param_grads else (grads[0], None, None)
