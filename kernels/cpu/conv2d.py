"""conv2d forward and backward: im2col and Numba col2im around BLAS matrix products.

x (N, C, H, W), weight (O, C/G, kh, kw) with G groups, y (N, O, Ho, Wo); K = C·kh·kw rows
of cols, L = N·Ho·Wo columns, group g owning rows [g·K/G, (g+1)·K/G) and output channels
[g·O/G, (g+1)·O/G):

    forward:  cols (K, L) = im2col(x);  t = w (G, O/G, K/G) @ cols;  y = t as NCHW + bias
    backward: g (O, L) = dy as (O, L), dbias = its row sums (float64, in the same pass)
              dweight = g @ cols.T (forward's cols, or im2col again), computed as
                        (cols @ g.T).T when K/G >= 16: with OpenBLAS on one thread that was
                        1.13-1.41x faster at 7 of 8 measured layers with K >= 27 (0.81x at
                        K = 288 with only 128 columns; 0.82x at K = 9, which keeps g @ cols.T)
              or, for K/G <= DIRECT_MAX_ROWS and planes of at least DIRECT_MIN_PLANE
              outputs (a first layer), directly from dy and cols with dbias, no g and no
              product (below, with what it measured)
              dx = col2im(w.T @ g)

The products are NumPy matmuls in x's dtype (float32 stays float32, as PyTorch's), written
into pooled buffers (kernels/cpu/buffers.py: a fresh 14 MB cols faults in its pages on every
call, which cost as much as filling it). The Numba loops split over output channels
(transposes) or input channels (im2col, col2im), so no two threads write one element.
`output_mask` skips what is not wanted: without dx neither w.T @ g nor col2im runs (a first
layer's input needs no gradient).

im2col and col2im move rows of Wo elements (14 at MNIST's second layer, 2 at the digits
CNN's last), so what a row or a plane costs besides its elements decides their speed. Inner
loops index views with the loop counter from 0: with any other index Numba's negative-index
wrap-around stays in the loop and LLVM does not vectorise it (measured 3-4x slower). With
stride 1 and Wo == W ("same" padding, the usual case) a tap's valid output rows read one
contiguous run of the input plane, shifted: one run per tap and sample is copied (im2col) or
added (col2im) between flat views of the whole arrays, and the few wrapped elements at the
row ends are zeroed. Measured against the previous NumPy version (strided-view copy,
per-row col2im), min of 40 calls, float32 3x3 same padding: (64, 32, 14, 14) im2col 2.4 ->
1.2 ms, col2im 3.6 -> 1.1 ms; (32, 3, 32, 32) 0.40 -> 0.22 and 0.82 -> 0.24 ms;
(32, 32, 2, 2) im2col 0.29 -> 0.19 ms, col2im 0.09 -> 0.14 ms (the one case that lost).
Planes of at most SMALL_PLANE = 16 outputs (the digits CNN's 4x4 and 2x2) skip all that: one
gather or scatter-add per element through a per-tap index table (_im2col_small).

Tried and measured (2 cores, shared and busy machine, so ratios only): NumPy's copy of the
strided windows view as im2col (the previous version: 2-3x slower than these loops); one
batched matmul per sample ((O, K) @ (N, K, Ho·Wo), NCHW out with no transpose) 1.4x slower
than one GEMM at 32->64 channels; a direct convolution loop for one input channel 10x slower
than im2col + GEMM; padding the input first so that the loops need no bounds (no faster once
the pad is paid); computing outputs on the padded grid so that im2col is one run per plane
(5-10 % faster than the NumPy version, less than the flat runs, for Wp/Wo = 16/14 more GEMM
work at 14x14, and garbage columns to keep out of dweight); np.dot inside a prange makes
OpenBLAS print "Detect OpenMP Loop and this application may hang" (its threads nest inside
Numba's), so every product is called from Python, between the parallel loops.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu import buffers
from kernels.cpu.stats import (
    chunk_bounds,
    jit,
    merge_partials,
    new_partials,
    parallel_jit,
    reduction_jit,
    use_parallel,
)
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
def _tap_ranges(tap, kh, kw, sh, sw, dh, dw, top, left, ho, wo, height, width):
    """What tap (i, j) of the kernel reads, for im2col and its adjoint col2im alike: the row
    offset i·dh - top and column offset j·dw - left, the valid output columns [lo, hi) and
    rows [row_lo, row_hi), and [first, last), the flat run of a plane those rows span when
    stride is 1 and Wo == W (its first and last elements trimmed where they would leave the
    plane)."""
    i, j = tap // kw, tap % kw
    row_offset, offset = i * dh - top, j * dw - left
    lo, hi = _valid_range(wo, sw, offset, width)
    row_lo, row_hi = _valid_range(ho, sh, row_offset, height)
    first, last = row_lo * width + lo, row_hi * width - (wo - hi)
    return row_offset, offset, lo, hi, row_lo, row_hi, first, last


@jit
def _fill_zero(run):
    for q in range(run.size):
        run[q] = 0


@jit
def _zero_outside(flat, start, width, row_lo, row_hi, lo, hi):
    """The columns [0, lo) and [hi, width) of rows [row_lo, row_hi) of the (rows, width)
    plane that starts at flat[start]: one or two elements per row, written one at a time (a
    loop per row became a memset call per row, which doubled im2col's time)."""
    for oy in range(row_lo, row_hi):
        for ox in range(lo):
            flat[start + oy * width + ox] = 0
        for ox in range(hi, width):
            flat[start + oy * width + ox] = 0


# Planes of at most this many outputs take the gather loops below: per (channel, tap, sample)
# the view loops pay ~30 ns of views and range arithmetic, more than 16 elements cost.
SMALL_PLANE = 16


@jit
def _tap_table(kh, kw, sh, sw, dh, dw, top, left, ho, wo, height, width):
    """table[tap, oy·Wo + ox]: the flat input-plane index that output (oy, ox) of tap (i, j)
    reads, or -1 where it reads padding (the valid ranges are _tap_ranges', as for the view
    loops)."""
    table = np.full((kh * kw, ho * wo), -1, np.int64)
    for tap in range(kh * kw):
        row_offset, offset, lo, hi, row_lo, row_hi, _, _ = _tap_ranges(
            tap, kh, kw, sh, sw, dh, dw, top, left, ho, wo, height, width)
        for oy in range(row_lo, row_hi):
            for ox in range(lo, hi):
                table[tap, oy * wo + ox] = (oy * sh + row_offset) * width + ox * sw + offset
    return table


@jit
def _im2col_small(x, kh, kw, sh, sw, dh, dw, top, left, cols, start, stop):
    """_im2col_channels for small planes: one gather through _tap_table per element, flat
    indices, no views (measured at (32, 32, 2, 2): 155 -> 40 us; (32, 16, 4, 4): 94 -> 65 us;
    slower from 8x8 planes on)."""
    samples, channels, height, width = x.shape
    ho, wo = cols.shape[2], cols.shape[3]
    table = _tap_table(kh, kw, sh, sw, dh, dw, top, left, ho, wo, height, width)
    taps, plane = kh * kw, ho * wo
    x_flat, cols_flat = x.reshape(-1), cols.reshape(-1)
    for c in range(start, stop):
        for tap in range(taps):
            out = (c * taps + tap) * samples * plane
            for n in range(samples):
                read = (n * channels + c) * height * width
                for s in range(plane):
                    at = table[tap, s]
                    cols_flat[out + n * plane + s] = x_flat[read + at] if at >= 0 else 0


@jit
def _col2im_small(cols, kh, kw, sh, sw, dh, dw, top, left, dx, start, stop):
    """_col2im_channels for small planes: the adjoint of _im2col_small (a scatter-add through
    the same table; (32, 32, 2, 2): 112 -> 44 us)."""
    samples, channels, height, width = dx.shape
    ho, wo = cols.shape[2], cols.shape[3]
    table = _tap_table(kh, kw, sh, sw, dh, dw, top, left, ho, wo, height, width)
    taps, plane = kh * kw, ho * wo
    cols_flat, dx_flat = cols.reshape(-1), dx.reshape(-1)
    for c in range(start, stop):
        for n in range(samples):
            read = (n * channels + c) * height * width
            for q in range(height * width):
                dx_flat[read + q] = 0
            for tap in range(taps):
                out = ((c * taps + tap) * samples + n) * plane
                for s in range(plane):
                    at = table[tap, s]
                    if at >= 0:
                        dx_flat[read + at] += cols_flat[out + s]


@jit
def _im2col_channels(x, kh, kw, sh, sw, dh, dw, top, left, cols, start, stop):
    """cols[c·kh·kw + i·kw + j, n, oy, ox] = x[n, c, oy·sh + i·dh - top, ox·sw + j·dw - left]
    (0 in the padding) for input channels [start, stop); cols is (K, N, Ho, Wo).

    Stride 1 with Wo == W (same padding): the valid rows of a tap read one run of the input
    plane, shifted (_tap_ranges), so each (channel, tap, sample) is one copy between flat
    views, and the wrapped elements at the row ends are zeroed after."""
    samples, channels, height, width = x.shape
    ho, wo = cols.shape[2], cols.shape[3]
    if ho * wo <= SMALL_PLANE:
        _im2col_small(x, kh, kw, sh, sw, dh, dw, top, left, cols, start, stop)
        return
    flat = sw == 1 and wo == width
    x_flat, cols_flat = x.reshape(-1), cols.reshape(-1)
    for c in range(start, stop):
        for tap in range(kh * kw):
            row_offset, offset, lo, hi, row_lo, row_hi, first, last = _tap_ranges(
                tap, kh, kw, sh, sw, dh, dw, top, left, ho, wo, height, width)
            for n in range(samples):
                out = ((c * kh * kw + tap) * samples + n) * ho * wo
                _fill_zero(cols_flat[out:out + row_lo * wo])
                _fill_zero(cols_flat[out + row_hi * wo:out + ho * wo])
                if flat:
                    read = (n * channels + c) * height * width + row_offset * width + offset
                    run, valid = cols_flat[out + first:out + last], x_flat[read + first:read + last]
                    for q in range(last - first):
                        run[q] = valid[q]
                else:
                    plane = cols[c * kh * kw + tap, n]
                    for oy in range(row_lo, row_hi):
                        row, target = x[n, c, oy * sh + row_offset], plane[oy]
                        if sw == 1:
                            valid, run = row[lo + offset:hi + offset], target[lo:hi]
                            for q in range(hi - lo):
                                run[q] = valid[q]
                        else:
                            for ox in range(lo, hi):
                                target[ox] = row[ox * sw + offset]
                # after the copy: the flat run wrote wrapped neighbours into these columns
                _zero_outside(cols_flat, out, wo, row_lo, row_hi, lo, hi)


@parallel_jit
def _im2col_parallel(x, kh, kw, sh, sw, dh, dw, top, left, cols, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[1], num_chunks, chunk)
        _im2col_channels(x, kh, kw, sh, sw, dh, dw, top, left, cols, start, stop)


@jit
def _col2im_channels(cols, kh, kw, sh, sw, dh, dw, top, left, dx, start, stop):
    """The adjoint of _im2col_channels, for input channels [start, stop): dx[n, c] is the sum
    of what channel c's kh·kw rows of cols (K, N, Ho, Wo) read from it. In the flat case the
    entries of cols that read padding are zeroed first (cols is scratch), so that one run
    adds them as zeros."""
    samples, channels, height, width = dx.shape
    ho, wo = cols.shape[2], cols.shape[3]
    if ho * wo <= SMALL_PLANE:
        _col2im_small(cols, kh, kw, sh, sw, dh, dw, top, left, dx, start, stop)
        return
    flat = sw == 1 and wo == width
    cols_flat, dx_flat = cols.reshape(-1), dx.reshape(-1)
    for c in range(start, stop):
        for n in range(samples):
            plane_start = (n * channels + c) * height * width
            _fill_zero(dx_flat[plane_start:plane_start + height * width])
        for tap in range(kh * kw):
            row_offset, offset, lo, hi, row_lo, row_hi, first, last = _tap_ranges(
                tap, kh, kw, sh, sw, dh, dw, top, left, ho, wo, height, width)
            for n in range(samples):
                if flat:
                    out = ((c * kh * kw + tap) * samples + n) * ho * wo
                    _zero_outside(cols_flat, out, wo, row_lo, row_hi, lo, hi)
                    read = (n * channels + c) * height * width + row_offset * width + offset
                    run = dx_flat[read + first:read + last]
                    valid = cols_flat[out + first:out + last]
                    for q in range(last - first):
                        run[q] += valid[q]
                    continue
                source, plane = cols[c * kh * kw + tap, n], dx[n, c]
                for oy in range(row_lo, row_hi):
                    row, values = plane[oy * sh + row_offset], source[oy]
                    if sw == 1:
                        run, valid = row[lo + offset:hi + offset], values[lo:hi]
                        for q in range(hi - lo):
                            run[q] += valid[q]
                    else:
                        for ox in range(lo, hi):
                            row[ox * sw + offset] += values[ox]


@parallel_jit
def _col2im_parallel(cols, kh, kw, sh, sw, dh, dw, top, left, dx, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(dx.shape[1], num_chunks, chunk)
        _col2im_channels(cols, kh, kw, sh, sw, dh, dw, top, left, dx, start, stop)


@jit
def _to_nchw_samples(t, bias, y, start, stop):
    """y[n, o, s] = t[o, n, s] + bias[o] for n in [start, stop); t is (O, N, S)."""
    for n in range(start, stop):
        for o in range(t.shape[0]):
            shift = t.dtype.type(0) if bias is None else bias[o]
            source, target = t[o, n], y[n, o]
            for s in range(source.size):
                target[s] = source[s] + shift


@parallel_jit
def _to_nchw_parallel(t, bias, y, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(t.shape[1], num_chunks, chunk)
        _to_nchw_samples(t, bias, y, start, stop)


@reduction_jit
def _copy_and_sum(source, target):
    """target[:] = source; returns the float64 sum of source, reassociated so that it runs
    in vector lanes (a strict running sum was a 4-cycle dependency chain per element:
    1.5 ms of a 2 ms transpose at MNIST's second layer)."""
    total = 0.0
    for s in range(source.size):
        value = source[s]
        target[s] = value
        total += value
    return total


@jit
def _to_channels_first(dy, g, row_sums, start, stop):
    """g[o, n, s] = dy[n, o, s] for o in [start, stop), and row_sums[o] = sum of g[o] in
    float64 when row_sums is not None."""
    for o in range(start, stop):
        total = 0.0
        for n in range(dy.shape[0]):
            total += _copy_and_sum(dy[n, o], g[o, n])
        if row_sums is not None:
            row_sums[o] = total


@parallel_jit
def _to_channels_first_parallel(dy, g, row_sums, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(dy.shape[1], num_chunks, chunk)
        _to_channels_first(dy, g, row_sums, start, stop)


# Direct dweight for few rows of cols (K/G <= DIRECT_MAX_ROWS: a first layer's 1-4 input
# channels). g @ cols.T is then a product of 9-36 columns over a reduction as long as N·Ho·Wo,
# which OpenBLAS ran at 37-57 GFLOP/s (against 210-260 at K = 288), after a pass that only
# moved dy into g. Instead each sample's dy rows meet its cols rows directly: 2 output channels
# by 4 rows of cols per pass over a plane, 8 sums in x's dtype in vector lanes, each plane's
# sums added into float64 partials (one set per thread chunk of samples, merged in order), and
# dbias from the same pass. Measured in one process (2 threads, dweight and dbias, medians; the
# product's side includes its dy -> g pass), float32: MNIST's first layer (64, 1 -> 32, 28x28)
# 0.33-0.36 against 1.07-1.17 ms, CIFAR's (32, 3 -> 32, 32x32) 0.61 against 1.19 ms, K = 36
# 0.72 against 1.34 ms, K = 72 1.4 against 1.8 ms, but K = 144 1.3 against 0.59 ms; float64:
# K = 9 0.58-0.65 against 1.36-1.56 ms, 27 1.19 against 1.55 ms, 36 1.02 against 2.03 ms, but
# K = 72 3.6 against 2.8 ms. Planes of 64-128 outputs lost (0.57-0.69x at 32 samples of 8x8,
# 10x10, 11x11 and 8x16: their sums ran about 3x slower per element than at 12x12, which won
# 1.4x, as did every larger plane measured).
DIRECT_MAX_ROWS = 36
DIRECT_MIN_PLANE = 144


@reduction_jit
def _plane_dot(a, b):
    total = a.dtype.type(0)
    for s in range(a.size):
        total += a[s] * b[s]
    return total


@reduction_jit
def _plane_sum(a):
    total = 0.0
    for s in range(a.size):
        total += a[s]
    return total


@reduction_jit
def _plane_dots_2x4(a0, a1, b0, b1, b2, b3):
    """The 8 dot products of planes a0, a1 with b0..b3, one pass over the planes."""
    t00 = t01 = t02 = t03 = t10 = t11 = t12 = t13 = a0.dtype.type(0)
    for s in range(a0.size):
        u, v = a0[s], a1[s]
        c0, c1, c2, c3 = b0[s], b1[s], b2[s], b3[s]
        t00 += u * c0
        t01 += u * c1
        t02 += u * c2
        t03 += u * c3
        t10 += v * c0
        t11 += v * c1
        t12 += v * c2
        t13 += v * c3
    return t00, t01, t02, t03, t10, t11, t12, t13


@jit
def _weight_gradient_samples(dy, cols, groups, dweight, dbias, start, stop):
    """dweight[o, k] += sum over samples [start, stop) of dy[n, o]·cols[g·K/G + k, n], g the
    group of o; dbias[o] += sum of dy[n, o] when dbias is not None (float64 accumulators)."""
    per_group = dy.shape[1] // groups
    rows = dweight.shape[1]
    whole = rows - rows % 4
    for n in range(start, stop):
        for group in range(groups):
            first_row = group * rows
            first = group * per_group
            stop_o = first + per_group
            for o in range(first, stop_o, 2):
                if o + 1 < stop_o:
                    a0, a1 = dy[n, o], dy[n, o + 1]
                    for k in range(0, whole, 4):
                        r = first_row + k
                        t = _plane_dots_2x4(a0, a1, cols[r, n], cols[r + 1, n], cols[r + 2, n],
                                            cols[r + 3, n])
                        for j in range(4):
                            dweight[o, k + j] += t[j]
                            dweight[o + 1, k + j] += t[4 + j]
                    for k in range(whole, rows):
                        dweight[o, k] += _plane_dot(a0, cols[first_row + k, n])
                        dweight[o + 1, k] += _plane_dot(a1, cols[first_row + k, n])
                    if dbias is not None:
                        dbias[o] += _plane_sum(a0)
                        dbias[o + 1] += _plane_sum(a1)
                else:  # an odd channel count per group: the last one alone
                    for k in range(rows):
                        dweight[o, k] += _plane_dot(dy[n, o], cols[first_row + k, n])
                    if dbias is not None:
                        dbias[o] += _plane_sum(dy[n, o])


@parallel_jit
def _weight_gradient_parallel(dy, cols, groups, dweight_parts, dbias_parts, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(dy.shape[0], num_chunks, chunk)
        _weight_gradient_samples(dy, cols, groups, dweight_parts[chunk],
                                 None if dbias_parts is None else dbias_parts[chunk],
                                 start, stop)


def _direct_weight_gradient(dy3: np.ndarray, cols: np.ndarray, weight_shape: tuple,
                            groups: int, want_dbias: bool) -> tuple:
    """(dweight, float64 dbias or None) from dy (N, O, Ho·Wo) and cols (K, N·Ho·Wo)."""
    n, out_channels, plane = dy3.shape
    rows = cols.shape[0] // groups
    cols = cols.reshape(cols.shape[0], n, plane)
    num_chunks = _chunks(dy3.size, n)
    dweight_parts = new_partials(num_chunks, out_channels * rows, True)
    dbias_parts = new_partials(num_chunks, out_channels, want_dbias)
    dweight_blocks = dweight_parts.reshape(num_chunks, out_channels, rows)  # the kernel's view
    if num_chunks > 1:
        _weight_gradient_parallel(dy3, cols, groups, dweight_blocks, dbias_parts, num_chunks)
    else:
        _weight_gradient_samples(dy3, cols, groups, dweight_blocks[0],
                                 None if dbias_parts is None else dbias_parts[0], 0, n)
    return (merge_partials(dweight_parts, dy3.dtype).reshape(weight_shape),
            merge_partials(dbias_parts, np.float64))


def _chunks(size: int, items: int) -> int:
    """Threads for a loop over `items` samples or channels moving `size` elements."""
    return min(numba.get_num_threads(), items) if use_parallel(size) else 1


def _loop_arguments(weight_shape: tuple, geometry) -> tuple:
    """kh, kw, sh, sw, dh, dw, top, left: the scalars of the im2col/col2im loops."""
    ((top, _), (left, _)) = geometry.padding
    return (*weight_shape[2:], *geometry.stride, *geometry.dilation, top, left)


def _im2col(x: np.ndarray, weight_shape: tuple, geometry) -> np.ndarray:
    """cols (K, L), written row by row from the unpadded input."""
    k = x.shape[1] * weight_shape[2] * weight_shape[3]
    cols = buffers.empty((k, x.shape[0]) + geometry.out_size, x.dtype)
    loop = _loop_arguments(weight_shape, geometry)
    num_chunks = _chunks(cols.size, x.shape[1])
    if num_chunks > 1:
        _im2col_parallel(x, *loop, cols, num_chunks)
    else:
        _im2col_channels(x, *loop, cols, 0, x.shape[1])
    return cols.reshape(k, -1)


def _col2im(cols: np.ndarray, x_shape: tuple, weight_shape: tuple, geometry) -> np.ndarray:
    dx = buffers.empty(x_shape, cols.dtype)
    cols = cols.reshape((cols.shape[0], x_shape[0]) + geometry.out_size)
    loop = _loop_arguments(weight_shape, geometry)
    num_chunks = _chunks(cols.size, x_shape[1])
    if num_chunks > 1:
        _col2im_parallel(cols, *loop, dx, num_chunks)
    else:
        _col2im_channels(cols, *loop, dx, 0, x_shape[1])
    return dx


def _channels_first(dy3: np.ndarray, with_sums: bool) -> tuple:
    """g (O, N, Ho·Wo) = dy (N, O, Ho·Wo) moved channels first, and its float64 row sums
    (dbias) from the same pass when with_sums, else None."""
    out_channels = dy3.shape[1]
    g = buffers.empty((out_channels, dy3.shape[0], dy3.shape[2]), dy3.dtype)
    row_sums = np.empty(out_channels) if with_sums else None
    num_chunks = _chunks(g.size, out_channels)
    if num_chunks > 1:
        _to_channels_first_parallel(dy3, g, row_sums, num_chunks)
    else:
        _to_channels_first(dy3, g, row_sums, 0, out_channels)
    return g, row_sums


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
    t = buffers.empty((groups, out_channels // groups, n * plane), x.dtype)
    # explicit sizes, never -1: an empty batch has no size to infer one from
    np.matmul(_grouped_weight(weight, groups),
              cols.reshape(groups, cols.shape[0] // groups, n * plane), out=t)
    y = buffers.empty((n, out_channels, plane), x.dtype)
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
    cols_rows = x.shape[1] * weight.shape[2] * weight.shape[3]
    if columns is not None:
        check.array("columns", columns, 2, x.dtype)
        check.shape("columns", columns, (cols_rows, n * plane),
                    "forward's im2col of x: (C·kh·kw, N·Ho·Wo)")
    dy3 = dy.reshape(n, out_channels, plane)
    dweight = row_sums = dx = None
    direct = (want_dweight and cols_rows // groups <= DIRECT_MAX_ROWS
              and plane >= DIRECT_MIN_PLANE)
    cols = None
    if want_dweight:
        cols = _im2col(x, weight.shape, geometry) if columns is None else columns
    if direct:  # few rows of cols (a first layer): no g and no product (DIRECT_MAX_ROWS)
        dweight, row_sums = _direct_weight_gradient(dy3, cols, weight.shape, groups, want_dbias)
    if want_dx or not direct and (want_dweight or want_dbias):
        sums_here = want_dbias and not direct  # dbias from this pass, unless the direct one had it
        g, sums = _channels_first(dy3, sums_here)
        if sums_here:
            row_sums = sums
        g = g.reshape(groups, out_channels // groups, n * plane)
    if want_dweight and not direct:
        cols = cols.reshape(groups, cols_rows // groups, n * plane)
        if cols.shape[1] >= 16:  # OpenBLAS is faster at cols @ g.T than at g @ cols.T here
            dweight = np.matmul(cols, g.transpose(0, 2, 1)).transpose(0, 2, 1)
        else:
            dweight = np.matmul(g, cols.transpose(0, 2, 1))
        dweight = np.ascontiguousarray(dweight).reshape(weight.shape)
    if want_dx:
        dcols = buffers.empty((groups, cols_rows // groups, n * plane), x.dtype)
        np.matmul(_grouped_weight(weight, groups).transpose(0, 2, 1), g, out=dcols)
        dx = _col2im(dcols.reshape(cols_rows, n * plane), x.shape, weight.shape, geometry)
    dbias = row_sums.astype(x.dtype) if want_dbias else None
    return dx, dweight, dbias
