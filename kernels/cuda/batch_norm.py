"""BatchNorm of x (N, C, S) on the GPU: one set per channel over N and S.

Every kernel runs on a (P, C) grid: block (p, c) owns the p-th of P equal slices of
channel c's N·S elements (a slice is a run of contiguous S-segments, read coalesced), and
P is chosen so that P·C is about two blocks per SM. Cross-block sums go through per-block
partials that the next launch merges in block order (deterministic, no atomics).

Training forward, two launches (statistics need every block before any output):
    1. `channel_moments`: block (p, c) sums d = x - K_c and d^2 (K_c = x[0, c, 0], so d is
       small and exact when |mean| >> std) and stores its slice's (count, mean(d), M2).
    2. `normalize`: every block merges channel c's P partials with Chan's formula in
       float64 (n = nA + nB, δ = μB - μA, μ = μA + δ·nB/n, M2 = M2A + M2B + δ²·nA·nB/n),
       then y = ((x - K_c) - centre_c)·r_c·weight_c + bias_c; block (0, c) stores mean,
       inv_std and the biased var.
    traffic: read x twice, write y = 3·E·s.
Eval forward, one launch: y = (x - running_mean_c)·a_c + bias_c,
    a_c = weight_c/sqrt(running_var_c + eps); traffic 2·E·s.
Backward, two launches (training and eval), d = x - centre_c, centre = the saved mean
(training) or running_mean (eval):
    1. `channel_gradient_sums`: per block sum(dy), sum(dy·d), sum(d).
    2. `input_gradient`: every block merges channel c's partials in order, then
       training: c0 = sum(d)/n (the rounding of the saved mean), dbias = sum(dy),
           dweight = r·(sum(dy·d) - c0·sum(dy)),
           dx = (weight·r/n)·(n·dy - dbias - xhat·dweight), xhat = (d - c0)·r
       eval: r = 1/sqrt(running_var + eps), dx = dy·weight·r,
           dweight = r·sum(dy·d), dbias = sum(dy)
    traffic: read dy and x twice (once in eval), write dx: 5·E·s (4·E·s in eval).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from kernels.cuda import helpers
from kernels.cuda.helpers import (
    BLOCK,
    SCRATCH,
    block_sum,
    chan_merge,
    device_function,
    split_index,
    step_index,
)

MAX_CHANNELS = 65535  # the grid's y dimension


@device_function
def slice_bounds(channel_size, slices, index):
    """[start, stop) of the index-th of `slices` near-equal slices of channel_size elements."""
    return channel_size * index // slices, channel_size * (index + 1) // slices


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
def normalize(x, moments, weight, bias, eps, y, mean, inv_std, var):
    """Merge channel c's moments (Chan, in order), then write y for block p's slice."""
    merged = cuda.shared.array(3, float64)
    _, _, spatial = x.shape
    channel, part = cuda.blockIdx.y, cuda.blockIdx.x
    shift = x[0, channel, 0]
    if cuda.threadIdx.x == 0:
        count, centre, m2 = float64(0.0), float64(0.0), float64(0.0)
        for p in range(moments.shape[1]):
            count, centre, m2 = chan_merge(count, centre, m2, moments[channel, p, 0],
                                           moments[channel, p, 1], moments[channel, p, 2])
        variance = m2 / count
        r = 1.0 / math.sqrt(variance + eps)
        merged[0] = centre
        merged[1] = r * weight[channel] if weight is not None else r
        merged[2] = bias[channel] if bias is not None else 0.0
        if part == 0:
            mean[channel] = shift + centre
            inv_std[channel] = r
            var[channel] = variance
    cuda.syncthreads()
    centre = x.dtype.type(merged[0])
    scale = x.dtype.type(merged[1])
    offset = x.dtype.type(merged[2])
    start, stop = slice_bounds(x.shape[0] * spatial, cuda.gridDim.x, part)
    i, s = split_index(start + cuda.threadIdx.x, spatial)
    step_i, step_s = split_index(cuda.blockDim.x, spatial)
    for _ in range(start + cuda.threadIdx.x, stop, cuda.blockDim.x):
        y[i, channel, s] = ((x[i, channel, s] - shift) - centre) * scale + offset
        i, s = step_index(i, s, step_i, step_s, spatial)


@cuda.jit
def normalize_eval(x, running_mean, running_var, weight, bias, eps, y):
    """y = (x - running_mean_c)·a_c + bias_c for block p's slice of channel c."""
    _, _, spatial = x.shape
    channel, part = cuda.blockIdx.y, cuda.blockIdx.x
    scale = 1.0 / math.sqrt(float64(running_var[channel]) + eps)
    if weight is not None:
        scale *= weight[channel]
    centre = running_mean[channel]
    scale_t = x.dtype.type(scale)
    offset = bias[channel] if bias is not None else x.dtype.type(0.0)
    start, stop = slice_bounds(x.shape[0] * spatial, cuda.gridDim.x, part)
    i, s = split_index(start + cuda.threadIdx.x, spatial)
    step_i, step_s = split_index(cuda.blockDim.x, spatial)
    for _ in range(start + cuda.threadIdx.x, stop, cuda.blockDim.x):
        y[i, channel, s] = (x[i, channel, s] - centre) * scale_t + offset
        i, s = step_index(i, s, step_i, step_s, spatial)


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
def input_gradient(dy, x, centre, statistic, weight, eps, training, sums, dx, dweight, dbias):
    """Merge channel c's sums in order, then write dx for block p's slice. `statistic` is
    inv_std (training) or running_var (eval)."""
    coefficients = cuda.shared.array(3, float64)
    _, _, spatial = x.shape
    channel, part = cuda.blockIdx.y, cuda.blockIdx.x
    if cuda.threadIdx.x == 0:
        sum_dy, sum_dy_d, sum_d = float64(0.0), float64(0.0), float64(0.0)
        for p in range(sums.shape[1]):
            sum_dy += sums[channel, p, 0]
            sum_dy_d += sums[channel, p, 1]
            sum_d += sums[channel, p, 2]
        n = float64(x.shape[0] * spatial)
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
        coefficients[0] = dy_scale
        coefficients[1] = x_scale
        coefficients[2] = dy_scale * sum_dy / n - x_scale * correction if training else 0.0
        if part == 0:
            dweight[channel] = channel_dweight
            dbias[channel] = sum_dy
    cuda.syncthreads()
    dy_scale = x.dtype.type(coefficients[0])
    x_scale = x.dtype.type(coefficients[1])
    offset = x.dtype.type(coefficients[2])
    mu = centre[channel]
    start, stop = slice_bounds(x.shape[0] * spatial, cuda.gridDim.x, part)
    i, s = split_index(start + cuda.threadIdx.x, spatial)
    step_i, step_s = split_index(cuda.blockDim.x, spatial)
    for _ in range(start + cuda.threadIdx.x, stop, cuda.blockDim.x):
        dx[i, channel, s] = dy[i, channel, s] * dy_scale - (x[i, channel, s] - mu) * x_scale \
            - offset
        i, s = step_index(i, s, step_i, step_s, spatial)


