"""Batch Renormalization (Ioffe 2017, "Batch Renormalization: Towards Reducing Minibatch
Dependence in Batch-Normalized Models") of x (N, C, S): forward (training) and backward.

Per channel, with the batch statistics mu_B, sigma_B = sqrt(var_B + eps) and the running ones
mu, sigma = sqrt(running_var + eps):
    r = clip(sigma_B / sigma, 1/rmax, rmax),  d = clip((mu_B - mu) / sigma, -dmax, dmax)
    y = ((x - mu_B) / sigma_B · r + d)·weight + bias
r and d are constants for the gradient (the paper's stop_gradient), so the output is BatchNorm
with a per-channel weight·r and bias + weight·d, and the backward is BatchNorm's with weight·r
plus one correction of dweight. rmax = 1, dmax = 0 is exactly BatchNorm. Eval mode is
BatchNorm's eval (the running statistics), so it has no kernel of its own here.

The passes are BatchNorm's Numba kernels (kernels/cpu/batch_norm.py): the shifted float64
statistics pass and the per-channel affine pass; the per-channel arithmetic between them is
BatchNorm's `_finish_statistics` (in float64) and `_renorm_coefficients`, compiled.
"""

from __future__ import annotations

import numpy as np

from kernels.cpu import batch_norm, buffers
from kernels.cpu.stats import jit
from kernels.validation import HOST as check
from kernels.validation import check_eps


@jit
def _renorm_coefficients(mean, inv_std, var, offset_bn, running_mean, running_var, weight, bias,
                         eps, rmax, dmax, r, d, scale, offset):
    """From BatchNorm's float64 statistics (and its offset -centre·inv_std of the apply pass
    y = (x - shift)·scale + offset, weight 1 and bias 0): r, d, and the renormalized pass's
    scale inv_std·r·weight and offset bias + weight·d - centre·scale."""
    for c in range(mean.size):
        sigma = np.sqrt(np.float64(running_var[c]) + eps)
        r_c = min(max(np.sqrt(var[c] + eps) / sigma, 1.0 / rmax), rmax)
        d_c = min(max((mean[c] - running_mean[c]) / sigma, -dmax), dmax)
        r[c] = r_c
        d[c] = d_c
        scale[c] = inv_std[c] * r_c * weight[c]
        offset[c] = bias[c] + weight[c] * d_c + offset_bn[c] * r_c * weight[c]


def _shifted_sums(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """(2, chunks, C) float64 partial sums of x - shift and its square (BatchNorm's pass)."""
    num_chunks = batch_norm._num_chunks(x)
    parts = np.zeros((2, num_chunks, x.shape[1]))
    if num_chunks > 1:
        batch_norm._shifted_sums_parallel(x, shift, parts[0], parts[1])
    else:
        batch_norm._shifted_sums(x, shift, parts[0, 0], parts[1, 0], 0, x.shape[0])
    return parts


def _check_limits(rmax: object, dmax: object) -> None:
    for name, value, low in (("rmax", rmax, 1.0), ("dmax", dmax, 0.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
        if not np.isfinite(value) or value < low:
            raise ValueError(f"{name} must be a finite number >= {low:g}, got {value}")


def batch_renorm_forward_train(
    x: np.ndarray, running_mean: np.ndarray, running_var: np.ndarray,
    weight: np.ndarray | None, bias: np.ndarray | None, eps: float, rmax: float, dmax: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """y = ((x - mu_B)·rsqrt(var_B + eps)·r + d)·weight + bias per channel over N and S.

    Returns (y, mean, inv_std, var, r, d), each statistic (C,) in x's dtype; var biased.
    The running statistics are read, not updated (the caller updates them).
    """
    check.array("x", x, 3)
    channels = x.shape[1]
    why = "one per channel, x.shape[1]"
    for name, vector, optional in (("running_mean", running_mean, False),
                                   ("running_var", running_var, False),
                                   ("weight", weight, True), ("bias", bias, True)):
        check.vector(name, vector, channels, x.dtype, why, optional=optional)
    eps = check_eps(eps)
    _check_limits(rmax, dmax)
    y = buffers.empty_like(x)
    if x.size == 0:
        stats = np.full(channels, np.nan, x.dtype)
        return y, stats, stats.copy(), stats.copy(), stats.copy(), stats.copy()
    first = x[0, :, 0]
    shift = np.where(np.isfinite(first), first, 0).astype(x.dtype)
    parts = _shifted_sums(x, shift)
    # BatchNorm's statistics in float64: the centre mean - shift must not round to x's dtype
    stats = np.empty((5, channels))
    batch_norm._finish_statistics(parts, shift, x.shape[0] * x.shape[2], np.ones(channels),
                                  np.zeros(channels), float(eps), *stats)
    mean, inv_std, var, _, offset_bn = stats
    r, d, scale, offset = np.empty((4, channels), x.dtype)
    _renorm_coefficients(mean, inv_std, var, offset_bn, running_mean, running_var,
                         np.ones(channels, x.dtype) if weight is None else weight,
                         np.zeros(channels, x.dtype) if bias is None else bias,
                         float(eps), float(rmax), float(dmax), r, d, scale, offset)
    batch_norm._run_affine(x, shift, scale, offset, y)
    return y, mean.astype(x.dtype), inv_std.astype(x.dtype), var.astype(x.dtype), r, d


def batch_renorm_backward(
    dy: np.ndarray, x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, r: np.ndarray,
    d: np.ndarray, weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward with r, d constant: BatchNorm's backward with weight·r, then
    dweight = r·sum(dy·xhat) + d·sum(dy). Returns (dx, dweight, dbias)."""
    check.array("x", x, 3)
    why = "one per channel, x.shape[1]"
    for name, vector in (("r", r), ("d", d)):
        check.vector(name, vector, x.shape[1], x.dtype, why, optional=False)
    check.vector("weight", weight, x.shape[1], x.dtype, why)
    dx, sum_dy_xhat, dbias = batch_norm.batch_norm_backward(
        dy, x, mean, inv_std, r if weight is None else weight * r)
    return dx, (r * sum_dy_xhat + d * dbias).astype(x.dtype), dbias
