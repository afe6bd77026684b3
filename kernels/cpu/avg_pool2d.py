"""AvgPool2d over x (N, C, H, W), forward and backward (PyTorch's divisor rules).

Per output (oh, ow) the window's rows are [h0, h1), h0 = oh·stride - padding,
h1 = min(h0 + kernel, H + padding) (ceil_mode's extra area beyond the padding never counts),
columns alike. The sum runs over the window clipped to the input, in float64; the divisor is
divisor_override if given, else the window's size with the padding (count_include_pad) or the
clipped window's size without it.
    forward:  y = sum / divisor; traffic: read x, write y = (E + E_out)·s.
    backward: dx[window] += dy / divisor (overlapping windows accumulate);
              traffic: zero and write dx, read dy = 2·E·s + E_out·s.

Planes are independent: both run in parallel over the N·C planes above SERIAL_MAX_ELEMENTS.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu import buffers
from kernels.cpu.stats import jit, parallel_jit, use_parallel
from kernels.pooling import check_divisor_override, check_flag, check_input_size, geometry
from kernels.validation import HOST as check


@jit
def _window(o, stride, pad, kernel, size, include_pad):
    """(start, stop) of the window clipped to the input, and its share of the divisor."""
    start = o * stride - pad
    stop = min(start + kernel, size + pad)
    extent = stop - start
    start, stop = max(start, 0), min(stop, size)
    return start, stop, extent if include_pad else stop - start


@jit
def _forward_plane(x, kh, kw, sh, sw, ph, pw, include_pad, divisor, y, p):
    height, width = x.shape[1], x.shape[2]
    for oh in range(y.shape[1]):
        h0, h1, rows = _window(oh, sh, ph, kh, height, include_pad)
        for ow in range(y.shape[2]):
            w0, w1, cols = _window(ow, sw, pw, kw, width, include_pad)
            total = 0.0
            for h in range(h0, h1):
                for w in range(w0, w1):
                    total += np.float64(x[p, h, w])
            y[p, oh, ow] = total / (divisor if divisor != 0 else rows * cols)


@jit
def _forward_serial(x, kh, kw, sh, sw, ph, pw, include_pad, divisor, y):
    for p in range(x.shape[0]):
        _forward_plane(x, kh, kw, sh, sw, ph, pw, include_pad, divisor, y, p)


@parallel_jit
def _forward_parallel(x, kh, kw, sh, sw, ph, pw, include_pad, divisor, y):
    for p in numba.prange(x.shape[0]):
        _forward_plane(x, kh, kw, sh, sw, ph, pw, include_pad, divisor, y, p)


@jit
def _backward_plane(dy, kh, kw, sh, sw, ph, pw, include_pad, divisor, dx, p):
    height, width = dx.shape[1], dx.shape[2]
    dx[p] = 0
    for oh in range(dy.shape[1]):
        h0, h1, rows = _window(oh, sh, ph, kh, height, include_pad)
        for ow in range(dy.shape[2]):
            w0, w1, cols = _window(ow, sw, pw, kw, width, include_pad)
            share = np.float64(dy[p, oh, ow]) / (divisor if divisor != 0 else rows * cols)
            for h in range(h0, h1):
                for w in range(w0, w1):
                    dx[p, h, w] += share


@jit
def _backward_serial(dy, kh, kw, sh, sw, ph, pw, include_pad, divisor, dx):
    for p in range(dx.shape[0]):
        _backward_plane(dy, kh, kw, sh, sw, ph, pw, include_pad, divisor, dx, p)


@parallel_jit
def _backward_parallel(dy, kh, kw, sh, sw, ph, pw, include_pad, divisor, dx):
    for p in numba.prange(dx.shape[0]):
        _backward_plane(dy, kh, kw, sh, sw, ph, pw, include_pad, divisor, dx, p)


def _checked(plane: tuple, kernel_size, stride, padding, ceil_mode, count_include_pad,
             divisor_override) -> tuple:
    """The geometry and the kernels' scalar arguments (dilation is 1 for average pooling)."""
    g = geometry(plane, kernel_size, stride, padding, 1, ceil_mode)
    include_pad = check_flag("count_include_pad", count_include_pad)
    divisor = check_divisor_override(divisor_override)
    return g, (*g.kernel, *g.stride, *g.padding, include_pad, divisor)


def avg_pool2d_forward(x: np.ndarray, kernel_size, stride, padding, ceil_mode: bool,
                       count_include_pad: bool, divisor_override: int | None) -> np.ndarray:
    """Mean over each window of x (N, C, H, W) (see the module docstring); stride None means
    kernel_size. Returns y (N, C, Ho, Wo) of x's dtype."""
    check.array("x", x, 4)
    n, c, height, width = x.shape
    g, scalars = _checked((height, width), kernel_size, stride, padding, ceil_mode,
                          count_include_pad, divisor_override)
    y = buffers.empty((n, c) + g.out, x.dtype)
    if y.size:
        planes = x.reshape(n * c, height, width)
        driver = _forward_parallel if use_parallel(x.size) else _forward_serial
        driver(planes, *scalars, y.reshape(n * c, *g.out))
    return y


def avg_pool2d_backward(dy: np.ndarray, input_size, kernel_size, stride, padding,
                        ceil_mode: bool, count_include_pad: bool,
                        divisor_override: int | None) -> np.ndarray:
    """dx (N, C, H, W) of avg_pool2d_forward for input_size (H, W): each dy / divisor spread
    over its window."""
    check.array("dy", dy, 4)
    height, width = check_input_size(input_size)
    g, scalars = _checked((height, width), kernel_size, stride, padding, ceil_mode,
                          count_include_pad, divisor_override)
    n, c = dy.shape[:2]
    check.shape("dy", dy, (n, c) + g.out, "the output of the pooling of input_size")
    dx = buffers.empty((n, c, height, width), dy.dtype)
    if dx.size:
        driver = _backward_parallel if use_parallel(dx.size) else _backward_serial
        driver(dy.reshape(n * c, *g.out), *scalars, dx.reshape(n * c, height, width))
    return dx