def _grid(x) -> tuple[int, int]:
    """(P, C): P slices per channel, about grid_blocks() blocks in all, ≥ BLOCK elements each."""
    batch, channels, spatial = x.shape
    per_channel = helpers.blocks_for(helpers.grid_blocks(), channels)
    return helpers.blocks_for(batch * spatial, BLOCK, most=per_channel), channels


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
    grid = _grid(x)
    moments = helpers.empty(x, (channels, grid[0], 3), np.float64)
    stream = helpers.stream_for(x)
    channel_moments[grid, BLOCK, stream](x, moments)
    normalize[grid, BLOCK, stream](x, moments, weight, bias, eps, y, mean, inv_std, var)
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
    normalize_eval[_grid(x), BLOCK, helpers.stream_for(x)](x, running_mean, running_var, weight,
                                                           bias, eps, y)
    return y


def _backward(dy, x, centre, statistic, weight, eps: float, training: bool):
    channels = x.shape[1]
    dx = helpers.empty(x, x.shape)
    if math.prod(x.shape) == 0:
        return dx, helpers.full(x, (channels,), 0.0), helpers.full(x, (channels,), 0.0)
    dweight, dbias = helpers.empty(x, (channels,)), helpers.empty(x, (channels,))
    grid = _grid(x)
    sums = helpers.empty(x, (channels, grid[0], 3), np.float64)
    stream = helpers.stream_for(x)
    channel_gradient_sums[grid, BLOCK, stream](dy, x, centre, sums)
    input_gradient[grid, BLOCK, stream](dy, x, centre, statistic, weight, float(eps), training,
                                        sums, dx, dweight, dbias)
    return dx, dweight, dbias


def batch_norm_backward(dy, x, mean, inv_std, weight, param_grads: bool = True):
    """Training-mode backward: dx = (weight·r/n)·(n·dy - sum(dy) - xhat·sum(dy·xhat)),
    dweight = sum(dy·xhat), dbias = sum(dy), per channel over N and S (the sums are
    needed for dx either way; param_grads False returns None for dweight and dbias).

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
    return grads if param_grads else (grads[0], None, None)
