"""LayerNorm over the last dimension of x (rows, cols), forward and backward.

Forward, per row (set of n = cols elements):
    mu, var from `shifted_moments`; r = 1/sqrt(var + eps)
    y = ((x - K) - centre)·r·weight + bias            (mu = K + centre)
    traffic: read x, write y = 2·E·s (the stats passes re-read the row from L1).

Backward, per row, g = dy·weight:
    dx = (r/n)·(n·g - sum(g) - xhat·sum(g·xhat))
    dweight = sum over rows of dy·xhat, dbias = sum over rows of dy
    traffic: read dy and x, write dx = 3·E·s (second pass re-reads from L1).
    The saved mean is rounded to x's dtype, which for |mean| >> std is a sizeable
    fraction of std; the first pass therefore also sums d = x - mean and centres
    with c = mean(d) (c = 0 for an exact mean, and then this is the formula above).
    dweight/dbias: one float64 partial row per thread chunk, merged in order.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu import buffers, validation
from kernels.cpu.stats import (
    chunk_bounds,
    jit,
    parallel_jit,
    shifted_moments,
    sum_partials,
    use_parallel,
    weighted_gradient_sums,
)


@jit
def _forward_rows(x, weight, bias, eps, y, mean, inv_std, start, stop):
    for i in range(start, stop):
        row = x[i]
        shift, centre, r = shifted_moments(row, eps)
        shift64 = np.float64(shift)
        out = y[i]
        for j in range(row.size):  # widened before subtracting: see kernels/cpu/stats.py
            xhat = x.dtype.type(((np.float64(row[j]) - shift64) - centre) * r)
            out[j] = xhat * weight[j] + bias[j]
        mean[i] = shift + centre
        inv_std[i] = r


@parallel_jit
def _forward_parallel(x, weight, bias, eps, y, mean, inv_std, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _forward_rows(x, weight, bias, eps, y, mean, inv_std, start, stop)


@jit
def _backward_rows(dy, x, mean, inv_std, weight, dx, dweight_part, dbias_part, start, stop):
    cols = x.shape[1]
    for i in range(start, stop):
        x_row, dy_row, dx_row = x[i], dy[i], dx[i]
        mu = mean[i]
        sum_d, sum_g, sum_g_d = weighted_gradient_sums(x_row, dy_row, weight, mu)
        r = inv_std[i]
        correction = sum_d / cols
        sum_g_xhat = r * (sum_g_d - correction * sum_g)
        # dx = a·g - b - xhat·c, with the per-row constants folded once
        a = x.dtype.type(r)
        b = x.dtype.type(r * sum_g / cols)
        c = x.dtype.type(r * sum_g_xhat / cols)
        mu64 = np.float64(mu)
        for j in range(cols):  # widened before subtracting: see kernels/cpu/stats.py
            xhat = x.dtype.type(((np.float64(x_row[j]) - mu64) - correction) * r)
            dx_row[j] = a * (dy_row[j] * weight[j]) - b - xhat * c
            dweight_part[j] += dy_row[j] * xhat
            dbias_part[j] += dy_row[j]


@parallel_jit
def _backward_parallel(dy, x, mean, inv_std, weight, dx, dweight_part, dbias_part):
    num_chunks = dweight_part.shape[0]
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _backward_rows(
            dy, x, mean, inv_std, weight, dx, dweight_part[chunk], dbias_part[chunk], start, stop
        )


def layer_norm_forward(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y = (x - mu)/sqrt(var + eps)·weight + bias per row of x (rows, cols).

    Returns (y, mean, inv_std); mean and inv_std have shape (rows,) and x's dtype.
    """
    validation.check_array("x", x, 2)
    rows, cols = x.shape
    validation.check_vector("weight", weight, cols, x.dtype, "normalized_shape = x.shape[1:]")
    validation.check_vector("bias", bias, cols, x.dtype, "normalized_shape = x.shape[1:]")
    validation.check_eps(eps)
    y = buffers.empty_like(x)
    if cols == 0:
        return y, np.full(rows, np.nan, x.dtype), np.full(rows, np.nan, x.dtype)
    mean = np.empty(rows, x.dtype)
    inv_std = np.empty(rows, x.dtype)
    weight = np.ones(cols, x.dtype) if weight is None else weight
    bias = np.zeros(cols, x.dtype) if bias is None else bias
    if use_parallel(x.size):
        _forward_parallel(x, weight, bias, float(eps), y, mean, inv_std, numba.get_num_threads())
    else:
        _forward_rows(x, weight, bias, float(eps), y, mean, inv_std, 0, rows)
    return y, mean, inv_std


def layer_norm_backward(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx = (r/n)·(n·g - sum(g) - xhat·sum(g·xhat)), g = dy·weight, per row;
    dweight = sum over rows of dy·xhat, dbias = sum over rows of dy.

    Returns (dx, dweight, dbias); dweight and dbias have shape (cols,).
    """
    validation.check_array("x", x, 2)
    rows, cols = x.shape
    validation.check_like("dy", dy, x, "x")
    validation.check_vector("mean", mean, rows, x.dtype, "one per row of x", optional=False)
    validation.check_vector("inv_std", inv_std, rows, x.dtype, "one per row of x", optional=False)
    validation.check_vector("weight", weight, cols, x.dtype, "normalized_shape = x.shape[1:]")
    dx = buffers.empty_like(x)
    dweight = np.zeros(cols, x.dtype)
    dbias = np.zeros(cols, x.dtype)
    if rows == 0 or cols == 0:
        return dx, dweight, dbias
    weight = np.ones(cols, x.dtype) if weight is None else weight
    # one partial row per chunk of rows, never more chunks than rows (2 GiB of partials for
    # 2 rows of 4M columns at 64 threads otherwise)
    num_chunks = min(numba.get_num_threads(), x.shape[0]) if use_parallel(x.size) else 1
    dweight_part = np.zeros((num_chunks, cols))
    dbias_part = np.zeros((num_chunks, cols))
    if num_chunks > 1:
        _backward_parallel(dy, x, mean, inv_std, weight, dx, dweight_part, dbias_part)
    else:
        _backward_rows(dy, x, mean, inv_std, weight, dx, dweight_part[0], dbias_part[0], 0, rows)
    sum_partials(dweight_part, dweight)
    sum_partials(dbias_part, dbias)
    return dx, dweight, dbias
