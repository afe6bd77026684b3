"""The normalization autograd Functions: one per normalization, each a thin shell around kernels.

Each Function views its input as the shape its kernels take — rows (LayerNorm, RMSNorm) or
(N, C, S) (BatchNorm, GroupNorm, InstanceNorm) — makes it contiguous, picks the kernel backend
by `ctx.device` (recorded by Function.apply), and saves only what backward needs: the input,
mean and inverse std (never xhat). Backward asks for dweight/dbias only when a parameter needs
them (`param_grads`, PyTorch's output_mask). The user's arguments were checked before these
run, in nn.functional; the kernels' own wrappers check the arrays again (shapes, dtypes,
contiguity) before any kernel runs. Running statistics are updated in one place,
`update_running_stats`, for BatchNorm and InstanceNorm alike.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Function


def backend(device: str):
    """The kernel module for a device: kernels.cpu, or kernels.cuda (the same functions,
    kernels/api.py), which takes the tensor's CuPy arrays (NumPy stand-ins under the CUDA
    simulator) without copies."""
    if device == "cpu":
        from kernels import cpu

        return cpu
    if device == "cuda":
        from kernels import cuda

        return cuda
    raise RuntimeError(f"no normalization kernels for device {device!r}")


def update_running_stats(running_mean: np.ndarray, running_var: np.ndarray, mean, var,
                         count: int, momentum: float) -> None:
    """running = (1 - momentum)·running + momentum·batch, in place (PyTorch's rule).

    mean and var are the biased per-set statistics with the channel last: (C,) for BatchNorm
    (count = N·S elements per set) and (N, C) for InstanceNorm (count = S), whose batch values
    are the averages over its N instances. The running variance takes the unbiased variance,
    var·count/(count - 1); a set of one element leaves the buffers as they are."""
    if count <= 1 or np.size(mean) == 0:
        return
    channels = running_mean.shape[0]
    batch_mean = np.asarray(mean, np.float64).reshape(-1, channels)
    unbiased = np.asarray(var, np.float64).reshape(-1, channels) * (count / (count - 1))
    if batch_mean.shape[0] > 1:  # InstanceNorm's N instances (np.mean costs 5 us a call)
        batch_mean, unbiased = batch_mean.mean(axis=0), unbiased.mean(axis=0)
    # in place, with the same roundings as (1 - momentum)·running + momentum·batch
    running_mean *= 1 - momentum
    running_mean += momentum * batch_mean.reshape(channels)
    running_var *= 1 - momentum
    running_var += momentum * unbiased.reshape(channels)


def _contiguous(array: np.ndarray, shape: tuple) -> np.ndarray:
    return np.ascontiguousarray(array.reshape(shape))


def _flat(param: np.ndarray | None) -> np.ndarray | None:
    return None if param is None else np.ascontiguousarray(param.reshape(-1))


def _as_rows(x: np.ndarray, normalized_ndim: int) -> np.ndarray:
    """View x as a contiguous (rows, cols) array, cols spanning the trailing normalized dims."""
    lead = x.ndim - normalized_ndim
    return _contiguous(x, (math.prod(x.shape[:lead]), math.prod(x.shape[lead:])))


def _as_ncs(x: np.ndarray) -> np.ndarray:
    """View (N, C, *spatial) as a contiguous (N, C, S) array."""
    return _contiguous(x, (x.shape[0], x.shape[1], math.prod(x.shape[2:])))


def _param_grad(grad: np.ndarray | None, param: np.ndarray | None, needed: bool):
    return grad.reshape(param.shape) if needed and param is not None else None


def _wants_param_grads(ctx) -> bool:
    """Whether weight (argument 1) or bias (argument 2) needs a gradient."""
    return any(ctx.needs_input_grad[1:3])


def _affine_grads(ctx, grad, dx, dweight, dbias, weight, bias) -> tuple:
    """(dx, dweight, dbias) shaped like (the output, weight, bias); None where not needed."""
    needs = ctx.needs_input_grad
    return (dx.reshape(grad.shape), _param_grad(dweight, weight, needs[1]),
            _param_grad(dbias, bias, needs[2]))


class LayerNormFunction(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the trailing `normalized_ndim` dims."""

    @staticmethod
    def forward(ctx, x, weight, bias, normalized_ndim, eps):
        x2d = _as_rows(x, normalized_ndim)
        kernels = backend(ctx.device)
        y, mean, inv_std = kernels.layer_norm_forward(x2d, _flat(weight), _flat(bias), eps)
        ctx.save_for_backward(x2d, mean, inv_std, weight, bias)
        ctx.kernels = kernels
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        x2d, mean, inv_std, weight, bias = ctx.saved_tensors
        dy = _contiguous(grad, x2d.shape)
        dx, dweight, dbias = ctx.kernels.layer_norm_backward(
            dy, x2d, mean, inv_std, _flat(weight), _wants_param_grads(ctx))
        return _affine_grads(ctx, grad, dx, dweight, dbias, weight, bias)


class RMSNormFunction(Function):
    """y = x / sqrt(mean(x^2) + eps) * weight over the trailing `normalized_ndim` dims."""

    @staticmethod
    def forward(ctx, x, weight, normalized_ndim, eps):
        x2d = _as_rows(x, normalized_ndim)
        kernels = backend(ctx.device)
        y, inv_rms = kernels.rms_norm_forward(x2d, _flat(weight), eps)
        ctx.save_for_backward(x2d, inv_rms, weight)
        ctx.kernels = kernels
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        x2d, inv_rms, weight = ctx.saved_tensors
        dy = _contiguous(grad, x2d.shape)
        needs_weight = ctx.needs_input_grad[1]
        dx, dweight = ctx.kernels.rms_norm_backward(dy, x2d, inv_rms, _flat(weight),
                                                    needs_weight)
        return dx.reshape(grad.shape), _param_grad(dweight, weight, needs_weight)


class GroupNormFunction(Function):
    """Statistics per (sample, group) over C/G channels and all spatial positions; per-channel
    affine. InstanceNorm is this with one channel per group; given running buffers, it moves
    them toward the batch's per-instance statistics (update_running_stats)."""

    @staticmethod
    def forward(ctx, x, weight, bias, num_groups, eps, momentum=0.0, running_mean=None,
                running_var=None):
        x3d = _as_ncs(x)
        kernels = backend(ctx.device)
        y, mean, inv_std, var = kernels.group_norm_forward(x3d, num_groups, _flat(weight),
                                                           _flat(bias), eps)
        if running_mean is not None:
            update_running_stats(running_mean, running_var, mean, var, x3d.shape[2], momentum)
        ctx.save_for_backward(x3d, mean, inv_std, weight, bias)
        ctx.num_groups = num_groups
        ctx.kernels = kernels
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        x3d, mean, inv_std, weight, bias = ctx.saved_tensors
        dy = _contiguous(grad, x3d.shape)
        dx, dweight, dbias = ctx.kernels.group_norm_backward(
            dy, x3d, mean, inv_std, ctx.num_groups, _flat(weight), _wants_param_grads(ctx))
        return _affine_grads(ctx, grad, dx, dweight, dbias, weight, bias)


class BatchNormFunction(Function):
    """Training mode: normalize with the batch's per-channel statistics and, given running
    buffers, move them toward the batch's (update_running_stats)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, momentum, running_mean=None, running_var=None):
        x3d = _as_ncs(x)
        kernels = backend(ctx.device)
        y, mean, inv_std, var = kernels.batch_norm_forward_train(x3d, _flat(weight),
                                                                 _flat(bias), eps)
        if running_mean is not None:
            update_running_stats(running_mean, running_var, mean, var,
                                 x3d.shape[0] * x3d.shape[2], momentum)
        ctx.save_for_backward(x3d, mean, inv_std, weight, bias)
        ctx.kernels = kernels
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        x3d, mean, inv_std, weight, bias = ctx.saved_tensors
        dy = _contiguous(grad, x3d.shape)
        dx, dweight, dbias = ctx.kernels.batch_norm_backward(
            dy, x3d, mean, inv_std, _flat(weight), _wants_param_grads(ctx))
        return _affine_grads(ctx, grad, dx, dweight, dbias, weight, bias)


class BatchNormEvalFunction(Function):
    """Eval mode with running statistics: the per-channel affine map
    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, running_mean, running_var):
        x3d = _as_ncs(x)
        kernels = backend(ctx.device)
        # contiguous copies: the kernels take them, and a later training step updates the
        # buffers in place before this backward runs
        running_mean, running_var = running_mean.copy(), running_var.copy()
        y = kernels.batch_norm_forward_eval(x3d, running_mean, running_var, _flat(weight),
                                            _flat(bias), eps)
        ctx.save_for_backward(x3d, running_mean, running_var, weight, bias)
        ctx.eps = eps
        ctx.kernels = kernels
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        x3d, running_mean, running_var, weight, bias = ctx.saved_tensors
        dy = _contiguous(grad, x3d.shape)
        dx, dweight, dbias = ctx.kernels.batch_norm_backward_eval(
            dy, x3d, running_mean, running_var, _flat(weight), ctx.eps, _wants_param_grads(ctx))
        return _affine_grads(ctx, grad, dx, dweight, dbias, weight, bias)


# ---------------------------------------------------------------------------------------------
# LocalResponseNorm: a cross-channel normalization without statistics or parameters, kept apart
# from the statistics-based Functions above.


class LocalResponseNormFunction(Function):
    """y = x / (k + alpha/size · sum of x^2 over a window of `size` neighbouring channels)^beta,
    for x (N, C, *spatial); backward reuses the forward's per-element scale."""

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):
        x3d = _as_ncs(x)
        kernels = backend(ctx.device)
        y, scale = kernels.local_response_norm_forward(x3d, size, alpha, beta, k)
        ctx.save_for_backward(x3d, scale)
        ctx.args = (size, alpha, beta)
        ctx.kernels = kernels
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        x3d, scale = ctx.saved_tensors
        dy = _contiguous(grad, x3d.shape)
        return (ctx.kernels.local_response_norm_backward(dy, x3d, scale, *ctx.args)
                .reshape(grad.shape),)
