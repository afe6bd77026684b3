"""Linear as one autograd node: y = x @ weight.T + bias over the last dim of x.

One node instead of three (transpose, matmul, broadcast add) means one Function.apply and one
backward step per layer, and its backward writes each gradient in the layout it is used in:
dweight = dy.T @ x is (out, in) like weight, so the leaf takes it without a copy (a
transposed view would be copied), and a gradient nobody needs is not computed at all (the
first layer's input gradient, a frozen weight). Leading dims of x are flattened into rows.
"""

from __future__ import annotations

from ..autograd import Function


class LinearFunction(Function):
    @staticmethod
    def forward(ctx, x, weight, bias=None):
        rows = x.reshape(-1, x.shape[-1])
        out = rows @ weight.T
        if bias is not None:
            out += bias
        ctx.save_for_backward(rows, weight)
        ctx.has_bias = bias is not None
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, grad):
        rows, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_rows = grad.reshape(-1, weight.shape[0])
        grad_x = (grad_rows @ weight).reshape(grad.shape[:-1] + (weight.shape[1],)) \
            if needs[0] else None
        grad_weight = grad_rows.T @ rows if needs[1] else None
        grad_bias = grad_rows.sum(axis=0) if ctx.has_bias and needs[2] else None
        return (grad_x, grad_weight, grad_bias) if ctx.has_bias else (grad_x, grad_weight)
