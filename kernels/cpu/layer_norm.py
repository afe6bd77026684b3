"""LayerNorm over the last dimension of x (rows, cols), forward and backward.

Forward, per row (set of n = cols elements):
    mu, var from `shifted_moments`; r = 1/sqrt(var + eps)
    y = ((x - K) - centre)·r·weight + bias            (mu = K + centre)
    traffic: read x, write y = 2·E·s (the output pass re-reads the row from L1).

Backward, per row, g = dy·weight:
    dx = (r/n)·(n·g - sum(g) - xhat·sum(g·xhat)), g - mean(g) formed before scaling by r
    dweight = sum over rows of dy·xhat, dbias = sum over rows of dy
    traffic: read dy and x, write dx = 3·E·s (second pass re-reads from L1).
    The saved mean is rounded to x's dtype, which for |mean| >> std is a sizeable
    fraction of std; the first pass therefore also sums d = x - mean and centres
    with c = mean(d) (c = 0 for an exact mean, and then this is the formula above).
    dweight/dbias: summed in x's dtype over blocks of BLOCK_ROWS rows inside the second
    pass (the loop then runs at float32 vector width, with no float64 conversion or
    load-add-store per element), each block added to one float64 partial row per thread
    chunk, merged in order; skipped entirely when param_grads is False (no affine, frozen
    parameters).
    A missing weight or bias compiles its own variant (Numba prunes the `is None`
    branches), so no array of ones or zeros is made or read.
    From PREFETCH_MIN_BYTES on, the second pass runs in blocks of PREFETCH_BLOCK columns,
    each prefetching its share of the next row (kernels/cpu/stats.py: it overlaps the next
    row's memory traffic with this row's compute).
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu import buffers
from kernels.cpu.stats import (
    BLOCK_ROWS,
    PREFETCH_BLOCK,
    PREFETCH_MIN_BYTES,
    add_at,
    add_block,
    chunk_bounds,
    inv_sqrt,
    jit,
    merge_partials,
    new_partials,
    parallel_jit,
    prefetch_next_row,
    product_minus,
    shifted_moments,
    use_parallel,
    weighted_gradient_sums,
)
from kernels.validation import HOST as check
from kernels.validation import check_eps


@jit
def _forward_rows(x, weight, bias, eps, y, mean, inv_std, start, stop):
    for i in range(start, stop):
        row = x[i]
        shift, centre, var = shifted_moments(row)
        r = inv_sqrt(var, eps)
        shift64 = np.float64(shift)
        out = y[i]
        for j in range(row.size):  # widened before subtracting: see kernels/cpu/stats.py
            xhat = x.dtype.type(((np.float64(row[j]) - shift64) - centre) * r)
            scaled = xhat if weight is None else xhat * weight[j]
            out[j] = scaled if bias is None else scaled + bias[j]
        mean[i] = shift + centre
        inv_std[i] = r


@parallel_jit
def _forward_parallel(x, weight, bias, eps, y, mean, inv_std, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _forward_rows(x, weight, bias, eps, y, mean, inv_std, start, stop)


@jit(inline="always")  # one loop body for the blocks and the tail
def _input_gradient(x_row, dy_row, weight, dx_row, dweight_block, dbias_block, mu64, correction,
                    r, mean_g, c, start, stop):
    """dx = r·(g - mean(g)) - xhat·c over columns [start, stop) of one row, and the row's
    share of the dweight/dbias blocks (None: not wanted)."""
    r_t = x_row.dtype.type(r)
    for j in range(start, stop):  # widened before subtracting: see kernels/cpu/stats.py
        xhat = x_row.dtype.type(((np.float64(x_row[j]) - mu64) - correction) * r)
        # g - mean(g) rounded as one operation: exact 0 for a one-element row
        centred_g = (dy_row[j] - mean_g if weight is None
                     else product_minus(dy_row[j], weight[j], mean_g))
        dx_row[j] = r_t * centred_g - xhat * c
        add_at(dweight_block, j, dy_row[j] * xhat)
        add_at(dbias_block, j, dy_row[j])


@jit
def _backward_rows(dy, x, mean, inv_std, weight, dx, dweight_part, dbias_part, prefetch,
                   start, stop):
    cols = x.shape[1]
    # block accumulators in x's dtype; `is None` on an argument types them exactly (a helper
    # returning either would give an Optional, unwrapped on every access)
    dweight_block = None if dweight_part is None else np.zeros(cols, x.dtype)
    dbias_block = None if dbias_part is None else np.zeros(cols, x.dtype)
    for block_start in range(start, stop, BLOCK_ROWS):
        for i in range(block_start, min(block_start + BLOCK_ROWS, stop)):
            x_row, dy_row, dx_row = x[i], dy[i], dx[i]
            mu = mean[i]
            sum_d, sum_g, sum_g_d = weighted_gradient_sums(x_row, dy_row, weight, mu)
            r = inv_std[i]
            correction = sum_d / cols
            sum_g_xhat = r * (sum_g_d - correction * sum_g)
            # dx = r·(g - mean(g)) - xhat·c, the per-row constants folded once; mean(g) is
            # subtracted before scaling so that a one-element row gets dx = 0 exactly
            mean_g = x.dtype.type(sum_g / cols)
            c = x.dtype.type(r * sum_g_xhat / cols)
            mu64 = np.float64(mu)
            # the second pass, in blocks that each prefetch their share of the next row when
            # x is large (kernels/cpu/stats.py); constant block bounds keep the indices
            # provably non-negative, which the vectorizer needs
            if prefetch:
                whole = cols - cols % PREFETCH_BLOCK
                for j in range(0, whole, PREFETCH_BLOCK):
                    prefetch_next_row(x, dy, dx, i, stop, j)
                    _input_gradient(x_row, dy_row, weight, dx_row, dweight_block, dbias_block,
                                    mu64, correction, r, mean_g, c, j, j + PREFETCH_BLOCK)
                _input_gradient(x_row, dy_row, weight, dx_row, dweight_block, dbias_block,
                                mu64, correction, r, mean_g, c, whole, cols)
            else:
                _input_gradient(x_row, dy_row, weight, dx_row, dweight_block, dbias_block,
                                mu64, correction, r, mean_g, c, 0, cols)
        add_block(dweight_block, dweight_part)
        add_block(dbias_block, dbias_part)


@parallel_jit
def _backward_parallel(dy, x, mean, inv_std, weight, dx, dweight_part, dbias_part, prefetch,
                       num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _backward_rows(dy, x, mean, inv_std, weight, dx,
                       None if dweight_part is None else dweight_part[chunk],
                       None if dbias_part is None else dbias_part[chunk], prefetch, start, stop)


def layer_norm_forward(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y = (x - mu)/sqrt(var + eps)·weight + bias per row of x (rows, cols).

    Returns (y, mean, inv_std); mean and inv_std have shape (rows,) and x's dtype.
    """
    check.array("x", x, 2)
    rows, cols = x.shape
    check.vector("weight", weight, cols, x.dtype, "normalized_shape = x.shape[1:]")
    check.vector("bias", bias, cols, x.dtype, "normalized_shape = x.shape[1:]")
    eps = check_eps(eps)
    y = buffers.empty_like(x)
    if cols == 0:
        return y, np.full(rows, np.nan, x.dtype), np.full(rows, np.nan, x.dtype)
    mean = np.empty(rows, x.dtype)
    inv_std = np.empty(rows, x.dtype)
    if use_parallel(x.size):
        _forward_parallel(x, weight, bias, eps, y, mean, inv_std, numba.get_num_threads())
    else:
        _forward_rows(x, weight, bias, eps, y, mean, inv_std, 0, rows)
    return y, mean, inv_std


