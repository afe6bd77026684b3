"""The Batch Renormalization autograd Function (Ioffe 2017), a thin shell around the kernels
kernels.cpu.batch_renorm_forward_train / batch_renorm_backward.

Training mode only: in eval mode Batch Renormalization is BatchNorm's eval (running
statistics), which nn.BatchRenorm1d/2d run through norm_ops.BatchNormEvalFunction.
"""

from __future__ import annotations

from ..autograd import Function
from .norm_ops import _affine_grads, _as_ncs, _contiguous, _flat, update_running_stats


class BatchRenormFunction(Function):
    """y = ((x - mu_B) / sigma_B * r + d) * weight + bias, r and d clipped with rmax and dmax
    and held constant in backward; updates the running buffers in place with `momentum`
    (unbiased variance, as BatchNorm does)."""

    @staticmethod
    def forward(ctx, x, weight, bias, *, running_mean, running_var, eps, momentum, rmax, dmax):
        if ctx.device != "cpu":
            raise RuntimeError(f"BatchRenorm has CPU kernels only; got a tensor on "
                               f"{ctx.device!r}")
        from kernels import cpu

        x3d = _as_ncs(x)
        y, mean, inv_std, var, r, d = cpu.batch_renorm_forward_train(
            x3d, running_mean.astype(x.dtype), running_var.astype(x.dtype), _flat(weight),
            _flat(bias), eps, rmax, dmax)
        update_running_stats(running_mean, running_var, mean, var, x3d.shape[0] * x3d.shape[2],
                             momentum)
        ctx.save_for_backward(x3d, mean, inv_std, r, d, weight, bias)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        from kernels import cpu

        x3d, mean, inv_std, r, d, weight, bias = ctx.saved_tensors
        dy = _contiguous(grad, x3d.shape)
        dx, dweight, dbias = cpu.batch_renorm_backward(dy, x3d, mean, inv_std, r, d,
                                                       _flat(weight))
        return _affine_grads(ctx, grad, dx, dweight, dbias, weight, bias)
