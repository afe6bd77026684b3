"""conv2d forward and backward: Numba im2col/col2im around BLAS matrix products.

x (N, C, H, W), weight (O, C/G, kh, kw) with G groups, y (N, O, Ho, Wo); K = C·kh·kw rows
of cols, L = N·Ho·Wo columns, group g owning rows [g·K/G, (g+1)·K/G) and output channels
[g·O/G, (g+1)·O/G):

    forward:   cols (K, L) = im2col(x);  t (O, L) = w (G, O/G, K/G) @ cols;  y = t as NCHW + bias
    backward:  g (O, L) = dy as (O, L), dbias = its row sums (float64, fused in the same pass)
               dweight = g @ cols.T (cols recomputed from x);  dcols = w.T @ g;  dx = col2im(dcols)

The products are NumPy matmuls in x's dtype (float32 stays float32, as PyTorch's); the Numba
loops run one sample (or one channel) per prange iteration, so no two threads write the same
element. `output_mask` skips what is not wanted: without dx neither w.T @ g nor col2im runs,
without dweight no im2col runs. Measured alternatives (2 cores, shared machine): one batched
matmul per sample ((O, K) @ (N, K, Ho·Wo), no transposes) was 1.4x slower than one GEMM at
32->64 channels; a direct convolution loop for 1 input channel 10x slower than im2col + GEMM;
np.dot inside a prange makes OpenBLAS warn "Detect OpenMP Loop" (its threads nest inside
Numba's), so every product is called from Python, between the parallel loops.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu.stats import chunk_bounds, jit, parallel_jit, use_parallel
from kernels.validation import HOST as check
from kernels.validation import check_conv_geometry, check_output_mask


@jit
def _im2col_samples(x, kh, kw, sh, sw, dh, dw, top, left, ho, wo, padded, cols, start, stop):
    """cols[(c·kh + i)·kw + j, n·Ho·Wo + oy·Wo + ox] = xp[n, c, oy·sh + i·dh, ox·sw + j·dw]
    for n in [start, stop); `padded` (C, Hp, Wp) is this chunk's zero-bordered scratch."""
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    hp, wp = padded.shape[1], padded.shape[2]
    flat_padded = padded.reshape(-1)
    flat_cols = cols.reshape(-1)
    plane = ho * wo
    row_length = x.shape[0] * plane
    for n in range(start, stop):
        for c in range(channels):  # the borders stay zero: only the interior is written
            for y in range(height):
                for xx in range(width):
                    padded[c, top + y, left + xx] = x[n, c, y, xx]
        row = 0
        for c in range(channels):
            for i in range(kh):
                for j in range(kw):
                    out = row * row_length + n * plane
                    for oy in range(ho):
                        source = (c * hp + oy * sh + i * dh) * wp + j * dw
                        for ox in range(wo):
                            flat_cols[out + ox] = flat_padded[source + ox * sw]
                        out += wo
                    row += 1


