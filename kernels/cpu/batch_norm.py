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
Parallel drivers split the samples (N) into one chunk per thread. With S == 1
(BatchNorm1d on (N, C)) each plane is a single element, so the passes run over
channels in the inner loop instead, which is the loop that vectorizes there, and the
per-channel sums take four rows per pass over their partial rows. The
per-channel arithmetic between the passes runs in `_finish_*`, compiled, because
a dozen small NumPy calls cost more than the whole kernel at the examples' sizes;
a missing weight or bias compiles its own variant of them. param_grads=False skips
eval backward's sums pass (training backward needs the same sums for dx).

Split entry points (SyncBatchNorm, statistics merged across processes between the passes):
batch_norm_statistics (mean, var), batch_norm_apply, batch_norm_gradient_sums (sum dy,
sum dy·(x - mean)) and batch_norm_input_gradient (dx from sums over all the data). They reuse
the loops above, with float64 per-channel statistics.
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
    parallel_jit,
    shifted_sums,
    sum_partials,
    use_parallel,
)
from kernels.validation import HOST as check
from kernels.validation import check_eps


@jit
def _column_sums(rows, shift, sum_d_part, sum_d2_part, start, stop):
    """_shifted_sums for S == 1, x as rows (N, C): four rows per pass over the partial rows,
    which are then loaded and stored once per four rows, not per row (measured at (4096,
    1024) on one thread: 1.65 -> 0.9 ms, 18 GB/s)."""
    i = start
    while i + 4 <= stop:
        r0, r1, r2, r3 = rows[i], rows[i + 1], rows[i + 2], rows[i + 3]
        for c in range(rows.shape[1]):
            k = np.float64(shift[c])
            d0, d1 = np.float64(r0[c]) - k, np.float64(r1[c]) - k
            d2, d3 = np.float64(r2[c]) - k, np.float64(r3[c]) - k
            sum_d_part[c] += (d0 + d1) + (d2 + d3)
            sum_d2_part[c] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
        i += 4
    for j in range(i, stop):
        row = rows[j]
        for c in range(rows.shape[1]):
            d = np.float64(row[c]) - np.float64(shift[c])
            sum_d_part[c] += d
            sum_d2_part[c] += d * d


@jit
def _shifted_sums(x, shift, sum_d_part, sum_d2_part, start, stop):
    """Per channel sums of d = x - shift[c] and d^2 over samples [start, stop)."""
    if x.shape[2] == 1:
        _column_sums(x.reshape(x.shape[0], x.shape[1]), shift, sum_d_part, sum_d2_part, start,
                     stop)
        return
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
    """y[i, c] = (x[i, c] - shift[c])·scale[c] + offset[c] for samples [start, stop);
    the difference and its product with scale in float64 (see kernels/cpu/stats.py)."""
    if x.shape[2] == 1:  # rows (N, C): the channel loop inside, on row views, vectorizes
        rows, out_rows = x.reshape(x.shape[0], x.shape[1]), y.reshape(y.shape[0], y.shape[1])
        for i in range(start, stop):
            row, out = rows[i], out_rows[i]
            for c in range(row.size):
                d = np.float64(row[c]) - np.float64(shift[c])
                out[c] = x.dtype.type(d * np.float64(scale[c])) + offset[c]
        return
    for i in range(start, stop):
        for c in range(x.shape[1]):
            plane, out = x[i, c], y[i, c]
            k, a, b = np.float64(shift[c]), np.float64(scale[c]), offset[c]
            for s in range(plane.size):
                out[s] = x.dtype.type((np.float64(plane[s]) - k) * a) + b


