"""Conv2d as one autograd Function: im2col + one matrix product per group, col2im in backward.

On the cpu device the kernels of kernels/cpu/conv2d.py do it (its docstring has the design and
what was tried); the cuda device (CuPy arrays) runs the NumPy-API version below.

Shapes: input x (N, C, H, W), weight w (O, C/groups, kh, kw), output y (N, O, Ho, Wo), with
K = C * kh * kw and L = N * Ho * Wo, per group:

    forward:   cols (K, L) = windows of the padded input;  y = w.reshape(O, K) @ cols
    backward:  dw = dy (O, L) @ cols.T;   db = dy summed over N, Ho, Wo
               dcols = w.reshape(O, K).T @ dy;   dx = col2im(dcols)

col2im here loops over the kh * kw kernel offsets and adds one strided slice per offset (no
np.add.at, which is an order of magnitude slower). The cpu kernels against PyTorch 2.13, each
in its own process, alternating, medians of 3 rounds of 15 calls, default threads, float32,
forward + backward (dweight, dbias; dx where the layer is not the first), 3x3, padding 1,
on this 2-core machine when it was otherwise idle:

    x (64, 1, 28, 28) -> 32, no dx:   3.7 ms   (PyTorch 7.4 ms)
    x (64, 32, 14, 14) -> 64:        13.7 ms   (PyTorch 6.9 ms)
    x (32, 3, 32, 32) -> 32, no dx:   3.6 ms   (PyTorch 1.3 ms)
    x (32, 32, 16, 16) -> 64:         8.0 ms   (PyTorch 4.3 ms)

Most of our time is the three OpenBLAS products (at the second layer 8.5 of 13.7 ms; NumPy's
OpenBLAS ran 1.2-1.5x slower than PyTorch's GEMM at the MLP's shapes too), the rest im2col,
col2im and the two transposes. With another process busy on the machine, OpenBLAS's two
threads lose whole 4 ms scheduler ticks waiting for each other (single products 10-100x
slower, PyTorch's convolutions alike), and OpenBLAS's idle thread, which keeps spinning after
a product, halves the speed of the parallel Numba loops that follow it (measured: im2col
2.9 ms between products, 1.5 ms with OPENBLAS_NUM_THREADS=1 or OPENBLAS_THREAD_TIMEOUT=4).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..autograd import Function


def conv_output_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int) -> int:
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def windows(padded: np.ndarray, kernel: tuple, stride: tuple, dilation: tuple,
            out_size: tuple) -> np.ndarray:
    """A read-only (N, C, kh, kw, Ho, Wo) view of the windows of a padded input:
    view[n, c, i, j, y, x] = padded[n, c, y·sh + i·dh, x·sw + j·dw]."""
    sn, sc, sh, sw = padded.strides
    shape = padded.shape[:2] + tuple(kernel) + tuple(out_size)
    strides = (sn, sc, sh * dilation[0], sw * dilation[1], sh * stride[0], sw * stride[1])
    return as_strided(padded, shape, strides, writeable=False)


def window_slices(kernel: tuple, stride: tuple, dilation: tuple, out_size: tuple):
    """For each kernel offset (i, j): the (rows, cols) slices of the padded input it touches."""
    for i in range(kernel[0]):
        top = i * dilation[0]
        rows = slice(top, top + stride[0] * (out_size[0] - 1) + 1, stride[0])
        for j in range(kernel[1]):
            left = j * dilation[1]
            yield i, j, (rows, slice(left, left + stride[1] * (out_size[1] - 1) + 1, stride[1]))


def add_windows(target: np.ndarray, values: np.ndarray, stride: tuple, dilation: tuple) -> None:
    """The adjoint of `windows`: target[n, c, y*s + i*d, x*s + j*d] += values[n, c, i, j, y, x]."""
    kh, kw, ho, wo = values.shape[2:]
    for i, j, (rows, cols) in window_slices((kh, kw), stride, dilation, (ho, wo)):
        target[:, :, rows, cols] += values[:, :, i, j]


def _generic_forward(x, weight, stride, padding, dilation):
    """One group's y (N, O, Ho, Wo), without bias, and its cols (K, L), by NumPy views (CuPy
    arrays on the cuda device)."""
    n, c, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    ho = conv_output_size(h, kh, stride[0], sum(padding[0]), dilation[0])
    wo = conv_output_size(w, kw, stride[1], sum(padding[1]), dilation[1])
    padded = np.pad(x, ((0, 0), (0, 0)) + tuple(padding)) if np.any(padding) else x
    # (C, kh, kw, N, Ho, Wo) so that one reshape gives the (K, L) matrix for one GEMM
    cols = windows(padded, (kh, kw), stride, dilation, (ho, wo)).transpose(1, 2, 3, 0, 4, 5)
    cols = cols.reshape(c * kh * kw, n * ho * wo)
    out = weight.reshape(out_channels, -1) @ cols
    return out.reshape(out_channels, n, ho, wo).transpose(1, 0, 2, 3), cols


def _generic_backward(grad, x, weight, cols, stride, padding, dilation, needs_dx):
    """One group's (dx, dweight) from its grad (N, O, Ho, Wo); cols None: no dweight."""
    n, c, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    ho, wo = grad.shape[2:]
    grad_matrix = grad.transpose(1, 0, 2, 3).reshape(out_channels, -1)  # (O, L)
    grad_x = grad_w = None
    if needs_dx:
        grad_cols = weight.reshape(out_channels, -1).T @ grad_matrix  # (K, L)
        grad_cols = grad_cols.reshape(c, kh, kw, n, ho, wo).transpose(3, 0, 1, 2, 4, 5)
        (top, bottom), (left, right) = padding
        grad_padded = np.zeros((n, c, h + top + bottom, w + left + right), dtype=grad.dtype)
        add_windows(grad_padded, grad_cols, stride, dilation)
        grad_x = grad_padded[:, :, top : top + h, left : left + w]
    if cols is not None:
        grad_w = (grad_matrix @ cols.T).reshape(weight.shape)
    return grad_x, grad_w


