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

Planes are independent: both run in parallel over chunks of the N·C planes above
SERIAL_MAX_ELEMENTS. Small planes are indexed flat (a view per plane or row cost ~80 ns: the
digits CNN's 2x2 planes took 117 ns each, most of it views); rows of at least 4 outputs with
a stride-2 2x2 window take row views with the stride a constant (_forward_2x2_rows).
The running maximum is updated by selects, not branches (on random data the branch is a coin
toss: the branchy loop measured 1.7x slower), and the usual 2x2 window with no padding or
dilation has its own unrolled loop (4 ns -> under 1 ns per input element, measured on
(64, 32, 28, 28), where PyTorch 2.13 took 7 ms for what this does in about 1.5 ms).
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu import buffers
from kernels.cpu.stats import chunk_bounds, jit, parallel_jit, use_parallel
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


@jit(inline="always")
def _max_of_2x2(a, b, c, d, width):
    """The window rule for the 2x2 window a b / c d: (maximum, its offset from a in the plane,
    0, 1, width or width + 1)."""
    take = (b > a) | (b != b)
    best, where = (b, 1) if take else (a, 0)
    take = (c > best) | (c != c)
    best, where = (c, width) if take else (best, where)
    take = (d > best) | (d != d)
    return (d, width + 1) if take else (best, where)


@jit
def _forward_2x2(x, sh, sw, y, indices, start, stop):
    """_forward_plane for planes [start, stop) when the window is 2x2 with no padding or
    dilation and never leaves the plane: the same rule, unrolled, on flat indices (a view
    per row cost more than a small plane's four outputs)."""
    height, width = x.shape[1], x.shape[2]
    ho, wo = y.shape[1], y.shape[2]
    x_flat, y_flat, index_flat = x.reshape(-1), y.reshape(-1), indices.reshape(-1)
    for p in range(start, stop):
        for oh in range(ho):
            first = oh * sh * width  # in-plane index of the top row's first element
            read, out = p * height * width + first, (p * ho + oh) * wo
            for ow in range(wo):
                w = read + ow * sw
                best, where = _max_of_2x2(x_flat[w], x_flat[w + 1], x_flat[w + width],
                                          x_flat[w + width + 1], width)
                y_flat[out + ow] = best
                index_flat[out + ow] = first + ow * sw + where


@jit
def _forward_2x2_rows(x, y, indices, start, stop):
    """_forward_2x2 for stride 2 (PyTorch's default, the stride of the kernel), on row views
    with the stride a constant. Serial, measured against _forward_2x2: (32, 32, 32, 32) 1.4
    -> 1.0 ms, (64, 64, 14, 14) 1.1 -> 0.87 ms, (32, 16, 8, 8) 45 -> 36 us; with 2 outputs a
    row the four views per row cost more (28 against 25 us at (32, 32, 4, 4))."""
    width = x.shape[2]
    for p in range(start, stop):
        for oh in range(y.shape[1]):
            top, bottom = x[p, 2 * oh], x[p, 2 * oh + 1]
            y_row, index_row = y[p, oh], indices[p, oh]
            first = 2 * oh * width
            for ow in range(y.shape[2]):
                best, where = _max_of_2x2(top[2 * ow], top[2 * ow + 1], bottom[2 * ow],
                                          bottom[2 * ow + 1], width)
                y_row[ow] = best
                index_row[ow] = first + 2 * ow + where


@jit
def _forward_planes(x, kh, kw, sh, sw, ph, pw, dh, dw, y, indices, start, stop):
    """The serial driver: planes [start, stop)."""
    # a window that never leaves the plane: the last one ends inside it
    inside = ((y.shape[1] - 1) * sh + 2 <= x.shape[1]) and ((y.shape[2] - 1) * sw + 2 <= x.shape[2])
    if kh == 2 and kw == 2 and ph == 0 and pw == 0 and dh == 1 and dw == 1 and inside:
        if sh == 2 and sw == 2 and y.shape[2] >= 4:
            _forward_2x2_rows(x, y, indices, start, stop)
        else:
            _forward_2x2(x, sh, sw, y, indices, start, stop)
    else:
        for p in range(start, stop):
            _forward_plane(x, kh, kw, sh, sw, ph, pw, dh, dw, y, indices, p)


@parallel_jit
def _forward_parallel(x, kh, kw, sh, sw, ph, pw, dh, dw, y, indices, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _forward_planes(x, kh, kw, sh, sw, ph, pw, dh, dw, y, indices, start, stop)


@jit
def _scatter_planes(dy, indices, dx, start, stop):
    """The serial driver: for planes [start, stop), dx[p] = 0, then dx[p, indices[p, i]] +=
    dy[p, i]; returns how many indices fell outside the plane (and were skipped)."""
    size, outputs = dx.shape[1], dy.shape[1]
    dx_flat, dy_flat, index_flat = dx.reshape(-1), dy.reshape(-1), indices.reshape(-1)
    zeros = dx_flat[start * size:stop * size]
    for q in range(zeros.size):
        zeros[q] = 0
    bad = 0
    for p in range(start, stop):
        for i in range(p * outputs, (p + 1) * outputs):
            j = index_flat[i]
            if 0 <= j < size:
                dx_flat[p * size + j] += dy_flat[i]
            elif j != -1:
                bad += 1
    return bad


@parallel_jit
def _backward_parallel(dy, indices, dx, num_chunks):
    bad = 0
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(dy.shape[0], num_chunks, chunk)
        bad += _scatter_planes(dy, indices, dx, start, stop)
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
        arguments = (planes, *g.kernel, *g.stride, *g.padding, *g.dilation,
                     y.reshape(n * c, *g.out), indices.reshape(n * c, *g.out))
        if use_parallel(x.size):
            _forward_parallel(*arguments, min(numba.get_num_threads(), n * c))
        else:
            _forward_planes(*arguments, 0, n * c)
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
        arguments = (dy.reshape(planes, -1), indices.reshape(planes, -1), dx.reshape(planes, -1))
        if use_parallel(dx.size):
            bad = _backward_parallel(*arguments, min(numba.get_num_threads(), planes))
        else:
            bad = _scatter_planes(*arguments, 0, planes)
        if bad:
            raise ValueError(f"indices must lie in [0, {height * width}) (input_size "
                             f"{(height, width)}) or be -1; {bad} did not")
    return dx
