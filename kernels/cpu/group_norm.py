"""GroupNorm (and InstanceNorm) of x (N, C, S), forward and backward.

Each (sample, group) set is C/num_groups channels times S positions, which is one
contiguous run of memory in a C-contiguous x; the kernels see x as
(N·num_groups, n) rows, n = (C/num_groups)·S, with a per-channel affine.
InstanceNorm is this kernel with num_groups == C: with one channel per group the
channel loop has one trip and the kernel is the plane loop a dedicated
InstanceNorm kernel would be (the bench reports its GB/s against copy bandwidth).

Forward, per set: mu, var from `shifted_moments`, r = 1/sqrt(var + eps),
    y = ((x - K) - centre)·r·weight[c] + bias[c]
    var is returned too: InstanceNorm's running_var is built from it.
    traffic: read x, write y = 2·E·s while a set fits in L2.

Backward, per set, g = dy·weight[c]:
    dx = (r/n)·(n·g - sum(g) - xhat·sum(g·xhat))
    sum(g·xhat) is reduced as r·sum(g·(x - mu)), never as (sum(g·x) - sum(g)·mu),
    which cancels when |mu| >> std; as in LayerNorm the first pass also measures
    the rounding of the saved mean, c = mean(x - mu), and centres with mu + c.
    dweight[c] = sum over N, S of dy·xhat, dbias[c] = sum of dy: one float64
    partial row per thread chunk, merged in order; skipped when param_grads is
    False (InstanceNorm's default affine=False). A missing weight or bias compiles
    its own variant: no arrays of ones or zeros.
    traffic: read dy and x, write dx = 3·E·s.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu import buffers
from kernels.cpu.stats import (
    chunk_bounds,
    gradient_sums,
    inv_sqrt,
    jit,
    merge_partials,
    new_partials,
    parallel_jit,
    product_minus,
    shifted_moments,
    use_parallel,
)
from kernels.validation import HOST as check
from kernels.validation import check_eps, check_num_groups


@jit
def _forward_sets(x, num_groups, spatial, weight, bias, eps, y, mean, inv_std, var, start,
                  stop):
    per_group = x.shape[1] // spatial
    for i in range(start, stop):
        row, out = x[i], y[i]
        shift, centre, variance = shifted_moments(row)
        r = inv_sqrt(variance, eps)
        shift64 = np.float64(shift)
        first_channel = (i % num_groups) * per_group
        for k in range(per_group):
            scale = x.dtype.type(1) if weight is None else weight[first_channel + k]
            offset = x.dtype.type(0) if bias is None else bias[first_channel + k]
            plane = slice(k * spatial, (k + 1) * spatial)
            plane_x, plane_y = row[plane], out[plane]
            for s in range(spatial):  # from 0: lets LLVM drop negative-index checks
                # widened before subtracting: see kernels/cpu/stats.py
                xhat = x.dtype.type(((np.float64(plane_x[s]) - shift64) - centre) * r)
                plane_y[s] = xhat * scale + offset
        mean[i] = shift + centre
        inv_std[i] = r
        var[i] = variance


@parallel_jit
def _forward_parallel(x, num_groups, spatial, weight, bias, eps, y, mean, inv_std, var,
                      num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _forward_sets(x, num_groups, spatial, weight, bias, eps, y, mean, inv_std, var, start,
                      stop)


@jit
def _backward_sets(
    dy, x, mean, inv_std, num_groups, spatial, weight, dx, dweight_part, dbias_part, start, stop
):
    n = x.shape[1]
    per_group = n // spatial
    channel_sum_dy = np.empty(per_group)
    channel_sum_dy_d = np.empty(per_group)
    for i in range(start, stop):
        x_row, dy_row, dx_row = x[i], dy[i], dx[i]
        mu = mean[i]
        first_channel = (i % num_groups) * per_group
        sum_d = 0.0
        sum_g = 0.0
        sum_g_d = 0.0
        for k in range(per_group):
            plane = slice(k * spatial, (k + 1) * spatial)
            plane_sum_d, sum_dy, sum_dy_d = gradient_sums(x_row[plane], dy_row[plane], mu)
            sum_d += plane_sum_d
            channel_sum_dy[k] = sum_dy
            channel_sum_dy_d[k] = sum_dy_d
            scale = 1.0 if weight is None else np.float64(weight[first_channel + k])
            sum_g += scale * sum_dy
            sum_g_d += scale * sum_dy_d
        r = inv_std[i]
        correction = sum_d / n
        sum_g_xhat = r * (sum_g_d - correction * sum_g)
        # dx = r·(g - mean(g)) - xhat·c with the per-set constants folded once; mean(g) is
        # subtracted before scaling so that a one-element set gets dx = 0 exactly
        mean_g = x.dtype.type(sum_g / n)
        c = x.dtype.type(r * sum_g_xhat / n)
        r_t = x.dtype.type(r)
        mu64 = np.float64(mu)
        for k in range(per_group):
            channel = first_channel + k
            if dweight_part is not None:
                dweight_part[channel] += r * (channel_sum_dy_d[k]
                                              - correction * channel_sum_dy[k])
                dbias_part[channel] += channel_sum_dy[k]
            plane = slice(k * spatial, (k + 1) * spatial)
            plane_x, plane_dy, plane_dx = x_row[plane], dy_row[plane], dx_row[plane]
            for s in range(spatial):  # widened before subtracting: see kernels/cpu/stats.py
                xhat = x.dtype.type(((np.float64(plane_x[s]) - mu64) - correction) * r)
                # g - mean(g) rounded as one operation: exact 0 for a one-element set
                centred_g = (plane_dy[s] - mean_g if weight is None
                             else product_minus(plane_dy[s], weight[channel], mean_g))
                plane_dx[s] = r_t * centred_g - xhat * c


@parallel_jit
def _backward_parallel(
    dy, x, mean, inv_std, num_groups, spatial, weight, dx, dweight_part, dbias_part, num_chunks
):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _backward_sets(dy, x, mean, inv_std, num_groups, spatial, weight, dx,
                       None if dweight_part is None else dweight_part[chunk],
                       None if dbias_part is None else dbias_part[chunk], start, stop)


def _check_group_input(x: np.ndarray, num_groups: int) -> int:
    check.array("x", x, 3)
    return check_num_groups(num_groups, x.shape[1])


def group_norm_forward(
    x: np.ndarray,
    num_groups: int,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """y = (x - mu)/sqrt(var + eps)·weight[c] + bias[c], one (mu, var) per
    (sample, group) of x (N, C, S).

    Returns (y, mean, inv_std, var); the statistics have shape (N, num_groups) and x's
    dtype, var the biased variance.
    """
    num_groups = _check_group_input(x, num_groups)
    batch, channels, spatial = x.shape
    check.vector("weight", weight, channels, x.dtype, "one per channel, x.shape[1]")
    check.vector("bias", bias, channels, x.dtype, "one per channel, x.shape[1]")
    eps = check_eps(eps)
    y = buffers.empty_like(x)
    mean, inv_std, var = (np.empty((batch, num_groups), x.dtype) for _ in range(3))
    if x.size == 0:
        for stats in (mean, inv_std, var):
            stats.fill(np.nan)
        return y, mean, inv_std, var
    sets = batch * num_groups
    args = (x.reshape(sets, -1), num_groups, spatial, weight, bias, eps, y.reshape(sets, -1),
            mean.reshape(-1), inv_std.reshape(-1), var.reshape(-1))
    if use_parallel(x.size):
        _forward_parallel(*args, numba.get_num_threads())
    else:
        _forward_sets(*args, 0, sets)
    return y, mean, inv_std, var


def group_norm_backward(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    num_groups: int,
    weight: np.ndarray | None,
    param_grads: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """dx = (r/n)·(n·g - sum(g) - xhat·sum(g·xhat)), g = dy·weight[c], per
    (sample, group); dweight[c] = sum over N, S of dy·xhat, dbias[c] = sum of dy.

    Returns (dx, dweight, dbias); dweight and dbias have shape (C,), or are None when
    param_grads is False.
    """
    num_groups = _check_group_input(x, num_groups)
    batch, channels, spatial = x.shape
    check.like("dy", dy, x, "x")
    check.statistics("mean", mean, (batch, num_groups), x.dtype, "(N, num_groups)")
    check.statistics("inv_std", inv_std, (batch, num_groups), x.dtype, "(N, num_groups)")
    check.vector("weight", weight, channels, x.dtype, "one per channel, x.shape[1]")
    dx = buffers.empty_like(x)
    sets = batch * num_groups
    # one partial row per chunk of sets, never more chunks than sets (2 GiB of partials for
    # 2 sets of 4M elements at 64 threads otherwise)
    num_chunks = min(numba.get_num_threads(), sets) if use_parallel(x.size) else 1
    dweight_part, dbias_part = (new_partials(num_chunks, channels, param_grads)
                                for _ in range(2))
    if x.size:
        args = (dy.reshape(sets, -1), x.reshape(sets, -1), mean.reshape(-1),
                inv_std.reshape(-1), num_groups, spatial, weight, dx.reshape(sets, -1))
        if num_chunks > 1:
            _backward_parallel(*args, dweight_part, dbias_part, num_chunks)
        else:
            _backward_sets(*args, None if dweight_part is None else dweight_part[0],
                           None if dbias_part is None else dbias_part[0], 0, sets)
    return dx, merge_partials(dweight_part, x.dtype), merge_partials(dbias_part, x.dtype)
