"""MaxPool2d and AvgPool2d as autograd Functions.

On the cpu device (float32/float64) they call the Numba kernels kernels.cpu.max_pool2d_* and
avg_pool2d_* on a contiguous copy of the input. Elsewhere (the cuda device's CuPy arrays) they
loop over the kh * kw kernel offsets of a padded input; each offset is one strided slice with
the output's shape, so no (N, C, kh, kw, Ho, Wo) copy is ever made. `padding` is
((top, bottom), (left, right)); the bottom/right amounts include the extra rows and columns
that ceil_mode needs (see `pool_output_size`); the kernels take the top/left amounts and
ceil_mode, and apply the same rule (kernels/pooling.py).
"""

from __future__ import annotations

import numpy as np

from kernels.pooling import output_size

from ..autograd import Function
from .conv_ops import add_windows, window_slices, windows

KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def pool_output_size(size: int, kernel: int, stride: int, pad: int, dilation: int,
                     ceil_mode: bool) -> tuple[int, int]:
    """(output size, extra padding after the input) along one spatial dim, PyTorch's rule.

    With ceil_mode a last, partial window is kept unless it would start in the right padding.
    """
    span = dilation * (kernel - 1) + 1
    out = output_size(size, kernel, stride, pad, dilation, ceil_mode)
    extra = max(0, (out - 1) * stride + span - (size + 2 * pad))
    return out, extra


def _on_kernels(ctx, x: np.ndarray) -> bool:
    """Whether the Numba CPU kernels take this call."""
    return ctx.device == "cpu" and x.dtype in KERNEL_DTYPES


def _kernel_padding(padding: tuple) -> tuple[int, int]:
    """The kernels' padding: the top and left amounts (ceil_mode's extra is their own rule)."""
    return padding[0][0], padding[1][0]


class MaxPool2dFunction(Function):
    """Max over each window; the gradient goes to the first maximal element (as in PyTorch).
    With `indices_out` (a list) PyTorch's return_indices, flat h * W + w, is appended to it."""

    @staticmethod
    def forward(ctx, x, kernel=(1, 1), stride=(1, 1), padding=((0, 0), (0, 0)),
                dilation=(1, 1), out_size=(1, 1), ceil_mode=False, indices_out=None):
        ctx.on_kernels = _on_kernels(ctx, x)
        if ctx.on_kernels:
            from kernels import cpu

            values, indices = cpu.max_pool2d_forward(np.ascontiguousarray(x), kernel, stride,
                                                     _kernel_padding(padding), dilation,
                                                     ceil_mode)
            ctx.indices, ctx.input_size = indices, x.shape[2:]
        else:
            padded = pad_input(x, padding, -np.inf)
            values, argmax = window_max(padded, kernel, stride, dilation, out_size)
            ctx.argmax = argmax
            ctx.geometry = (x.shape, padded.shape, kernel, stride, padding, dilation)
            if indices_out is not None:
                indices = max_indices(argmax, x.shape, kernel, stride, padding, dilation)
        if indices_out is not None:
            indices_out.append(indices)
        return values

    @staticmethod
    def backward(ctx, grad):
        if ctx.on_kernels:
            from kernels import cpu

            return (cpu.max_pool2d_backward(np.ascontiguousarray(grad), ctx.indices,
                                            ctx.input_size),)
        x_shape, padded_shape, kernel, stride, padding, dilation = ctx.geometry
        out_size = grad.shape[2:]
        grad_padded = np.zeros(padded_shape, dtype=grad.dtype)
        for i, j, (rows, cols) in window_slices(kernel, stride, dilation, out_size):
            won = ctx.argmax == i * kernel[1] + j
            grad_padded[:, :, rows, cols] += np.where(won, grad, 0)
        return (crop(grad_padded, x_shape, padding),)


class AvgPool2dFunction(Function):
    """Window sums divided by `divisor`, an (Ho, Wo) array of per-window element counts;
    the kernels compute the same divisors from ceil_mode, count_include_pad and
    divisor_override."""

    @staticmethod
    def forward(ctx, x, kernel=(1, 1), stride=(1, 1), padding=((0, 0), (0, 0)),
                out_size=(1, 1), divisor=None, ceil_mode=False, count_include_pad=True,
                divisor_override=None):
        ctx.on_kernels = _on_kernels(ctx, x)
        if ctx.on_kernels:
            from kernels import cpu

            ctx.arguments = (kernel, stride, _kernel_padding(padding), ceil_mode,
                             count_include_pad, divisor_override)
            ctx.input_size = x.shape[2:]
            return cpu.avg_pool2d_forward(np.ascontiguousarray(x), *ctx.arguments)
        padded = pad_input(x, padding, 0)
        view = windows(padded, kernel, stride, (1, 1), out_size)
        total = np.zeros(x.shape[:2] + tuple(out_size), dtype=x.dtype)
        for i in range(kernel[0]):
            for j in range(kernel[1]):
                total += view[:, :, i, j]
        ctx.divisor = divisor
        ctx.geometry = (x.shape, padded.shape, kernel, stride, padding)
        return (total / divisor).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        if ctx.on_kernels:
            from kernels import cpu

            return (cpu.avg_pool2d_backward(np.ascontiguousarray(grad), ctx.input_size,
                                            *ctx.arguments),)
        x_shape, padded_shape, kernel, stride, padding = ctx.geometry
        share = (grad / ctx.divisor).astype(grad.dtype, copy=False)
        n, c, ho, wo = share.shape
        spread = np.broadcast_to(share[:, :, None, None], (n, c) + tuple(kernel) + (ho, wo))
        grad_padded = np.zeros(padded_shape, dtype=grad.dtype)
        add_windows(grad_padded, spread, stride, (1, 1))
        return (crop(grad_padded, x_shape, padding),)


def pad_input(x: np.ndarray, padding: tuple, value: float) -> np.ndarray:
    if not np.any(padding):
        return x
    return np.pad(x, ((0, 0), (0, 0)) + tuple(padding), constant_values=value)


def crop(padded: np.ndarray, x_shape: tuple, padding: tuple) -> np.ndarray:
    (top, _), (left, _) = padding
    return padded[:, :, top : top + x_shape[2], left : left + x_shape[3]]


def window_max(padded: np.ndarray, kernel: tuple, stride: tuple, dilation: tuple,
               out_size: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(max of each window, flat kernel offset i * kw + j of its first maximum; NaN wins)."""
    view = windows(padded, kernel, stride, dilation, out_size)
    best = view[:, :, 0, 0].copy()
    argmax = np.zeros(best.shape, dtype=np.int64)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            if i == j == 0:
                continue
            candidate = view[:, :, i, j]
            better = (candidate > best) | (np.isnan(candidate) & ~np.isnan(best))
            best[better] = candidate[better]
            argmax[better] = i * kernel[1] + j
    return best, argmax


def max_indices(argmax: np.ndarray, x_shape: tuple, kernel: tuple, stride: tuple,
                padding: tuple, dilation: tuple) -> np.ndarray:
    """PyTorch's return_indices: each maximum's flat position h * W + w in the input plane."""
    ho, wo = argmax.shape[2:]
    (top, _), (left, _) = padding
    rows = np.arange(ho)[:, None] * stride[0] - top + (argmax // kernel[1]) * dilation[0]
    cols = np.arange(wo)[None, :] * stride[1] - left + (argmax % kernel[1]) * dilation[1]
    return rows * x_shape[3] + cols
