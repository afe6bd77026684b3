"""MaxPool2d and AvgPool2d as autograd Functions over strided windows of a padded input.

Both loop over the kh * kw kernel offsets; each offset is one strided slice of the input with
the output's shape, so no (N, C, kh, kw, Ho, Wo) copy is ever made. `padding` is
((top, bottom), (left, right)); the bottom/right amounts include the extra rows and columns
that ceil_mode needs (see `pool_output_size`).
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function
from .conv_ops import add_windows, window_slices, windows


def pool_output_size(size: int, kernel: int, stride: int, pad: int, dilation: int,
                     ceil_mode: bool) -> tuple[int, int]:
    """(output size, extra padding after the input) along one spatial dim, PyTorch's rule.

    With ceil_mode a last, partial window is kept unless it would start in the right padding.
    """
    span = dilation * (kernel - 1) + 1
    out = (size + 2 * pad - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    extra = max(0, (out - 1) * stride + span - (size + 2 * pad))
    return out, extra


class MaxPool2dFunction(Function):
    """Max over each window; the gradient goes to the first maximal element (as in PyTorch)."""

    @staticmethod
    def forward(ctx, x, kernel=(1, 1), stride=(1, 1), padding=((0, 0), (0, 0)),
                dilation=(1, 1), out_size=(1, 1)):
        padded = pad_input(x, padding, -np.inf)
        values, argmax = window_max(padded, kernel, stride, dilation, out_size)
        ctx.argmax = argmax
        ctx.geometry = (x.shape, padded.shape, kernel, stride, padding, dilation)
        return values

    @staticmethod
    def backward(ctx, grad):
        x_shape, padded_shape, kernel, stride, padding, dilation = ctx.geometry
        out_size = grad.shape[2:]
        grad_padded = np.zeros(padded_shape, dtype=grad.dtype)
        for i, j, (rows, cols) in window_slices(kernel, stride, dilation, out_size):
            won = ctx.argmax == i * kernel[1] + j
            grad_padded[:, :, rows, cols] += np.where(won, grad, 0)
        return (crop(grad_padded, x_shape, padding),)


class AvgPool2dFunction(Function):
    """Window sums divided by `divisor`, an (Ho, Wo) array of per-window element counts."""

    @staticmethod
    def forward(ctx, x, kernel=(1, 1), stride=(1, 1), padding=((0, 0), (0, 0)),
                out_size=(1, 1), divisor=None):
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
