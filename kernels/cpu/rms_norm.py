"""RMSNorm over the last dimension of x (rows, cols), forward and backward.

Forward, per row of n = cols elements:
    r = 1/sqrt(mean(x^2) + eps) (float64 sum), y = x·r·weight
    traffic: read x, write y = 2·E·s (the second pass re-reads the row from L1).

Backward, per row, xhat = x·r, g = dy·weight:
    dx = r·(g - xhat·mean(g·xhat)) = r·g - x·(r^3·sum(g·x)/n)
    dweight = sum over rows of dy·xhat
    traffic: read dy and x, write dx = 3·E·s.
    dweight: summed in x's dtype over blocks of BLOCK_ROWS rows, each block added to one
    float64 partial row per thread chunk, merged in order (as LayerNorm's); skipped when
    param_grads is False, and weight None compiles its own variant. The second pass
    prefetches the next row from PREFETCH_MIN_BYTES on, as LayerNorm's.
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
    shifted_sums,
    use_parallel,
    weighted_gradient_sums,
)
from kernels.validation import HOST as check
from kernels.validation import check_eps


@jit
def _forward_rows(x, weight, eps, y, inv_rms, start, stop):
    cols = x.shape[1]
    for i in range(start, stop):
        row, out = x[i], y[i]
        _, squares = shifted_sums(row, 0.0)
        r = inv_sqrt(squares / cols, eps)
        r_t = x.dtype.type(r)
        for j in range(cols):
            out[j] = row[j] * r_t if weight is None else row[j] * r_t * weight[j]
        inv_rms[i] = r


@parallel_jit
def _forward_parallel(x, weight, eps, y, inv_rms, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _forward_rows(x, weight, eps, y, inv_rms, start, stop)


@jit(inline="always")  # one loop body for the blocks and the tail
def _input_gradient(x_row, dy_row, weight, dx_row, dweight_block, r_t, xhat_scale, start, stop):
    """dx = r·g - xhat·(r·mean(g·xhat)) over columns [start, stop) of one row, and the row's
    share of the dweight block (None: not wanted)."""
    for j in range(start, stop):
        xhat = x_row[j] * r_t
        g = dy_row[j] if weight is None else dy_row[j] * weight[j]
        dx_row[j] = r_t * g - xhat * xhat_scale
        add_at(dweight_block, j, dy_row[j] * xhat)


@jit
def _backward_rows(dy, x, inv_rms, weight, dx, dweight_part, prefetch, start, stop):
    cols = x.shape[1]
    # block accumulators in x's dtype; `is None` on an argument types them exactly (a helper
    # returning either would give an Optional, unwrapped on every access)
    dweight_block = None if dweight_part is None else np.zeros(cols, x.dtype)
    for block_start in range(start, stop, BLOCK_ROWS):
        for i in range(block_start, min(block_start + BLOCK_ROWS, stop)):
            x_row, dy_row, dx_row = x[i], dy[i], dx[i]
            _, _, sum_g_x = weighted_gradient_sums(x_row, dy_row, weight, 0.0)
            r = np.float64(inv_rms[i])  # r·r in float32 underflows to 0 once |x| passes ~1e19
            r_t = x.dtype.type(r)
            # xhat·(r·mean(g·xhat)), not x·(r^3·mean(g·x)): r^3·|x| is below float32's range
            # where r·mean(g·xhat) is not (the second term of dx vanished: 5% off at |x| ~ 1e37)
            xhat_scale = x.dtype.type(r * r * sum_g_x / cols)
            # the second pass, in blocks that each prefetch their share of the next row when
            # x is large (as LayerNorm's, kernels/cpu/layer_norm.py)
            if prefetch:
                whole = cols - cols % PREFETCH_BLOCK
                for j in range(0, whole, PREFETCH_BLOCK):
                    prefetch_next_row(x, dy, dx, i, stop, j)
                    _input_gradient(x_row, dy_row, weight, dx_row, dweight_block, r_t,
                                    xhat_scale, j, j + PREFETCH_BLOCK)
                _input_gradient(x_row, dy_row, weight, dx_row, dweight_block, r_t, xhat_scale,
                                whole, cols)
            else:
                _input_gradient(x_row, dy_row, weight, dx_row, dweight_block, r_t, xhat_scale,
                                0, cols)
        add_block(dweight_block, dweight_part)


@parallel_jit
def _backward_parallel(dy, x, inv_rms, weight, dx, dweight_part, prefetch, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _backward_rows(dy, x, inv_rms, weight, dx,
                       None if dweight_part is None else dweight_part[chunk], prefetch,
                       start, stop)


def rms_norm_forward(
    x: np.ndarray, weight: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """y = x/sqrt(mean(x^2) + eps)·weight per row of x (rows, cols).

    Returns (y, inv_rms); inv_rms has shape (rows,) and x's dtype.
    """
    check.array("x", x, 2)
    rows, cols = x.shape
    check.vector("weight", weight, cols, x.dtype, "normalized_shape = x.shape[1:]")
    eps = check_eps(eps)
    y = buffers.empty_like(x)
    if cols == 0:
        return y, np.full(rows, np.nan, x.dtype)
    inv_rms = np.empty(rows, x.dtype)
    if use_parallel(x.size):
        _forward_parallel(x, weight, eps, y, inv_rms, numba.get_num_threads())
    else:
        _forward_rows(x, weight, eps, y, inv_rms, 0, rows)
    return y, inv_rms


def rms_norm_backward(
    dy: np.ndarray, x: np.ndarray, inv_rms: np.ndarray, weight: np.ndarray | None,
    param_grads: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """dx = r·(g - xhat·mean(g·xhat)), xhat = x·r, g = dy·weight, per row;
    dweight = sum over rows of dy·xhat.

    Returns (dx, dweight); dweight has shape (cols,), or is None when param_grads is False.
    """
    check.array("x", x, 2)
    rows, cols = x.shape
    check.like("dy", dy, x, "x")
    check.statistics("inv_rms", inv_rms, (rows,), x.dtype, "one per row of x")
    check.vector("weight", weight, cols, x.dtype, "normalized_shape = x.shape[1:]")
    dx = buffers.empty_like(x)
    # one partial row per chunk of rows, never more chunks than rows (2 GiB of partials for
    # 2 rows of 4M columns at 64 threads otherwise)
    num_chunks = min(numba.get_num_threads(), rows) if use_parallel(x.size) else 1
    dweight_part = new_partials(num_chunks, cols, param_grads)
    prefetch = x.nbytes >= PREFETCH_MIN_BYTES
    if rows and cols:
        if num_chunks > 1:
            _backward_parallel(dy, x, inv_rms, weight, dx, dweight_part, prefetch, num_chunks)
        else:
            _backward_rows(dy, x, inv_rms, weight, dx,
                           None if dweight_part is None else dweight_part[0], prefetch, 0, rows)
    return dx, merge_partials(dweight_part, x.dtype)
