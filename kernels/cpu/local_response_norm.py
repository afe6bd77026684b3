"""LocalResponseNorm across the channels of x (N, C, S), forward and backward.

Forward, per (sample, channel) row, window W(c) = [c - size//2, c + (size-1)//2] ∩ [0, C):
    scale = k + alpha/size · sum over W(c) of x^2 (float64 sums), y = x·scale^-beta
    traffic: read x (size times, from cache), write y and scale = 3·E·s.

Backward, with t = dy·x·scale^(-beta-1) (float64 scratch):
    dx[j] = dy[j]·scale[j]^-beta - (2·alpha·beta/size)·x[j]·sum of t over the c whose window
    holds j, i.e. c in [j - (size-1)//2, j + size//2] ∩ [0, C)
    traffic: read dy, x, scale, write dx and t, read t (size times) = 6·E·s.

Rows are independent given their window, so both passes run in parallel over the N·C rows.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu import buffers
from kernels.cpu.stats import jit, parallel_jit, use_parallel
from kernels.validation import HOST as check


@jit
def _forward_row(x, size, alpha, beta, k, y, scale, row):
    channels, spatial = x.shape[1], x.shape[2]
    n, c = row // channels, row % channels
    lo, hi = max(0, c - size // 2), min(channels, c + (size - 1) // 2 + 1)
    acc = np.zeros(spatial)
    for c2 in range(lo, hi):
        for s in range(spatial):
            v = np.float64(x[n, c2, s])
            acc[s] += v * v
    for s in range(spatial):
        d = k + alpha / size * acc[s]
        scale[n, c, s] = d
        y[n, c, s] = np.float64(x[n, c, s]) * d**-beta


@jit
def _forward_serial(x, size, alpha, beta, k, y, scale):
    for row in range(x.shape[0] * x.shape[1]):
        _forward_row(x, size, alpha, beta, k, y, scale, row)


@parallel_jit
def _forward_parallel(x, size, alpha, beta, k, y, scale):
    for row in numba.prange(x.shape[0] * x.shape[1]):
        _forward_row(x, size, alpha, beta, k, y, scale, row)


@jit
def _gradient_terms_row(dy, x, scale, beta, t, row):
    channels = x.shape[1]
    n, c = row // channels, row % channels
    for s in range(x.shape[2]):
        d = np.float64(scale[n, c, s])
        t[n, c, s] = np.float64(dy[n, c, s]) * np.float64(x[n, c, s]) * d ** (-beta - 1.0)


@jit
def _backward_row(dy, x, scale, size, alpha, beta, t, dx, row):
    channels, spatial = x.shape[1], x.shape[2]
    n, j = row // channels, row % channels
    lo, hi = max(0, j - (size - 1) // 2), min(channels, j + size // 2 + 1)
    acc = np.zeros(spatial)
    for c in range(lo, hi):
        for s in range(spatial):
            acc[s] += t[n, c, s]
    factor = 2.0 * alpha * beta / size
    for s in range(spatial):
        d = np.float64(scale[n, j, s])
        dx[n, j, s] = (np.float64(dy[n, j, s]) * d**-beta
                       - factor * np.float64(x[n, j, s]) * acc[s])


@jit
def _backward_serial(dy, x, scale, size, alpha, beta, t, dx):
    rows = x.shape[0] * x.shape[1]
    for row in range(rows):
        _gradient_terms_row(dy, x, scale, beta, t, row)
    for row in range(rows):
        _backward_row(dy, x, scale, size, alpha, beta, t, dx, row)


@parallel_jit
def _backward_parallel(dy, x, scale, size, alpha, beta, t, dx):
    rows = x.shape[0] * x.shape[1]
    for row in numba.prange(rows):
        _gradient_terms_row(dy, x, scale, beta, t, row)
    for row in numba.prange(rows):
        _backward_row(dy, x, scale, size, alpha, beta, t, dx, row)


def _check_size(size: object) -> int:
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if size <= 0:
        raise ValueError(f"size must be a positive int (channels per window), got {size}")
    return int(size)


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def local_response_norm_forward(
    x: np.ndarray, size: int, alpha: float, beta: float, k: float
) -> tuple[np.ndarray, np.ndarray]:
    """y = x·scale^-beta, scale = k + alpha/size · (sum of x^2 over the channel window),
    for x (N, C, S). Returns (y, scale), both of x's shape and dtype."""
    check.array("x", x, 3)
    size = _check_size(size)
    alpha, beta, k = (_check_real(n, v) for n, v in (("alpha", alpha), ("beta", beta),
                                                    ("k", k)))
    y, scale = buffers.empty_like(x), buffers.empty_like(x)
    if x.size:
        driver = _forward_parallel if use_parallel(x.size) else _forward_serial
        driver(x, size, alpha, beta, k, y, scale)
    return y, scale


def local_response_norm_backward(
    dy: np.ndarray, x: np.ndarray, scale: np.ndarray, size: int, alpha: float, beta: float
) -> np.ndarray:
    """dx of local_response_norm_forward (see the module docstring) for x (N, C, S)."""
    check.array("x", x, 3)
    check.like("dy", dy, x, "x")
    check.like("scale", scale, x, "x")
    size = _check_size(size)
    alpha, beta = _check_real("alpha", alpha), _check_real("beta", beta)
    dx = buffers.empty_like(x)
    if x.size:
        t = np.empty(x.shape)
        driver = _backward_parallel if use_parallel(x.size) else _backward_serial
        driver(dy, x, scale, size, alpha, beta, t, dx)
    return dx
