"""log_softmax over the classes of each row of x (rows, classes), forward and backward.

Forward, per row: m = max(x), s = sum(exp(x - m)), y = (x - m) - log(s); the differences
    and sums are float64, each exp is taken in x's dtype (`exp_in_dtype`)
    traffic: read x, write y = 2·E·s (the second pass re-reads the row from L1).
Backward, per row: dx = dy - exp(y)·sum(dy), the sum in float64
    traffic: read dy and y, write dx = 3·E·s.
A row holding +inf or NaN, or only -inf, is NaN throughout, as in PyTorch: x - m is NaN
there (inf - inf), and the NaN reaches s.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu import buffers
from kernels.cpu.stats import chunk_bounds, jit, parallel_jit, reduction_jit, use_parallel
from kernels.validation import HOST as check


@jit
def exp_in_dtype(x, value):
    """exp(value) computed in x's dtype, as float64: expf for float32 data takes half the time
    of exp and is as exact as a float32 result needs; the sums it feeds stay float64."""
    return np.float64(np.exp(x.dtype.type(value)))


@reduction_jit
def log_sum_exp(row):
    """(m, log(sum(exp(row - m)))) in float64, m the row's max (NaNs skipped, -inf for an
    empty row); log-sum-exp = m + the second value, which is in [0, log(row.size)]."""
    peak = -np.inf
    for c in range(row.size):
        value = np.float64(row[c])
        if value > peak:
            peak = value
    total = 0.0
    for c in range(row.size):
        total += exp_in_dtype(row, np.float64(row[c]) - peak)
    return peak, np.log(total)


@jit
def _forward_rows(x, y, start, stop):
    for i in range(start, stop):
        row, out = x[i], y[i]
        peak, log_total = log_sum_exp(row)
        for c in range(row.size):
            out[c] = (np.float64(row[c]) - peak) - log_total


@parallel_jit
def _forward_parallel(x, y, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _forward_rows(x, y, start, stop)


@jit
def _backward_rows(dy, y, dx, start, stop):
    for i in range(start, stop):
        dy_row, y_row, out = dy[i], y[i], dx[i]
        total = 0.0
        for c in range(dy_row.size):
            total += np.float64(dy_row[c])
        for c in range(dy_row.size):
            out[c] = np.float64(dy_row[c]) - exp_in_dtype(y, y_row[c]) * total


@parallel_jit
def _backward_parallel(dy, y, dx, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(y.shape[0], num_chunks, chunk)
        _backward_rows(dy, y, dx, start, stop)


def _num_chunks(array: np.ndarray) -> int:
    """Thread chunks of rows: 1 (serial) for small arrays, never more than the rows."""
    return min(numba.get_num_threads(), array.shape[0]) if use_parallel(array.size) else 1


def log_softmax_forward(x: np.ndarray) -> np.ndarray:
    """y = x - log(sum(exp(x))) over each row of x (rows, classes), max-shifted; x's dtype."""
    check.array("x", x, 2)
    y = buffers.empty_like(x)
    num_chunks = _num_chunks(x)
    if num_chunks > 1:
        _forward_parallel(x, y, num_chunks)
    elif x.size:
        _forward_rows(x, y, 0, x.shape[0])
    return y


def log_softmax_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = dy - exp(y)·sum(dy) per row, y the forward's output (rows, classes)."""
    check.array("y", y, 2)
    check.like("dy", dy, y, "y")
    dx = buffers.empty_like(y)
    num_chunks = _num_chunks(y)
    if num_chunks > 1:
        _backward_parallel(dy, y, dx, num_chunks)
    elif y.size:
        _backward_rows(dy, y, dx, 0, y.shape[0])
    return dx
