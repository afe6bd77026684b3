"""BatchNorm of x (N, C, S): one set per channel over N and S; forward (training
and eval) and backward (training and eval).

Training forward: two passes over memory.
    statistics: each thread chunk of samples sums, per channel, d = x - K_c and
    d^2 in float64 (K_c = x[0, c, 0], so d is small and exact when |mean| >> std;
    with float64 sums the shifted variance sum(d^2)/n - mean(d)^2 loses about
    (mean - K_c)^2/var · 1e-16, nothing for float32 data); one partial row per
    chunk, merged in order.
    apply: y = ((x - K_c) - centre_c)·r_c·weight_c + bias_c, mean = K_c + centre_c.
    traffic: read x twice, write y = 3·E·s.
Eval forward: y = (x - running_mean_c)·a_c + bias_c, a_c = weight_c/sqrt(running_var_c + eps).
    traffic 2·E·s.

Training backward, per channel (n = N·S, xhat = (x - mu)·r):
    dbias = sum(dy), dweight = sum(dy·xhat) (partial rows per chunk, merged);
    dx = (weight·r/n)·(n·dy - dbias - xhat·dweight)
    The first pass also sums x - mu to measure the rounding of the saved mean
    (c = 0 for an exact mean) and centres with mu + c, as in LayerNorm.
    traffic: read dy and x twice, write dx = 5·E·s.
Eval backward: dx = dy·a_c, dweight = sum(dy·(x - running_mean))/sqrt(running_var + eps),
    dbias = sum(dy); the sums and dx are separate passes: 4·E·s (3·E·s if fused).
Parallel drivers split the samples (N) into one chunk per thread.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu import validation
from kernels.cpu.stats import (
    chunk_bounds,
    gradient_sums,
    jit,
    parallel_jit,
    shifted_sums,
    sum_partials,
    use_parallel,
)


@jit
def _shifted_sums(x, shift, sum_d_part, sum_d2_part, start, stop):
    for i in range(start, stop):
        for c in range(x.shape[1]):
            total, squares = shifted_sums(x[i, c], shift[c])
            sum_d_part[c] += total
            sum_d2_part[c] += squares


@parallel_jit
def _shifted_sums_parallel(x, shift, sum_d_part, sum_d2_part):
    num_chunks = sum_d_part.shape[0]
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _shifted_sums(x, shift, sum_d_part[chunk], sum_d2_part[chunk], start, stop)


@jit
def _affine(x, shift, scale, offset, y, start, stop):
    """y[i, c] = (x[i, c] - shift[c])·scale[c] + offset[c] for samples [start, stop)."""
    for i in range(start, stop):
        for c in range(x.shape[1]):
            plane, out = x[i, c], y[i, c]
            k, a, b = shift[c], scale[c], offset[c]
            for s in range(plane.size):
                out[s] = (plane[s] - k) * a + b


@parallel_jit
def _affine_parallel(x, shift, scale, offset, y, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _affine(x, shift, scale, offset, y, start, stop)


@jit
def _gradient_sums(dy, x, centre, sum_dy_part, sum_dy_d_part, sum_d_part, start, stop):
    """Per channel sums of dy, dy·(x - centre) and x - centre over samples [start, stop)."""
    for i in range(start, stop):
        for c in range(x.shape[1]):
            total_d, total_dy, total_dy_d = gradient_sums(x[i, c], dy[i, c], centre[c])
            sum_dy_part[c] += total_dy
            sum_dy_d_part[c] += total_dy_d
            sum_d_part[c] += total_d


@parallel_jit
def _gradient_sums_parallel(dy, x, centre, sum_dy_part, sum_dy_d_part, sum_d_part):
    num_chunks = sum_dy_part.shape[0]
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _gradient_sums(
            dy, x, centre, sum_dy_part[chunk], sum_dy_d_part[chunk], sum_d_part[chunk], start, stop
        )


@jit
def _input_gradient(dy, x, centre, dy_scale, x_scale, offset, dx, start, stop):
    """dx[i, c] = dy·dy_scale[c] - (x - centre[c])·x_scale[c] - offset[c]."""
    for i in range(start, stop):
        for c in range(x.shape[1]):
            plane, grad, out = x[i, c], dy[i, c], dx[i, c]
            mu, a, k, b = centre[c], dy_scale[c], x_scale[c], offset[c]
            for s in range(plane.size):
                out[s] = grad[s] * a - (plane[s] - mu) * k - b


@parallel_jit
def _input_gradient_parallel(dy, x, centre, dy_scale, x_scale, offset, dx, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _input_gradient(dy, x, centre, dy_scale, x_scale, offset, dx, start, stop)


def _num_chunks(x: np.ndarray) -> int:
    return min(numba.get_num_threads(), x.shape[0]) if use_parallel(x.size) else 1


def _run_affine(x, shift, scale, offset, y) -> None:
    num_chunks = _num_chunks(x)
    if num_chunks > 1:
        _affine_parallel(x, shift, scale, offset, y, num_chunks)
    else:
        _affine(x, shift, scale, offset, y, 0, x.shape[0])


def _run_gradient_sums(dy, x, centre) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel float64 (sum(dy), sum(dy·(x - centre)), sum(x - centre))."""
    channels = x.shape[1]
    num_chunks = _num_chunks(x)
    parts = np.zeros((3, num_chunks, channels))
    if num_chunks > 1:
        _gradient_sums_parallel(dy, x, centre, parts[0], parts[1], parts[2])
    else:
        _gradient_sums(dy, x, centre, parts[0, 0], parts[1, 0], parts[2, 0], 0, x.shape[0])
    sums = np.empty((3, channels))
    for k in range(3):
        sum_partials(parts[k], sums[k])
    return sums[0], sums[1], sums[2]