def _group_slices(x_channels: int, out_channels: int, groups: int):
    """(input channels, output channels) of each group."""
    ci, co = x_channels // groups, out_channels // groups
    return [(slice(g * ci, (g + 1) * ci), slice(g * co, (g + 1) * co)) for g in range(groups)]


class Conv2dFunction(Function):
    """y = conv2d(x, w) + b with zero padding `padding` = ((top, bottom), (left, right)).

    On the cpu device: the kernels of kernels/cpu/conv2d.py; elsewhere (CuPy): the NumPy-API
    im2col above, one product per group."""

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=(1, 1), padding=((0, 0), (0, 0)),
                dilation=(1, 1), groups=1):
        ctx.geometry = (stride, padding, dilation, groups)
        if ctx.device == "cpu":
            from kernels import cpu

            x, weight = np.ascontiguousarray(x), np.ascontiguousarray(weight)
            bias = None if bias is None else np.ascontiguousarray(bias)
            ctx.save_for_backward(x, weight)
            out, cols = cpu.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
            ctx.cols = cols if ctx.needs_input_grad[1] else None  # dweight's, kept from forward
            return out
        outs, all_cols = [], []
        for xs, ws in _group_slices(x.shape[1], weight.shape[0], groups):
            out, cols = _generic_forward(x[:, xs], weight[ws], stride, padding, dilation)
            outs.append(out)
            all_cols.append(cols if ctx.needs_input_grad[1] else None)
        out = outs[0] if groups == 1 else np.concatenate(outs, axis=1)
        if bias is not None:
            out = out + bias.reshape(1, -1, 1, 1)
        ctx.save_for_backward(x, weight)
        ctx.cols = all_cols
        return np.ascontiguousarray(out)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.geometry
        needs = tuple(ctx.needs_input_grad) + (False,) * (3 - len(ctx.needs_input_grad))
        if ctx.device == "cpu":
            from kernels import cpu

            return cpu.conv2d_backward(np.ascontiguousarray(grad), x, weight, stride, padding,
                                       dilation, groups, needs, ctx.cols)
        grads = [_generic_backward(grad[:, ws], x[:, xs], weight[ws], cols, stride, padding,
                                   dilation, needs[0])
                 for (xs, ws), cols in zip(_group_slices(x.shape[1], weight.shape[0], groups),
                                           ctx.cols)]
        grad_x = np.concatenate([g[0] for g in grads], axis=1) if needs[0] else None
        grad_w = np.concatenate([g[1] for g in grads], axis=0) if needs[1] else None
        grad_b = grad.sum(axis=(0, 2, 3)) if needs[2] else None
        return grad_x, grad_w, grad_b
