"""Float64 reference of conv2d forward and backward (cross-correlation, as PyTorch's), by
direct sums over the kernel offsets: written to be read, not to be fast.

x (N, C, H, W), weight (O, C/groups, kh, kw), y (N, O, Ho, Wo). With x zero-padded to xp,
for output channel o of group g = o // (O/groups):

    y[n, o, oy, ox] = bias[o] + sum over c in group g, i, j of
                      weight[o, c - g·C/groups, i, j] · xp[n, c, oy·sh + i·dh, ox·sw + j·dw]

Backward: dx is the adjoint (each dy spread back over its window), dweight the sum over n,
oy, ox of dy·xp at the same offsets, dbias the sum of dy over n, oy, ox.
"""

from __future__ import annotations

import numpy as np

from kernels.validation import check_conv_geometry, check_output_mask


def _offsets(geometry, kernel: tuple):
    """For each kernel offset (i, j): the slices of the padded input its taps read."""
    (sh, sw), (dh, dw), (ho, wo) = geometry.stride, geometry.dilation, geometry.out_size
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            yield i, j, (slice(i * dh, i * dh + sh * (ho - 1) + 1, sh),
                         slice(j * dw, j * dw + sw * (wo - 1) + 1, sw))


def _grouped(array: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, ...) as (N, groups, C/groups, ...)."""
    return array.reshape(array.shape[0], groups, -1, *array.shape[2:])


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride,
                   padding, dilation, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """y = conv2d(x, weight) + bias; returns (y, cols), cols[(c·kh + i)·kw + j, (n·Ho + oy)·Wo
    + ox] = xp[n, c, oy·sh + i·dh, ox·sw + j·dw] (the im2col matrix)."""
    geometry = check_conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0)) + geometry.padding)
    w = _grouped(np.asarray(weight, np.float64)[None], groups)[0]  # (G, O/G, C/G, kh, kw)
    y = np.zeros((x.shape[0], weight.shape[0]) + geometry.out_size)
    cols = np.zeros((x.shape[1],) + weight.shape[2:] + y.shape[:1] + y.shape[2:])
    for i, j, window in _offsets(geometry, weight.shape[2:]):
        taps = _grouped(xp[:, :, window[0], window[1]], groups)  # (N, G, C/G, Ho, Wo)
        y += np.einsum("goc,ngcyx->ngoyx", w[:, :, :, i, j], taps).reshape(y.shape)
        cols[:, i, j] = xp[:, :, window[0], window[1]].transpose(1, 0, 2, 3)
    if bias is not None:
        y += np.asarray(bias, np.float64)[None, :, None, None]
    return y, cols.reshape(x.shape[1] * weight.shape[2] * weight.shape[3], -1)


def conv2d_backward(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, stride, padding,
                    dilation, groups: int, output_mask=(True, True, True), columns=None) -> tuple:
    """(dx, dweight, dbias); an entry whose output_mask is False is None. columns
    (forward's im2col) is only a cache for the kernels: the spec computes from x."""
    geometry = check_conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    want_dx, want_dweight, want_dbias = check_output_mask(output_mask)
    (top, _), (left, _) = geometry.padding
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0)) + geometry.padding)
    w = _grouped(np.asarray(weight, np.float64)[None], groups)[0]
    g = _grouped(np.asarray(dy, np.float64), groups)  # (N, G, O/G, Ho, Wo)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i, j, window in _offsets(geometry, weight.shape[2:]):
        taps = _grouped(xp[:, :, window[0], window[1]], groups)
        dw[:, :, :, i, j] = np.einsum("ngoyx,ngcyx->goc", g, taps)
        spread = np.einsum("goc,ngoyx->ngcyx", w[:, :, :, i, j], g)
        dxp[:, :, window[0], window[1]] += spread.reshape(taps.shape[0], -1, *taps.shape[3:])
    dx = dxp[:, :, top:top + x.shape[2], left:left + x.shape[3]]
    return (dx if want_dx else None, dw.reshape(weight.shape) if want_dweight else None,
            g.sum(axis=(0, 3, 4)).reshape(-1) if want_dbias else None)