@parallel_jit
def _im2col_parallel(x, kh, kw, sh, sw, dh, dw, top, left, ho, wo, hp, wp, cols, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        padded = np.zeros((x.shape[1], hp, wp), x.dtype)
        _im2col_samples(x, kh, kw, sh, sw, dh, dw, top, left, ho, wo, padded, cols, start, stop)


@jit
def _col2im_samples(cols, kh, kw, sh, sw, dh, dw, top, left, ho, wo, padded, dx, start, stop):
    """The adjoint of _im2col_samples: dx[n] = the interior of the padded sum of cols."""
    channels, height, width = dx.shape[1], dx.shape[2], dx.shape[3]
    hp, wp = padded.shape[1], padded.shape[2]
    flat_padded = padded.reshape(-1)
    flat_cols = cols.reshape(-1)
    plane = ho * wo
    row_length = dx.shape[0] * plane
    for n in range(start, stop):
        padded[:] = 0
        row = 0
        for c in range(channels):
            for i in range(kh):
                for j in range(kw):
                    source = row * row_length + n * plane
                    for oy in range(ho):
                        out = (c * hp + oy * sh + i * dh) * wp + j * dw
                        for ox in range(wo):
                            flat_padded[out + ox * sw] += flat_cols[source + ox]
                        source += wo
                    row += 1
        for c in range(channels):
            for y in range(height):
                for xx in range(width):
                    dx[n, c, y, xx] = padded[c, top + y, left + xx]


@parallel_jit
def _col2im_parallel(cols, kh, kw, sh, sw, dh, dw, top, left, ho, wo, hp, wp, dx, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(dx.shape[0], num_chunks, chunk)
        padded = np.empty((dx.shape[1], hp, wp), dx.dtype)
        _col2im_samples(cols, kh, kw, sh, sw, dh, dw, top, left, ho, wo, padded, dx, start, stop)


@jit
def _to_nchw_samples(t, bias, y, start, stop):
    """y[n, o, s] = t[o, n, s] + bias[o] for n in [start, stop); t is (O, N, S)."""
    for n in range(start, stop):
        for o in range(t.shape[0]):
            shift = t.dtype.type(0) if bias is None else bias[o]
            for s in range(t.shape[2]):
                y[n, o, s] = t[o, n, s] + shift


@parallel_jit
def _to_nchw_parallel(t, bias, y, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(t.shape[1], num_chunks, chunk)
        _to_nchw_samples(t, bias, y, start, stop)


@jit
def _to_channels_first(dy, g, row_sums, start, stop):
    """g[o, n, s] = dy[n, o, s] for o in [start, stop), and row_sums[o] = sum of g[o] in
    float64 when row_sums is not None."""
    for o in range(start, stop):
        total = 0.0
        for n in range(dy.shape[0]):
            for s in range(dy.shape[2]):
                value = dy[n, o, s]
                g[o, n, s] = value
                total += value
        if row_sums is not None:
            row_sums[o] = total


@parallel_jit
def _to_channels_first_parallel(dy, g, row_sums, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(dy.shape[1], num_chunks, chunk)
        _to_channels_first(dy, g, row_sums, start, stop)


def _chunks(size: int, items: int) -> int:
    """Threads for a loop over `items` samples or channels moving `size` elements."""
    return min(numba.get_num_threads(), items) if use_parallel(size) else 1


def _im2col(x: np.ndarray, weight_shape: tuple, geometry) -> np.ndarray:
    (sh, sw), (dh, dw), (ho, wo) = geometry.stride, geometry.dilation, geometry.out_size
    ((top, bottom), (left, right)), (kh, kw) = geometry.padding, weight_shape[2:]
    hp, wp = x.shape[2] + top + bottom, x.shape[3] + left + right
    cols = np.empty((x.shape[1] * kh * kw, x.shape[0] * ho * wo), x.dtype)
    num_chunks = _chunks(cols.size, x.shape[0])
    if num_chunks > 1:
        _im2col_parallel(x, kh, kw, sh, sw, dh, dw, top, left, ho, wo, hp, wp, cols, num_chunks)
    elif x.shape[0]:
        _im2col_samples(x, kh, kw, sh, sw, dh, dw, top, left, ho, wo,
                        np.zeros((x.shape[1], hp, wp), x.dtype), cols, 0, x.shape[0])
    return cols


def _col2im(cols: np.ndarray, x_shape: tuple, weight_shape: tuple, geometry) -> np.ndarray:
    (sh, sw), (dh, dw), (ho, wo) = geometry.stride, geometry.dilation, geometry.out_size
    ((top, bottom), (left, right)), (kh, kw) = geometry.padding, weight_shape[2:]
    hp, wp = x_shape[2] + top + bottom, x_shape[3] + left + right
    dx = np.empty(x_shape, cols.dtype)
    num_chunks = _chunks(cols.size, x_shape[0])
    if num_chunks > 1:
        _col2im_parallel(cols, kh, kw, sh, sw, dh, dw, top, left, ho, wo, hp, wp, dx, num_chunks)
    elif x_shape[0]:
        _col2im_samples(cols, kh, kw, sh, sw, dh, dw, top, left, ho, wo,
                        np.empty((x_shape[1], hp, wp), cols.dtype), dx, 0, x_shape[0])
    return dx


def _grouped_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """(O, C/G, kh, kw) as (G, O/G, K/G)."""
    return weight.reshape(groups, weight.shape[0] // groups, -1)


def _check(x, weight, stride, padding, dilation, groups):
    check.array("x", x, 4)
    check.array("weight", weight, 4, x.dtype)
    return check_conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride,
                   padding, dilation, groups: int) -> tuple[np.ndarray]:
    """y = conv2d(x, weight) + bias, PyTorch's cross-correlation; returns (y,).

    stride, dilation: an int or a pair; padding: an int, a pair or ((top, bottom), (left,
    right)); groups divides both channel counts.
    """
    geometry = _check(x, weight, stride, padding, dilation, groups)
    out_channels = weight.shape[0]
    check.vector("bias", bias, out_channels, x.dtype, "one per output channel")
    n, plane = x.shape[0], geometry.out_size[0] * geometry.out_size[1]
    cols = _im2col(x, weight.shape, geometry)
    t = np.matmul(_grouped_weight(weight, groups), cols.reshape(groups, -1, n * plane))
    y = np.empty((n, out_channels, plane), x.dtype)
    num_chunks = _chunks(y.size, n)
    t = t.reshape(out_channels, n, plane)
    if num_chunks > 1:
        _to_nchw_parallel(t, bias, y, num_chunks)
    else:
        _to_nchw_samples(t, bias, y, 0, n)
    return (y.reshape((n, out_channels) + geometry.out_size),)


def conv2d_backward(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, stride, padding,
                    dilation, groups: int, output_mask=(True, True, True)) -> tuple:
    """(dx, dweight, dbias) of y = conv2d(x, weight) + bias; each is None where output_mask
    (dx, dweight, dbias) says it is not wanted. dbias is summed in float64."""
    geometry = _check(x, weight, stride, padding, dilation, groups)
    want_dx, want_dweight, want_dbias = check_output_mask(output_mask)
    out_channels = weight.shape[0]
    check.array("dy", dy, 4, x.dtype)
    check.shape("dy", dy, (x.shape[0], out_channels) + geometry.out_size,
                "the shape of the forward output")
    n, plane = x.shape[0], geometry.out_size[0] * geometry.out_size[1]
    g = np.empty((out_channels, n, plane), x.dtype)
    row_sums = np.empty(out_channels) if want_dbias else None
    dy3 = dy.reshape(n, out_channels, plane)
    num_chunks = _chunks(g.size, out_channels)
    if num_chunks > 1:
        _to_channels_first_parallel(dy3, g, row_sums, num_chunks)
    else:
        _to_channels_first(dy3, g, row_sums, 0, out_channels)
    g = g.reshape(groups, out_channels // groups, n * plane)
    dx = dweight = None
    if want_dweight:
        cols = _im2col(x, weight.shape, geometry).reshape(groups, -1, n * plane)
        dweight = np.matmul(g, cols.transpose(0, 2, 1)).reshape(weight.shape)
    if want_dx:
        dcols = np.matmul(_grouped_weight(weight, groups).transpose(0, 2, 1), g)
        dx = _col2im(dcols.reshape(-1, n * plane), x.shape, weight.shape, geometry)
    dbias = row_sums.astype(x.dtype) if want_dbias else None
    return dx, dweight, dbias
