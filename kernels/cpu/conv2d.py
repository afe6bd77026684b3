"""conv2d forward and backward: im2col and Numba col2im around BLAS matrix products.

x (N, C, H, W), weight (O, C/G, kh, kw) with G groups, y (N, O, Ho, Wo); K = C·kh·kw rows
of cols, L = N·Ho·Wo columns, group g owning rows [g·K/G, (g+1)·K/G) and output channels
[g·O/G, (g+1)·O/G):

    forward:  cols (K, L) = im2col(x);  t = w (G, O/G, K/G) @ cols;  y = t as NCHW + bias
    backward: g (O, L) = dy as (O, L), dbias = its row sums (float64, in the same pass)
              dweight = g @ cols.T (forward's cols, or im2col again)
              dx = col2im(w.T @ g)

The products are NumPy matmuls in x's dtype (float32 stays float32, as PyTorch's). The Numba
loops split over output channels (transposes) or input channels (col2im), so no two threads
write one element. `output_mask` skips what is not wanted: without dx neither w.T @ g nor
col2im runs (a first layer's input needs no gradient).

Tried and measured (2 cores, shared and busy machine, so ratios only): a Numba im2col loop,
per sample or per row of cols, was 1.5-3x slower than NumPy's copy of the strided windows
view, which is kept; one batched matmul per sample ((O, K) @ (N, K, Ho·Wo), NCHW out with no
transpose) 1.4x slower than one GEMM at 32->64 channels; a direct convolution loop for one
input channel 10x slower than im2col + GEMM; np.dot inside a prange makes OpenBLAS print
"Detect OpenMP Loop and this application may hang" (its threads nest inside Numba's), so
every product is called from Python, between the parallel loops.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.lib.stride_tricks import as_strided

from kernels.cpu.stats import chunk_bounds, jit, parallel_jit, use_parallel
from kernels.validation import HOST as check
from kernels.validation import check_conv_geometry, check_output_mask


@jit
def _valid_range(size_out, stride, offset, size_in):
    """[lo, hi): the outputs o with 0 <= o·stride + offset < size_in (the others read padding)."""
    lo = 0 if offset >= 0 else (stride - 1 - offset) // stride
    last = size_in - 1 - offset
    hi = 0 if last < 0 else min(size_out, last // stride + 1)
    return lo, max(lo, hi)


@jit
def _col2im_channels(cols, kh, kw, sh, sw, dh, dw, top, left, ho, wo, dx, start, stop):
    """The adjoint of _im2col_rows, for input channels [start, stop): dx[n, c] is the sum of
    what channel c's kh·kw rows of cols read from it."""
    height, width = dx.shape[2], dx.shape[3]
    for c in range(start, stop):
        dx[:, c] = 0
        for tap in range(kh * kw):
            i, j = tap // kw, tap % kw
            offset = j * dw - left
            lo, hi = _valid_range(wo, sw, offset, width)
            source = cols[c * kh * kw + tap]
            k = 0
            for n in range(dx.shape[0]):
                for oy in range(ho):
                    iy = oy * sh + i * dh - top
                    if 0 <= iy < height:
                        target = dx[n, c, iy]
                        if sw == 1:
                            for ox in range(lo, hi):
                                target[ox + offset] += source[k + ox]
                        else:
                            for ox in range(lo, hi):
                                target[ox * sw + offset] += source[k + ox]
                    k += wo