def _check_channel_input(x: np.ndarray, weight: np.ndarray | None) -> None:
    validation.check_array("x", x, 3)
    validation.check_vector("weight", weight, x.shape[1], x.dtype, "one per channel, x.shape[1]")


def _check_running_stats(x: np.ndarray, running_mean: np.ndarray, running_var: np.ndarray) -> None:
    why = "one per channel, x.shape[1]"
    validation.check_vector("running_mean", running_mean, x.shape[1], x.dtype, why)
    validation.check_vector("running_var", running_var, x.shape[1], x.dtype, why)


def batch_norm_forward_train(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """y = (x - mu_c)/sqrt(var_c + eps)·weight_c + bias_c, statistics per channel
    over N and S of x (N, C, S).

    Returns (y, mean, inv_std, var), each statistic of shape (C,) and x's dtype;
    var is the biased variance.
    """
    _check_channel_input(x, weight)
    batch, channels, spatial = x.shape
    validation.check_vector("bias", bias, channels, x.dtype, "one per channel, x.shape[1]")
    validation.check_eps(eps)
    y = np.empty_like(x)
    if x.size == 0:
        stats = np.full(channels, np.nan, x.dtype)
        return y, stats, stats.copy(), stats.copy()
    n = batch * spatial
    shift = x[0, :, 0].copy()
    num_chunks = _num_chunks(x)
    parts = np.zeros((2, num_chunks, channels))
    if num_chunks > 1:
        _shifted_sums_parallel(x, shift, parts[0], parts[1])
    else:
        _shifted_sums(x, shift, parts[0, 0], parts[1, 0], 0, batch)
    sum_d, sum_d2 = parts.sum(axis=1)
    centre = sum_d / n
    var = np.maximum(sum_d2 / n - centre * centre, 0.0)
    inv_std = 1.0 / np.sqrt(var + eps)
    scale = inv_std if weight is None else inv_std * weight
    offset = -centre * scale if bias is None else bias - centre * scale
    _run_affine(x, shift, scale.astype(x.dtype), offset.astype(x.dtype), y)
    return y, (shift + centre).astype(x.dtype), inv_std.astype(x.dtype), var.astype(x.dtype)


def batch_norm_forward_eval(
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    eps: float,
) -> np.ndarray:
    """y = (x - running_mean_c)·a_c + bias_c, a_c = weight_c/sqrt(running_var_c + eps)."""
    _check_channel_input(x, weight)
    _check_running_stats(x, running_mean, running_var)
    validation.check_vector("bias", bias, x.shape[1], x.dtype, "one per channel, x.shape[1]")
    validation.check_eps(eps)
    y = np.empty_like(x)
    if x.size == 0:
        return y
    scale = 1.0 / np.sqrt(running_var + eps)
    if weight is not None:
        scale = scale * weight
    offset = np.zeros_like(scale) if bias is None else bias
    _run_affine(x, running_mean, scale.astype(x.dtype), offset.astype(x.dtype), y)
    return y


def batch_norm_backward(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training-mode backward: dx = (weight·r/n)·(n·dy - sum(dy) - xhat·sum(dy·xhat)),
    dweight = sum(dy·xhat), dbias = sum(dy), per channel over N and S.

    Returns (dx, dweight, dbias); dweight and dbias have shape (C,).
    """
    _check_channel_input(x, weight)
    batch, channels, spatial = x.shape
    validation.check_like("dy", dy, x, "x")
    validation.check_vector("mean", mean, channels, x.dtype, "one per channel, x.shape[1]")
    validation.check_vector("inv_std", inv_std, channels, x.dtype, "one per channel, x.shape[1]")
    dx = np.empty_like(x)
    if x.size == 0:
        return dx, np.zeros(channels, x.dtype), np.zeros(channels, x.dtype)
    n = batch * spatial
    sum_dy, sum_dy_d, sum_d = _run_gradient_sums(dy, x, mean)
    correction = sum_d / n
    inv_std64 = inv_std.astype(np.float64)
    dweight = inv_std64 * (sum_dy_d - correction * sum_dy)
    dy_scale = inv_std64 if weight is None else inv_std64 * weight
    x_scale = dy_scale * inv_std64 * dweight / n
    offset = dy_scale * sum_dy / n - x_scale * correction
    num_chunks = _num_chunks(x)
    args = (dy, x, mean, dy_scale.astype(x.dtype), x_scale.astype(x.dtype))
    if num_chunks > 1:
        _input_gradient_parallel(*args, offset.astype(x.dtype), dx, num_chunks)
    else:
        _input_gradient(*args, offset.astype(x.dtype), dx, 0, batch)
    return dx, dweight.astype(x.dtype), sum_dy.astype(x.dtype)


def batch_norm_backward_eval(
    dy: np.ndarray,
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    weight: np.ndarray | None,
    eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eval-mode backward of y = a_c·x + b_c: dx = dy·a_c,
    dweight = sum(dy·(x - running_mean))/sqrt(running_var + eps), dbias = sum(dy)."""
    _check_channel_input(x, weight)
    channels = x.shape[1]
    validation.check_like("dy", dy, x, "x")
    _check_running_stats(x, running_mean, running_var)
    validation.check_eps(eps)
    dx = np.empty_like(x)
    if x.size == 0:
        return dx, np.zeros(channels, x.dtype), np.zeros(channels, x.dtype)
    inv_std = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    sum_dy, sum_dy_d, _ = _run_gradient_sums(dy, x, running_mean)
    scale = inv_std if weight is None else inv_std * weight
    zeros = np.zeros(channels, x.dtype)
    _run_affine(dy, zeros, scale.astype(x.dtype), zeros, dx)
    return dx, (sum_dy_d * inv_std).astype(x.dtype), sum_dy.astype(x.dtype)
