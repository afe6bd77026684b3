"""Float64 NumPy reference of every kernel (normalizations, 2-d pooling): the spec (conv2d's
is in kernels/reference_conv.py, imported here).

Written to be read, not to be fast. Every function has the name and signature that
kernels/api.py declares, as in `kernels.cpu` and `kernels.cuda`; results are always
float64, whatever the input dtype. A backward with param_grads=False returns None for
dweight and dbias, as the kernels do.

Notation (kernels/README.md): a *set* is what one mean and variance are taken over,
mu = mean(set), var = mean((x - mu)^2) (biased), r = 1/sqrt(var + eps),
xhat = (x - mu)·r, y = gamma·xhat + beta, g = dy·gamma, n = elements per set.
Statistics of an empty set are NaN, as in PyTorch.
"""

from __future__ import annotations

import numpy as np

from kernels import pooling
from kernels.reference_activation import (  # noqa: F401  (re-exported)
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
)
from kernels.reference_conv import conv2d_backward, conv2d_forward  # noqa: F401
from kernels.reference_loss import (  # noqa: F401  (the loss kernels' spec, re-exported)
    cross_entropy_backward,
    cross_entropy_forward,
    log_softmax_backward,
    log_softmax_forward,
)


def _as64(array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else np.asarray(array, dtype=np.float64)


def _mean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean over `axis` that is NaN for an empty axis, without NumPy's warning."""
    if values.shape[axis] == 0:
        return np.full(np.delete(values.shape, axis), np.nan)
    return values.mean(axis=axis)


def _moments(sets: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and r = 1/sqrt(var + eps) of each row of `sets`, two-pass."""
    mean = _mean(sets, axis=1)
    var = _mean((sets - mean[:, None]) ** 2, axis=1)
    return mean, 1.0 / np.sqrt(var + eps)


def _ones_if_none(array: np.ndarray | None, size: int) -> np.ndarray:
    return np.ones(size) if array is None else array


def _zeros_if_none(array: np.ndarray | None, size: int) -> np.ndarray:
    return np.zeros(size) if array is None else array


def _masked(dx: np.ndarray, param_grads: bool, *grads: np.ndarray) -> tuple:
    """(dx, *grads), or (dx, None, ...) when the parameter gradients are not wanted."""
    return (dx, *(grads if param_grads else (None,) * len(grads)))


def layer_norm_forward(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LayerNorm over each row of x (rows, cols).

    mu, var per row; y = (x - mu)·r·weight + bias, r = 1/sqrt(var + eps).
    Returns (y, mean, inv_std) with mean, inv_std of shape (rows,).
    """
    x = _as64(x)
    cols = x.shape[1]
    mean, inv_std = _moments(x, eps)
    xhat = (x - mean[:, None]) * inv_std[:, None]
    y = xhat * _ones_if_none(_as64(weight), cols) + _zeros_if_none(_as64(bias), cols)
    return y, mean, inv_std


def layer_norm_backward(
    dy: np.ndarray, x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray,
    weight: np.ndarray | None, param_grads: bool = True,
) -> tuple:
    """dx = (r/n)·(n·g - sum(g) - xhat·sum(g·xhat)) per row, g = dy·weight;
    dweight = sum over rows of dy·xhat; dbias = sum over rows of dy."""
    dy, x, mean, inv_std = map(_as64, (dy, x, mean, inv_std))
    cols = x.shape[1]
    xhat = (x - mean[:, None]) * inv_std[:, None]
    g = dy * _ones_if_none(_as64(weight), cols)
    sum_g = g.sum(axis=1, keepdims=True)
    sum_g_xhat = (g * xhat).sum(axis=1, keepdims=True)
    dx = inv_std[:, None] / cols * (cols * g - sum_g - xhat * sum_g_xhat) if cols else g
    return _masked(dx, param_grads, (dy * xhat).sum(axis=0), dy.sum(axis=0))


def rms_norm_forward(
    x: np.ndarray, weight: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """RMSNorm over each row: r = 1/sqrt(mean(x^2) + eps), y = x·r·weight.
    Returns (y, inv_rms) with inv_rms of shape (rows,)."""
    x = _as64(x)
    inv_rms = 1.0 / np.sqrt(_mean(x**2, axis=1) + eps)
    y = x * inv_rms[:, None] * _ones_if_none(_as64(weight), x.shape[1])
    return y, inv_rms


def rms_norm_backward(
    dy: np.ndarray, x: np.ndarray, inv_rms: np.ndarray, weight: np.ndarray | None,
    param_grads: bool = True,
) -> tuple:
    """dx = r·(g - xhat·mean(g·xhat)) per row, xhat = x·r, g = dy·weight;
    dweight = sum over rows of dy·xhat."""
    dy, x, inv_rms = map(_as64, (dy, x, inv_rms))
    xhat = x * inv_rms[:, None]
    g = dy * _ones_if_none(_as64(weight), x.shape[1])
    mean_g_xhat = _mean(g * xhat, axis=1)[:, None] if x.shape[1] else 0.0
    dx = inv_rms[:, None] * (g - xhat * mean_g_xhat)
    return _masked(dx, param_grads, (dy * xhat).sum(axis=0))


def group_norm_forward(
    x: np.ndarray, num_groups: int, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """GroupNorm of x (N, C, S): one set per (sample, group) of C/num_groups
    channels times S positions; y = xhat·weight[c] + bias[c] (per channel).
    Returns (y, mean, inv_std, var), each statistic of shape (N, num_groups), var the
    biased variance. InstanceNorm is num_groups == C."""
    x = _as64(x)
    batch, channels, spatial = x.shape
    sets = x.reshape(batch * num_groups, channels // num_groups * spatial)
    mean, inv_std = _moments(sets, eps)
    var = _mean((sets - mean[:, None]) ** 2, axis=1)
    xhat = ((sets - mean[:, None]) * inv_std[:, None]).reshape(x.shape)
    weight = _ones_if_none(_as64(weight), channels)[:, None]
    bias = _zeros_if_none(_as64(bias), channels)[:, None]
    return (
        xhat * weight + bias,
        mean.reshape(batch, num_groups),
        inv_std.reshape(batch, num_groups),
        var.reshape(batch, num_groups),
    )


def group_norm_backward(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    num_groups: int,
    weight: np.ndarray | None,
    param_grads: bool = True,
) -> tuple:
    """Per (sample, group) set of n elements, g = dy·weight[c]:
    dx = (r/n)·(n·g - sum(g) - xhat·sum(g·xhat));
    dweight[c] = sum over N, S of dy·xhat; dbias[c] = sum over N, S of dy."""
    dy, x, mean, inv_std = map(_as64, (dy, x, mean, inv_std))
    batch, channels, spatial = x.shape
    n = (channels // num_groups) * spatial if num_groups else 0
    mean_per_channel = np.repeat(mean, channels // num_groups, axis=1)[:, :, None]
    inv_std_per_channel = np.repeat(inv_std, channels // num_groups, axis=1)[:, :, None]
    xhat = (x - mean_per_channel) * inv_std_per_channel
    g = dy * _ones_if_none(_as64(weight), channels)[:, None]
    group_shape = (batch, num_groups, n)
    sum_g = g.reshape(group_shape).sum(axis=2)
    sum_g_xhat = (g * xhat).reshape(group_shape).sum(axis=2)
    per_channel = channels // num_groups
    sum_g = np.repeat(sum_g, per_channel, axis=1)[:, :, None]
    sum_g_xhat = np.repeat(sum_g_xhat, per_channel, axis=1)[:, :, None]
    dx = inv_std_per_channel / n * (n * g - sum_g - xhat * sum_g_xhat) if n else g
    return _masked(dx, param_grads, (dy * xhat).sum(axis=(0, 2)), dy.sum(axis=(0, 2)))


def batch_norm_forward_train(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BatchNorm (training) of x (N, C, S): one set per channel over N and S.
    y = xhat·weight[c] + bias[c]. Returns (y, mean, inv_std, var), each
    statistic of shape (C,), var the biased variance."""
    x = _as64(x)
    channels = x.shape[1]
    sets = x.transpose(1, 0, 2).reshape(channels, -1)
    mean, inv_std = _moments(sets, eps)
    var = _mean((sets - mean[:, None]) ** 2, axis=1)
    xhat = (x - mean[:, None]) * inv_std[:, None]
    weight = _ones_if_none(_as64(weight), channels)[:, None]
    bias = _zeros_if_none(_as64(bias), channels)[:, None]
    return xhat * weight + bias, mean, inv_std, var


def batch_norm_forward_eval(
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    eps: float,
) -> np.ndarray:
    """BatchNorm (eval): y = a_c·x + b_c, a_c = weight·rsqrt(running_var + eps),
    b_c = bias - a_c·running_mean."""
    x, running_mean, running_var = map(_as64, (x, running_mean, running_var))
    channels = x.shape[1]
    scale = _ones_if_none(_as64(weight), channels) / np.sqrt(running_var + eps)
    shift = _zeros_if_none(_as64(bias), channels) - scale * running_mean
    return x * scale[:, None] + shift[:, None]


def batch_norm_backward(
    dy: np.ndarray, x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray,
    weight: np.ndarray | None, param_grads: bool = True,
) -> tuple:
    """BatchNorm (training) backward, per channel set of n = N·S elements:
    dx = (weight·r/n)·(n·dy - sum(dy) - xhat·sum(dy·xhat));
    dweight = sum(dy·xhat); dbias = sum(dy)."""
    dy, x, mean, inv_std = map(_as64, (dy, x, mean, inv_std))
    batch, channels, spatial = x.shape
    n = batch * spatial
    xhat = (x - mean[:, None]) * inv_std[:, None]
    dweight = (dy * xhat).sum(axis=(0, 2))
    dbias = dy.sum(axis=(0, 2))
    scale = (_ones_if_none(_as64(weight), channels) * inv_std)[:, None]
    dx = scale / n * (n * dy - dbias[:, None] - xhat * dweight[:, None]) if n else dy
    return _masked(dx, param_grads, dweight, dbias)


def batch_norm_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance of x (N, C, S) over N and S (n = N·S);
    zeros for an empty x (no elements: it merges with other sets as nothing)."""
    x = _as64(x)
    channels = x.shape[1]
    if x.size == 0:
        return np.zeros(channels), np.zeros(channels)
    sets = x.transpose(1, 0, 2).reshape(channels, -1)
    mean = sets.mean(axis=1)
    return mean, ((sets - mean[:, None]) ** 2).mean(axis=1)


def batch_norm_apply(
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
) -> np.ndarray:
    """y = (x - mean_c)·inv_std_c·weight_c + bias_c, given per-channel statistics."""
    x, mean, inv_std = map(_as64, (x, mean, inv_std))
    channels = x.shape[1]
    xhat = (x - mean[:, None]) * inv_std[:, None]
    return (xhat * _ones_if_none(_as64(weight), channels)[:, None]
            + _zeros_if_none(_as64(bias), channels)[:, None])


def batch_norm_gradient_sums(
    dy: np.ndarray, x: np.ndarray, mean: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel sum(dy) and sum(dy·(x - mean)) over N and S."""
    dy, x, mean = map(_as64, (dy, x, mean))
    return dy.sum(axis=(0, 2)), (dy * (x - mean[:, None])).sum(axis=(0, 2))


def batch_norm_input_gradient(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    weight: np.ndarray | None,
    sum_dy: np.ndarray,
    sum_dy_xmu: np.ndarray,
    count: int,
) -> np.ndarray:
    """dx = weight·r·(dy - sum_dy/count - (x - mean)·r²·sum_dy_xmu/count) per channel, from
    sums over `count` elements per channel (which may span other inputs than x)."""
    dy, x, mean, inv_std, sum_dy, sum_dy_xmu = map(
        _as64, (dy, x, mean, inv_std, sum_dy, sum_dy_xmu))
    channels = x.shape[1]
    r = inv_std[:, None]
    scale = (_ones_if_none(_as64(weight), channels))[:, None] * r
    return scale * (dy - sum_dy[:, None] / count
                    - (x - mean[:, None]) * r * r * sum_dy_xmu[:, None] / count)


def batch_norm_backward_eval(
    dy: np.ndarray,
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    weight: np.ndarray | None,
    eps: float,
    param_grads: bool = True,
) -> tuple:
    """BatchNorm (eval) backward of the per-channel affine map:
    dx = dy·a_c, a_c = weight·rsqrt(running_var + eps);
    dweight = sum(dy·(x - running_mean))·rsqrt(running_var + eps); dbias = sum(dy)."""
    dy, x, running_mean, running_var = map(_as64, (dy, x, running_mean, running_var))
    channels = x.shape[1]
    inv_std = 1.0 / np.sqrt(running_var + eps)
    scale = _ones_if_none(_as64(weight), channels) * inv_std
    xhat = (x - running_mean[:, None]) * inv_std[:, None]
    return _masked(dy * scale[:, None], param_grads, (dy * xhat).sum(axis=(0, 2)),
                   dy.sum(axis=(0, 2)))



def _channel_window_sums(values: np.ndarray, before: int, after: int) -> np.ndarray:
    """out[:, c] = sum of values[:, c - before : c + after + 1] (clipped) for (N, C, S)."""
    channels = values.shape[1]
    out = np.zeros_like(values)
    for c in range(channels):
        out[:, c] = values[:, max(0, c - before):min(channels, c + after + 1)].sum(axis=1)
    return out


def local_response_norm_forward(
    x: np.ndarray, size: int, alpha: float, beta: float, k: float
) -> tuple[np.ndarray, np.ndarray]:
    """LocalResponseNorm of x (N, C, S) across channels (AlexNet):
    scale[c] = k + alpha/size · sum of x[c']^2 over c' in [c - size//2, c + (size-1)//2]
    (channels outside [0, C) count as zeros), y = x · scale^-beta.
    Returns (y, scale), scale of x's shape."""
    x = _as64(x)
    scale = k + alpha / size * _channel_window_sums(x * x, size // 2, (size - 1) // 2)
    return x * scale**-beta, scale


def local_response_norm_backward(
    dy: np.ndarray, x: np.ndarray, scale: np.ndarray, size: int, alpha: float, beta: float
) -> np.ndarray:
    """dx[j] = dy[j]·scale[j]^-beta - (2·alpha·beta/size)·x[j]·sum over the c whose window
    holds j (c in [j - (size-1)//2, j + size//2]) of dy[c]·x[c]·scale[c]^(-beta-1)."""
    dy, x, scale = map(_as64, (dy, x, scale))
    t = dy * x * scale ** (-beta - 1)
    return dy * scale**-beta - 2 * alpha * beta / size * x * _channel_window_sums(
        t, (size - 1) // 2, size // 2)


def _renorm_corrections(mean, var, running_mean, running_var, eps, rmax, dmax):
    """Ioffe (2017): r = clip(sigma_B / sigma, 1/rmax, rmax), d = clip((mu_B - mu) / sigma,
    -dmax, dmax), sigma_B = sqrt(var + eps), mu and sigma = sqrt(running_var + eps) the running
    estimates."""
    sigma = np.sqrt(_as64(running_var) + eps)
    r = np.clip(np.sqrt(var + eps) / sigma, 1.0 / rmax, rmax)
    d = np.clip((mean - _as64(running_mean)) / sigma, -dmax, dmax)
    return r, d


def batch_renorm_forward_train(
    x: np.ndarray, running_mean: np.ndarray, running_var: np.ndarray,
    weight: np.ndarray | None, bias: np.ndarray | None, eps: float, rmax: float, dmax: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Batch Renormalization (training) of x (N, C, S), per channel over N and S:
    y = (xhat·r + d)·weight + bias, xhat = (x - mu_B)·rsqrt(var_B + eps), r and d from
    `_renorm_corrections` (constants for the gradient). Returns (y, mean, inv_std, var, r, d),
    each statistic (C,), var biased."""
    x = _as64(x)
    channels = x.shape[1]
    sets = x.transpose(1, 0, 2).reshape(channels, -1)
    mean, inv_std = _moments(sets, eps)
    var = _mean((sets - mean[:, None]) ** 2, axis=1)
    r, d = _renorm_corrections(mean, var, running_mean, running_var, eps, rmax, dmax)
    xhat = (x - mean[:, None]) * inv_std[:, None] * r[:, None] + d[:, None]
    weight = _ones_if_none(_as64(weight), channels)[:, None]
    bias = _zeros_if_none(_as64(bias), channels)[:, None]
    return xhat * weight + bias, mean, inv_std, var, r, d


def batch_renorm_backward(
    dy: np.ndarray, x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, r: np.ndarray,
    d: np.ndarray, weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch Renormalization (training) backward with r, d held constant (Ioffe 2017, the
    stop_gradient of Algorithm 1): with xhat = (x - mu_B)·r_B,
    dx = (weight·r·r_B/n)·(n·dy - sum(dy) - xhat·sum(dy·xhat));
    dweight = r·sum(dy·xhat) + d·sum(dy); dbias = sum(dy)."""
    dy, x, mean, inv_std, r, d = map(_as64, (dy, x, mean, inv_std, r, d))
    batch, channels, spatial = x.shape
    n = batch * spatial
    xhat = (x - mean[:, None]) * inv_std[:, None]
    sum_dy_xhat = (dy * xhat).sum(axis=(0, 2))
    dbias = dy.sum(axis=(0, 2))
    scale = (_ones_if_none(_as64(weight), channels) * r * inv_std)[:, None]
    dx = scale / n * (n * dy - dbias[:, None] - xhat * sum_dy_xhat[:, None]) if n else dy
    return dx, r * sum_dy_xhat + d * dbias, dbias


def _pool_windows(g) -> list:
    """Per output dim, the input positions of each window, before clipping to the input."""
    return [[[o * g.stride[d] - g.padding[d] + i * g.dilation[d] for i in range(g.kernel[d])]
             for o in range(g.out[d])] for d in range(2)]


def max_pool2d_forward(
    x: np.ndarray, kernel_size, stride, padding, dilation, ceil_mode: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Max over each window of x (N, C, H, W), the window's positions clipped to the input:
    the first maximum in window order wins, a NaN beats everything and the last NaN wins;
    indices are flat input-plane positions h·W + w, -1 for a window of padding only (-inf).
    Returns (y, indices), indices int64."""
    x = _as64(x)
    n, c, height, width = x.shape
    g = pooling.geometry((height, width), kernel_size, stride, padding, dilation, ceil_mode)
    rows, cols = _pool_windows(g)
    y = np.full((n, c) + g.out, -np.inf)
    indices = np.full((n, c) + g.out, -1, np.int64)
    for oh, window_rows in enumerate(rows):
        for ow, window_cols in enumerate(cols):
            for h in (h for h in window_rows if 0 <= h < height):
                for w in (w for w in window_cols if 0 <= w < width):
                    value = x[:, :, h, w]
                    first = indices[:, :, oh, ow] == -1
                    wins = first | (value > y[:, :, oh, ow]) | np.isnan(value)
                    y[:, :, oh, ow] = np.where(wins, value, y[:, :, oh, ow])
                    indices[:, :, oh, ow] = np.where(wins, h * width + w, indices[:, :, oh, ow])
    return y, indices


def max_pool2d_backward(dy: np.ndarray, indices: np.ndarray, input_size) -> np.ndarray:
    """dx (N, C, H, W): each dy added at its saved index; index -1 (no input element) is
    skipped."""
    dy = _as64(dy)
    n, c = dy.shape[:2]
    height, width = input_size
    dx = np.zeros((n * c, height * width))
    flat_dy, flat_indices = dy.reshape(n * c, -1), indices.reshape(n * c, -1)
    for p in range(n * c):
        kept = flat_indices[p] != -1
        np.add.at(dx[p], flat_indices[p][kept], flat_dy[p][kept])
    return dx.reshape(n, c, height, width)


def _avg_pool_windows(plane: tuple, kernel_size, stride, padding, ceil_mode, count_include_pad,
                      divisor_override):
    """The geometry, and per output (oh, ow) its clipped window (row slice, column slice) and
    divisor: divisor_override, else the window's size within input plus padding
    (count_include_pad) or within the input."""
    g = pooling.geometry(plane, kernel_size, stride, padding, 1, ceil_mode)
    spans = []
    for d in range(2):
        spans.append([])
        for o in range(g.out[d]):
            start = o * g.stride[d] - g.padding[d]
            stop = min(start + g.kernel[d], plane[d] + g.padding[d])
            clipped = slice(max(start, 0), min(stop, plane[d]))
            spans[d].append((clipped, stop - start if count_include_pad
                             else clipped.stop - clipped.start))
    windows = {}
    for oh, (rows, row_count) in enumerate(spans[0]):
        for ow, (cols, col_count) in enumerate(spans[1]):
            windows[oh, ow] = rows, cols, divisor_override or row_count * col_count
    return g, windows


def avg_pool2d_forward(
    x: np.ndarray, kernel_size, stride, padding, ceil_mode: bool, count_include_pad: bool,
    divisor_override: int | None
) -> np.ndarray:
    """Mean over each window of x (N, C, H, W): the sum over the window clipped to the input,
    divided by the divisor of `_avg_pool_windows`."""
    x = _as64(x)
    g, windows = _avg_pool_windows(x.shape[2:], kernel_size, stride, padding, ceil_mode,
                                   count_include_pad, divisor_override)
    y = np.empty(x.shape[:2] + g.out)
    for (oh, ow), (rows, cols, divisor) in windows.items():
        y[:, :, oh, ow] = x[:, :, rows, cols].sum(axis=(2, 3)) / divisor
    return y


def avg_pool2d_backward(
    dy: np.ndarray, input_size, kernel_size, stride, padding, ceil_mode: bool,
    count_include_pad: bool, divisor_override: int | None
) -> np.ndarray:
    """dx (N, C, H, W): each dy / divisor added over its clipped window."""
    dy = _as64(dy)
    _, windows = _avg_pool_windows(tuple(input_size), kernel_size, stride, padding, ceil_mode,
                                   count_include_pad, divisor_override)
    dx = np.zeros(dy.shape[:2] + tuple(input_size))
    for (oh, ow), (rows, cols, divisor) in windows.items():
        dx[:, :, rows, cols] += dy[:, :, oh, ow, None, None] / divisor
    return dx
from kernels.reference_optim import adam_step, sgd_step  # noqa: E402, F401  (optimizers)