@parallel_jit
def _col2im_parallel(cols, kh, kw, sh, sw, dh, dw, top, left, ho, wo, dx, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(dx.shape[1], num_chunks, chunk)
        _col2im_channels(cols, kh, kw, sh, sw, dh, dw, top, left, ho, wo, dx, start, stop)


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


def windows(padded: np.ndarray, kernel: tuple, stride: tuple, dilation: tuple,
            out_size: tuple) -> np.ndarray:
    """A read-only (N, C, kh, kw, Ho, Wo) view of the windows of a padded input:
    view[n, c, i, j, y, x] = padded[n, c, y·sh + i·dh, x·sw + j·dw]."""
    sn, sc, sh, sw = padded.strides
    shape = padded.shape[:2] + tuple(kernel) + tuple(out_size)
    strides = (sn, sc, sh * dilation[0], sw * dilation[1], sh * stride[0], sw * stride[1])
    return as_strided(padded, shape, strides, writeable=False)


def _im2col(x: np.ndarray, weight_shape: tuple, geometry) -> np.ndarray:
    """cols (K, L) as one NumPy copy of the windows view (measured faster than a Numba loop:
    the copy streams through cols in order)."""
    padded = np.pad(x, ((0, 0), (0, 0)) + geometry.padding) if np.any(geometry.padding) else x
    view = windows(padded, weight_shape[2:], geometry.stride, geometry.dilation,
                   geometry.out_size).transpose(1, 2, 3, 0, 4, 5)  # (C, kh, kw, N, Ho, Wo)
    cols = np.empty(view.shape, x.dtype)
    np.copyto(cols, view)
    return cols.reshape(x.shape[1] * weight_shape[2] * weight_shape[3], -1)


def _col2im(cols: np.ndarray, x_shape: tuple, weight_shape: tuple, geometry) -> np.ndarray:
    (sh, sw), (dh, dw), (ho, wo) = geometry.stride, geometry.dilation, geometry.out_size
    ((top, _), (left, _)), (kh, kw) = geometry.padding, weight_shape[2:]
    dx = np.empty(x_shape, cols.dtype)
    num_chunks = _chunks(cols.size, x_shape[1])
    if num_chunks > 1:
        _col2im_parallel(cols, kh, kw, sh, sw, dh, dw, top, left, ho, wo, dx, num_chunks)
    else:
        _col2im_channels(cols, kh, kw, sh, sw, dh, dw, top, left, ho, wo, dx, 0, x_shape[1])
    return dx


def _grouped_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """(O, C/G, kh, kw) as (G, O/G, K/G)."""
    return weight.reshape(groups, weight.shape[0] // groups, -1)


def _check(x, weight, stride, padding, dilation, groups):
    check.array("x", x, 4)
    check.array("weight", weight, 4, x.dtype)
    return check_conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride,
                   padding, dilation, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """y = conv2d(x, weight) + bias, PyTorch's cross-correlation; returns (y, cols), cols
    the (C·kh·kw, N·Ho·Wo) im2col matrix of x, which backward's dweight reuses.

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
    return y.reshape((n, out_channels) + geometry.out_size), cols


def conv2d_backward(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, stride, padding,
                    dilation, groups: int, output_mask=(True, True, True),
                    columns: np.ndarray | None = None) -> tuple:
    """(dx, dweight, dbias) of y = conv2d(x, weight) + bias; each is None where output_mask
    (dx, dweight, dbias) says it is not wanted. dbias is summed in float64. columns: forward's
    cols (the im2col of x), or None to recompute them (only dweight reads them)."""
    geometry = _check(x, weight, stride, padding, dilation, groups)
    want_dx, want_dweight, want_dbias = check_output_mask(output_mask)
    out_channels = weight.shape[0]
    check.array("dy", dy, 4, x.dtype)
    check.shape("dy", dy, (x.shape[0], out_channels) + geometry.out_size,
                "the shape of the forward output")
    n, plane = x.shape[0], geometry.out_size[0] * geometry.out_size[1]
    if columns is not None:
        check.array("columns", columns, 2, x.dtype)
        check.shape("columns", columns, (x.shape[1] * weight.shape[2] * weight.shape[3], n * plane),
                    "forward's im2col of x: (C·kh·kw, N·Ho·Wo)")
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
        cols = _im2col(x, weight.shape, geometry) if columns is None else columns
        cols = cols.reshape(groups, -1, n * plane)
        dweight = np.matmul(g, cols.transpose(0, 2, 1)).reshape(weight.shape)
    if want_dx:
        dcols = np.matmul(_grouped_weight(weight, groups).transpose(0, 2, 1), g)
        dx = _col2im(dcols.reshape(-1, n * plane), x.shape, weight.shape, geometry)
    dbias = row_sums.astype(x.dtype) if want_dbias else None
    return dx, dweight, dbias