def layer_norm_backward(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    weight: np.ndarray | None,
    param_grads: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """dx = (r/n)·(n·g - sum(g) - xhat·sum(g·xhat)), g = dy·weight, per row;
    dweight = sum over rows of dy·xhat, dbias = sum over rows of dy.

    Returns (dx, dweight, dbias); dweight and dbias have shape (cols,), or are None when
    param_grads is False.
    """
    check.array("x", x, 2)
    rows, cols = x.shape
    check.like("dy", dy, x, "x")
    check.statistics("mean", mean, (rows,), x.dtype, "one per row of x")
    check.statistics("inv_std", inv_std, (rows,), x.dtype, "one per row of x")
    check.vector("weight", weight, cols, x.dtype, "normalized_shape = x.shape[1:]")
    dx = buffers.empty_like(x)
    # one partial row per chunk of rows, never more chunks than rows (2 GiB of partials for
    # 2 rows of 4M columns at 64 threads otherwise)
    num_chunks = min(numba.get_num_threads(), rows) if use_parallel(x.size) else 1
    dweight_part, dbias_part = (new_partials(num_chunks, cols, param_grads) for _ in range(2))
    prefetch = x.nbytes >= PREFETCH_MIN_BYTES
    if rows and cols:
        if num_chunks > 1:
            _backward_parallel(dy, x, mean, inv_std, weight, dx, dweight_part, dbias_part,
                               prefetch, num_chunks)
        else:
            _backward_rows(dy, x, mean, inv_std, weight, dx,
                           None if dweight_part is None else dweight_part[0],
                           None if dbias_part is None else dbias_part[0], prefetch, 0, rows)
    return dx, merge_partials(dweight_part, x.dtype), merge_partials(dbias_part, x.dtype)
