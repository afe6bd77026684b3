"""The fused cross-entropy autograd Function: one node for log_softmax + NLL, CPU kernels.

Arguments were checked by nn.functional.cross_entropy in the user's terms; the kernels'
wrappers check the arrays again before any kernel runs (kernels/cpu/cross_entropy.py).
Backward saves the scores and the per-row log-sum-exp, and gives d input directly as
(softmax - smoothed one-hot)·weight·scale; the target and weights get no gradient.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function


class CrossEntropy(Function):
    """cross_entropy of scores x (M, C) and int64 targets (M,); loss of shape (M,) for
    reduction "none", else 0-d."""

    @staticmethod
    def forward(ctx, x, target, weight, ignore_index, label_smoothing, reduction):
        from kernels import cpu

        x = np.ascontiguousarray(x)
        loss, lse = cpu.cross_entropy_forward(x, target, weight, ignore_index, label_smoothing,
                                              reduction)
        ctx.save_for_backward(x, lse)
        ctx.arguments = (target, weight, ignore_index, label_smoothing, reduction)
        ctx.loss_shape = loss.shape
        return loss

    @staticmethod
    def backward(ctx, grad):
        from kernels import cpu

        x, lse = ctx.saved_tensors
        target, weight, ignore_index, label_smoothing, reduction = ctx.arguments
        # an upstream gradient may come broadcast or as (1,) for the 0-d loss
        dloss = np.ascontiguousarray(grad, x.dtype).reshape(ctx.loss_shape)
        return (cpu.cross_entropy_backward(dloss, x, target, lse, weight, ignore_index,
                                           label_smoothing, reduction),)