@parallel_jit
def _affine_parallel(x, shift, scale, offset, y, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _affine(x, shift, scale, offset, y, start, stop)


@jit
def _column_gradient_sums(dy_rows, rows, centre, sum_dy_part, sum_dy_d_part, sum_d_part, start,
                          stop):
    """_gradient_sums for S == 1, dy and x as rows (N, C): four rows per pass over the
    partial rows, as in _column_sums."""
    i = start
    while i + 4 <= stop:
        r0, r1, r2, r3 = rows[i], rows[i + 1], rows[i + 2], rows[i + 3]
        g0, g1, g2, g3 = dy_rows[i], dy_rows[i + 1], dy_rows[i + 2], dy_rows[i + 3]
        for c in range(rows.shape[1]):
            k = np.float64(centre[c])
            d0, d1 = np.float64(r0[c]) - k, np.float64(r1[c]) - k
            d2, d3 = np.float64(r2[c]) - k, np.float64(r3[c]) - k
            e0, e1, e2, e3 = (np.float64(g0[c]), np.float64(g1[c]), np.float64(g2[c]),
                              np.float64(g3[c]))
            sum_dy_part[c] += (e0 + e1) + (e2 + e3)
            sum_dy_d_part[c] += (e0 * d0 + e1 * d1) + (e2 * d2 + e3 * d3)
            sum_d_part[c] += (d0 + d1) + (d2 + d3)
        i += 4
    for j in range(i, stop):
        row, grad = rows[j], dy_rows[j]
        for c in range(rows.shape[1]):
            d = np.float64(row[c]) - np.float64(centre[c])
            g = np.float64(grad[c])
            sum_dy_part[c] += g
            sum_dy_d_part[c] += g * d
            sum_d_part[c] += d


@jit
def _gradient_sums(dy, x, centre, sum_dy_part, sum_dy_d_part, sum_d_part, start, stop):
    """Per channel sums of dy, dy·(x - centre) and x - centre over samples [start, stop)."""
    if x.shape[2] == 1:
        shape = (x.shape[0], x.shape[1])
        _column_gradient_sums(dy.reshape(shape), x.reshape(shape), centre, sum_dy_part,
                              sum_dy_d_part, sum_d_part, start, stop)
        return
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
def _input_gradient(dy, x, centre, inv_std, dy_scale, x_scale, offset, dx, start, stop):
    """dx[i, c] = dy·dy_scale[c] - ((x - centre[c])·inv_std[c])·x_scale[c] - offset[c].

    xhat·x_scale rather than d·(inv_std·x_scale): the product of two inverse stds underflows
    float32 once |x| passes ~1e19 (the xhat term of dx vanished: 1% off at |x| ~ 1e37).
    xhat in float64, widened before subtracting (see kernels/cpu/stats.py)."""
    if x.shape[2] == 1:  # rows (N, C), as in _affine
        shape = (x.shape[0], x.shape[1])
        rows, grad_rows, out_rows = x.reshape(shape), dy.reshape(shape), dx.reshape(shape)
        for i in range(start, stop):
            row, grad, out = rows[i], grad_rows[i], out_rows[i]
            for c in range(row.size):
                d = np.float64(row[c]) - np.float64(centre[c])
                xhat = x.dtype.type(d * np.float64(inv_std[c]))
                out[c] = grad[c] * dy_scale[c] - xhat * x_scale[c] - offset[c]
        return
    for i in range(start, stop):
        for c in range(x.shape[1]):
            plane, grad, out = x[i, c], dy[i, c], dx[i, c]
            mu, r = np.float64(centre[c]), np.float64(inv_std[c])
            a, k, b = dy_scale[c], x_scale[c], offset[c]
            for s in range(plane.size):
                out[s] = grad[s] * a - x.dtype.type((np.float64(plane[s]) - mu) * r) * k - b


@parallel_jit
def _input_gradient_parallel(dy, x, centre, inv_std, dy_scale, x_scale, offset, dx,
                             num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _input_gradient(dy, x, centre, inv_std, dy_scale, x_scale, offset, dx, start, stop)


@jit
def _finish_statistics(parts, shift, n, weight, bias, eps, mean, inv_std, var, scale, offset):
    """From the partial (sum d, sum d^2) rows: the statistics, and the per-channel
    scale and offset of the apply pass, y = (x - shift)·scale + offset."""
    channels = shift.size
    sums = np.empty((2, channels))
    sum_partials(parts[0], sums[0])
    sum_partials(parts[1], sums[1])
    for c in range(channels):
        centre = sums[0, c] / n
        variance = max(sums[1, c] / n - centre * centre, 0.0)
        r = inv_sqrt(variance, eps)
        a = r if weight is None else r * weight[c]
        mean[c] = shift[c] + centre
        inv_std[c] = r
        var[c] = variance
        scale[c] = a
        offset[c] = -centre * a if bias is None else bias[c] - centre * a


@jit
def _finish_gradient(parts, n, inv_std, weight, dweight, dbias, dy_scale, x_scale, offset):
    """From the partial (sum dy, sum dy·d, sum d) rows, d = x - saved mean: dweight,
    dbias and the per-channel coefficients of dx = dy·dy_scale - xhat·x_scale - offset.
    mean(d) measures the rounding of the saved mean (0 for an exact one)."""
    channels = inv_std.size
    sums = np.empty((3, channels))
    for k in range(3):
        sum_partials(parts[k], sums[k])
    for c in range(channels):
        sum_dy, sum_dy_d, correction = sums[0, c], sums[1, c], sums[2, c] / n
        r = np.float64(inv_std[c])
        dweight_c = r * (sum_dy_d - correction * sum_dy)
        a = r if weight is None else r * weight[c]
        k = a * dweight_c / n
        dweight[c] = dweight_c
        dbias[c] = sum_dy
        dy_scale[c] = a
        x_scale[c] = k
        offset[c] = a * sum_dy / n - k * r * correction


def _num_chunks(x: np.ndarray) -> int:
    return min(numba.get_num_threads(), x.shape[0]) if use_parallel(x.size) else 1


def _run_affine(x, shift, scale, offset, y) -> None:
    num_chunks = _num_chunks(x)
    if num_chunks > 1:
        _affine_parallel(x, shift, scale, offset, y, num_chunks)
    else:
        _affine(x, shift, scale, offset, y, 0, x.shape[0])


def _run_shifted_sums(x) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel shift K_c (x's dtype) and the (2, chunks, C) float64 partial sums of
    d = x - K_c and d^2; x is not empty."""
    first = x[0, :, 0]
    # an infinite first element would turn every d into NaN: the mean must stay ±inf
    shift = np.where(np.isfinite(first), first, 0).astype(x.dtype)
    num_chunks = _num_chunks(x)
    parts = np.zeros((2, num_chunks, x.shape[1]))
    if num_chunks > 1:
        _shifted_sums_parallel(x, shift, parts[0], parts[1])
    else:
        _shifted_sums(x, shift, parts[0, 0], parts[1, 0], 0, x.shape[0])
    return shift, parts


def _run_gradient_sums(dy, x, centre) -> np.ndarray:
    """(3, chunks, C) float64 partial sums of dy, dy·(x - centre) and x - centre."""
    num_chunks = _num_chunks(x)
    parts = np.zeros((3, num_chunks, x.shape[1]))
    if num_chunks > 1:
        _gradient_sums_parallel(dy, x, centre, parts[0], parts[1], parts[2])
    else:
        _gradient_sums(dy, x, centre, parts[0, 0], parts[1, 0], parts[2, 0], 0, x.shape[0])
    return parts


def _check_channel_input(x: np.ndarray, weight: np.ndarray | None) -> None:
    check.array("x", x, 3)
    check.vector("weight", weight, x.shape[1], x.dtype, "one per channel, x.shape[1]")


def _check_running_stats(x: np.ndarray, running_mean: np.ndarray, running_var: np.ndarray) -> None:
    why = "one per channel, x.shape[1]"
    check.statistics("running_mean", running_mean, (x.shape[1],), x.dtype, why)
    check.statistics("running_var", running_var, (x.shape[1],), x.dtype, why)


def _eval_scale(weight: np.ndarray | None, running_var: np.ndarray, eps: float) -> np.ndarray:
    """a_c = weight_c/sqrt(running_var_c + eps), in float64."""
    inv_std = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    return inv_std if weight is None else weight * inv_std


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
    check.vector("bias", bias, channels, x.dtype, "one per channel, x.shape[1]")
    eps = check_eps(eps)
    y = buffers.empty_like(x)
    if x.size == 0:
        stats = np.full(channels, np.nan, x.dtype)
        return y, stats, stats.copy(), stats.copy()
    shift, parts = _run_shifted_sums(x)
    mean, inv_std, var, scale, offset = np.empty((5, channels), x.dtype)
    _finish_statistics(parts, shift, batch * spatial, weight, bias, eps, mean, inv_std, var,
                       scale, offset)
    _run_affine(x, shift, scale, offset, y)
    return y, mean, inv_std, var


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
    check.vector("bias", bias, x.shape[1], x.dtype, "one per channel, x.shape[1]")
    eps = check_eps(eps)
    y = buffers.empty_like(x)
    if x.size == 0:
        return y
    offset = np.zeros(x.shape[1], x.dtype) if bias is None else bias
    _run_affine(x, running_mean, _eval_scale(weight, running_var, eps).astype(x.dtype), offset,
                y)
    return y


def batch_norm_backward(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    weight: np.ndarray | None,
    param_grads: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Training-mode backward: dx = (weight·r/n)·(n·dy - sum(dy) - xhat·sum(dy·xhat)),
    dweight = sum(dy·xhat), dbias = sum(dy), per channel over N and S.

    Returns (dx, dweight, dbias); dweight and dbias have shape (C,), or are None when
    param_grads is False.
    """
    _check_channel_input(x, weight)
    batch, channels, spatial = x.shape
    check.like("dy", dy, x, "x")
    why = "one per channel, x.shape[1]"
    check.statistics("mean", mean, (channels,), x.dtype, why)
    check.statistics("inv_std", inv_std, (channels,), x.dtype, why)
    dx = buffers.empty_like(x)
    dweight, dbias = np.zeros((2, channels), x.dtype)
    if x.size:
        parts = _run_gradient_sums(dy, x, mean)
        dy_scale, x_scale, offset = np.empty((3, channels), x.dtype)
        _finish_gradient(parts, batch * spatial, inv_std, weight, dweight, dbias, dy_scale,
                         x_scale, offset)
        num_chunks = _num_chunks(x)
        if num_chunks > 1:
            _input_gradient_parallel(dy, x, mean, inv_std, dy_scale, x_scale, offset, dx,
                                     num_chunks)
        else:
            _input_gradient(dy, x, mean, inv_std, dy_scale, x_scale, offset, dx, 0, batch)
    return (dx, dweight, dbias) if param_grads else (dx, None, None)


def batch_norm_backward_eval(
    dy: np.ndarray,
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    weight: np.ndarray | None,
    eps: float,
    param_grads: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Eval-mode backward of y = a_c·x + b_c: dx = dy·a_c,
    dweight = sum(dy·(x - running_mean))/sqrt(running_var + eps), dbias = sum(dy).

    Returns (dx, dweight, dbias); dweight and dbias are None when param_grads is False,
    and then their pass over dy and x is not made."""
    _check_channel_input(x, weight)
    channels = x.shape[1]
    check.like("dy", dy, x, "x")
    _check_running_stats(x, running_mean, running_var)
    eps = check_eps(eps)
    dx = buffers.empty_like(x)
    zeros = np.zeros(channels, x.dtype)
    if x.size:
        _run_affine(dy, zeros, _eval_scale(weight, running_var, eps).astype(x.dtype), zeros, dx)
    if not param_grads:
        return dx, None, None
    if not x.size:
        return dx, zeros, zeros.copy()
    inv_std = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    sum_dy, sum_dy_d, _ = _run_gradient_sums(dy, x, running_mean).sum(axis=1)
    return dx, (sum_dy_d * inv_std).astype(x.dtype), sum_dy.astype(x.dtype)


# Split entry points, for a BatchNorm whose statistics are merged across processes
# (SyncBatchNorm): statistics, apply, gradient sums and input gradient run separately, so
# the caller can combine the per-channel numbers of several inputs between the passes. The
# statistics travel in float64; the fused kernels above stay the single-process path.

def _check_float64_vector(name: str, array: np.ndarray, x: np.ndarray) -> None:
    check.vector(name, array, x.shape[1], np.dtype(np.float64),
                            "float64, one per channel, x.shape[1]", optional=False)


def batch_norm_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance of x (N, C, S) over N and S, the statistics
    pass of the training forward (shifted float64 sums). The count is n = N·S.

    Returns (mean, var), float64 of shape (C,); an empty x gives zeros, a set with no
    elements, which merges with others as nothing.
    """
    check.array("x", x, 3)
    channels = x.shape[1]
    if x.size == 0:
        return np.zeros(channels), np.zeros(channels)
    shift, parts = _run_shifted_sums(x)
    n = x.shape[0] * x.shape[2]
    sum_d, sum_d2 = parts.sum(axis=1)
    centre = sum_d / n
    var = np.maximum(sum_d2 / n - centre * centre, 0.0)
    return shift + centre, var


def batch_norm_apply(
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
) -> np.ndarray:
    """y = (x - mean_c)·inv_std_c·weight_c + bias_c for x (N, C, S); mean and inv_std
    float64 (C,). As in the training forward, x is shifted by mean_c rounded to x's dtype
    and the rest of the mean goes into the offset, so float32 keeps its precision when
    |mean| >> std. traffic 2·E·s."""
    _check_channel_input(x, weight)
    check.vector("bias", bias, x.shape[1], x.dtype, "one per channel, x.shape[1]")
    _check_float64_vector("mean", mean, x)
    _check_float64_vector("inv_std", inv_std, x)
    y = buffers.empty_like(x)
    if x.size == 0:
        return y
    shift = np.where(np.isfinite(mean), mean, 0).astype(x.dtype)
    scale = inv_std if weight is None else inv_std * weight
    offset = -(mean - shift) * scale if bias is None else bias - (mean - shift) * scale
    _run_affine(x, shift, scale.astype(x.dtype), offset.astype(x.dtype), y)
    return y


def batch_norm_gradient_sums(
    dy: np.ndarray, x: np.ndarray, mean: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel sum(dy) and sum(dy·(x - mean)) over N and S, float64 (C,) each; mean is
    float64 (C,). The first pass of the training backward; dbias = sum(dy) and
    dweight = inv_std·sum(dy·(x - mean)). traffic: read dy and x, 2·E·s."""
    check.array("x", x, 3)
    check.like("dy", dy, x, "x")
    _check_float64_vector("mean", mean, x)
    if x.size == 0:
        return np.zeros(x.shape[1]), np.zeros(x.shape[1])
    sum_dy, sum_dy_xmu, _ = _run_gradient_sums(dy, x, mean).sum(axis=1)
    return sum_dy, sum_dy_xmu


def batch_norm_input_gradient(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    weight: np.ndarray | None,
    sum_dy: np.ndarray,
    sum_dy_xmu: np.ndarray,
    count: int,
) -> np.ndarray:
    """dx = weight_c·r_c·(dy - sum_dy_c/count - (x - mean_c)·r_c²·sum_dy_xmu_c/count), the
    training backward's input gradient from sums over `count` elements per channel (all the
    processes' data: the sums and count need not be x's own). mean, inv_std, sum_dy and
    sum_dy_xmu are float64 (C,). traffic: read dy and x, write dx, 3·E·s."""
    _check_channel_input(x, weight)
    check.like("dy", dy, x, "x")
    for name, array in (("mean", mean), ("inv_std", inv_std), ("sum_dy", sum_dy),
                        ("sum_dy_xmu", sum_dy_xmu)):
        _check_float64_vector(name, array, x)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be a positive int (elements per channel), got {count!r}")
    dx = buffers.empty_like(x)
    if x.size == 0:
        return dx
    dy_scale = inv_std if weight is None else inv_std * weight
    x_scale = dy_scale * inv_std * sum_dy_xmu / count
    offset = dy_scale * sum_dy / count
    num_chunks = _num_chunks(x)
    if num_chunks > 1:
        _input_gradient_parallel(dy, x, mean, inv_std, dy_scale, x_scale, offset, dx,
                                 num_chunks)
    else:
        _input_gradient(dy, x, mean, inv_std, dy_scale, x_scale, offset, dx, 0, x.shape[0])
    return dx
