"""The generic differentiable operations, each forward beside its backward.

Arguments arrive as NumPy arrays (Function.apply unwraps them); a backward returns one gradient
per positional argument, None where an argument is not differentiable. Broadcasting is undone by
the autograd engine, so elementwise backwards may return full-size gradients.
"""

from __future__ import annotations

import math

import numpy as np

from .autograd import Function
from .device import as_array, to_device


def _cpu_kernels(ctx, array):
    """kernels.cpu when the op runs on the cpu device on float32/float64 data; None means the
    NumPy code (CuPy's on the cuda device) runs."""
    if ctx.device != "cpu" or array.dtype.char not in "fd":
        return None
    from kernels import cpu

    return cpu

# ---------------------------------------------------------------- elementwise, two inputs


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, grad):
        return grad, -grad


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return grad * b, grad * a


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return grad / b, -grad * a / (b * b)


class Pow(Function):
    @staticmethod
    def forward(ctx, a, b):
        if a.dtype.kind in "iu" and (b < 0).any():
            # PyTorch's integer pow: 1 and -1 keep their powers, every other base gives 0
            parity = 1 - 2 * (np.abs(b) % 2)
            out = np.where(b < 0, np.where(a == 1, 1, np.where(a == -1, parity, 0)),
                           a ** np.where(b < 0, 0, b))
        else:
            out = a**b
        if out.dtype != a.dtype:  # bool ** bool is int8 in NumPy, bool in PyTorch
            out = out.astype(a.dtype)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, out = ctx.saved_tensors
        grad_a = grad * b * a ** (b - 1)
        grad_b = None
        if ctx.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                grad_b = grad * out * np.where(a > 0, np.log(np.where(a > 0, a, 1)), 0)
        return grad_a, grad_b


class Maximum(Function):
    """Elementwise max; ties split the gradient evenly, as torch.maximum does."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.maximum(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        share_a = (a > b) + 0.5 * (a == b)
        return grad * share_a, grad * (1 - share_a)


# ---------------------------------------------------------------- elementwise, one input


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, grad):
        return (-grad,)


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return (grad * out,)


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return (grad / a,)


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return (grad / (2 * out),)


class Abs(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return (grad * np.sign(a),)


def _flat(array, dtype) -> np.ndarray:
    """array as the contiguous 1-D array of `dtype` the elementwise kernels take."""
    return np.ascontiguousarray(array, dtype).reshape(-1)


class Relu(Function):
    """Saves the output, as PyTorch does; on the cpu device one kernel pass each way
    (kernels/cpu/relu.py: np.maximum was 4-7x slower than a copy, and turned -0.0 into 0.0)."""

    @staticmethod
    def forward(ctx, a):
        kernels = _cpu_kernels(ctx, a)
        if kernels is None:
            out = np.maximum(a, 0)
        else:
            out = kernels.relu_forward(_flat(a, a.dtype)).reshape(a.shape)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        kernels = _cpu_kernels(ctx, out)
        if kernels is not None:
            dx = kernels.relu_backward(_flat(grad, out.dtype), _flat(out, out.dtype))
            return (dx.reshape(out.shape),)
        return (grad * (out > 0),)


class Sigmoid(Function):
    """On the cpu device one kernel pass each way (kernels/cpu/sigmoid.py)."""

    @staticmethod
    def forward(ctx, a):
        kernels = _cpu_kernels(ctx, a)
        if kernels is not None:
            out = kernels.sigmoid_forward(_flat(a, a.dtype)).reshape(a.shape)
        else:
            # exp of a non-positive number only: no overflow warnings for large |a|
            e = np.exp(-np.abs(a))
            out = np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        kernels = _cpu_kernels(ctx, out)
        if kernels is not None:
            dx = kernels.sigmoid_backward(_flat(grad, out.dtype), _flat(out, out.dtype))
            return (dx.reshape(out.shape),)
        return (grad * out * (1 - out),)


class Tanh(Function):
    """np.tanh forward (SIMD, faster than a kernel); backward one kernel pass on the cpu
    device (kernels/cpu/tanh.py)."""

    @staticmethod
    def forward(ctx, a):
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        kernels = _cpu_kernels(ctx, out)
        if kernels is not None:
            dx = kernels.tanh_backward(_flat(grad, out.dtype), _flat(out, out.dtype))
            return (dx.reshape(out.shape),)
        return (grad * (1 - out * out),)


class Clamp(Function):
    @staticmethod
    def forward(ctx, a, min=None, max=None):
        ctx.save_for_backward(a)
        ctx.bounds = (min, max)
        return np.clip(a, min, max)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        low, high = ctx.bounds
        inside = np.ones_like(a, dtype=bool)
        if low is not None:
            inside &= a >= low
        if high is not None:
            inside &= a <= high
        return (grad * inside,)


# ---------------------------------------------------------------- matmul


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        # view 1-D operands as matrices, the way matmul promotes them, and the gradient to match
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
        g2 = grad.reshape(batch + (a2.shape[-2], b2.shape[-1]))
        grad_a = grad_b = None  # only the gradients some input needs
        # the engine sums size-1 batch axes that broadcast; only 1-D operands need reshaping
        if ctx.needs_input_grad[0]:
            grad_a = _sum_to(np.matmul(g2, np.swapaxes(b2, -1, -2)), a2.ndim)
            grad_a = grad_a.reshape(a.shape) if a.ndim == 1 else grad_a
        if ctx.needs_input_grad[1]:
            grad_b = _sum_to(np.matmul(np.swapaxes(a2, -1, -2), g2), b2.ndim)
            grad_b = grad_b.reshape(b.shape) if b.ndim == 1 else grad_b
        return grad_a, grad_b


def _sum_to(grad: np.ndarray, ndim: int) -> np.ndarray:
    """Sum away leading batch axes that matmul broadcast (the engine handles size-1 axes)."""
    while grad.ndim > ndim:
        grad = grad.sum(axis=0)
    return grad


# ---------------------------------------------------------------- reductions


class Sum(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.input_shape = a.shape
        ctx.dim = dim
        ctx.keepdim = keepdim
        return as_array(a.sum(axis=dim, keepdims=keepdim))

    @staticmethod
    def backward(ctx, grad):
        if ctx.dim is not None and not ctx.keepdim:
            grad = np.expand_dims(grad, ctx.dim)
        return (np.broadcast_to(grad, ctx.input_shape),)


class Max(Function):
    """Max over `dim` (an int), or over everything when dim is None.

    The gradient goes to the element whose index max(dim) reports; a full max splits it
    evenly among ties, as PyTorch does.
    """

    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.input_shape = a.shape
        ctx.dim = dim
        ctx.keepdim = keepdim
        if dim is None:
            out = as_array(a.max())
            ctx.mask = a == out
        else:
            ctx.indices = np.argmax(a, axis=dim)
            out = np.take_along_axis(a, np.expand_dims(ctx.indices, dim), dim)
            if not keepdim:
                out = np.squeeze(out, dim)
        return out

    @staticmethod
    def backward(ctx, grad):
        if ctx.dim is None:
            return (ctx.mask * (grad / ctx.mask.sum()),)
        if not ctx.keepdim:
            grad = np.expand_dims(grad, ctx.dim)
        out = np.zeros_like(grad, shape=ctx.input_shape)  # zeros_like: on grad's device
        np.put_along_axis(out, np.expand_dims(ctx.indices, ctx.dim), grad, ctx.dim)
        return (out,)


def _as_rows(a, dim: int, dtype) -> np.ndarray:
    """a as contiguous (rows, classes) with `dim` as the classes (a copy unless it is last)."""
    moved = np.moveaxis(a, dim, -1)
    return np.ascontiguousarray(moved.reshape(math.prod(moved.shape[:-1]), moved.shape[-1]),
                                dtype)


def _from_rows(rows: np.ndarray, shape: tuple, dim: int) -> np.ndarray:
    """The inverse of _as_rows: a view of `rows` with the classes back at `dim`."""
    moved = shape[:dim] + shape[dim + 1:] + (shape[dim],)
    return np.moveaxis(rows.reshape(moved), -1, dim)


class LogSoftmax(Function):
    """On the cpu device one fused kernel per pass (kernels/cpu/log_softmax.py)."""

    @staticmethod
    def forward(ctx, a, dim):
        ctx.dim = dim
        kernels = _cpu_kernels(ctx, a)
        if kernels is not None and a.ndim:
            out = _from_rows(kernels.log_softmax_forward(_as_rows(a, dim, a.dtype)), a.shape,
                             dim)
        else:
            shifted = a - a.max(axis=dim, keepdims=True)
            out = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        kernels = _cpu_kernels(ctx, out)
        if kernels is not None and out.ndim:
            dx = kernels.log_softmax_backward(_as_rows(grad, ctx.dim, out.dtype),
                                              _as_rows(out, ctx.dim, out.dtype))
            return (_from_rows(dx, out.shape, ctx.dim),)
        return (grad - np.exp(out) * grad.sum(axis=ctx.dim, keepdims=True),)


# ---------------------------------------------------------------- movement


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.input_shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return (grad.reshape(ctx.input_shape),)


class Permute(Function):
    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        return np.transpose(a, dims)

    @staticmethod
    def backward(ctx, grad):
        return (np.transpose(grad, np.argsort(ctx.dims)),)


class Contiguous(Function):
    @staticmethod
    def forward(ctx, a):
        return np.ascontiguousarray(a)

    @staticmethod
    def backward(ctx, grad):
        return (grad,)


class ToDevice(Function):
    """A copy to another device; the gradient is copied back to the source device."""

    @staticmethod
    def forward(ctx, a, device):
        ctx.source_device = ctx.device
        ctx.device = device  # where the output lives
        return to_device(a, device)

    @staticmethod
    def backward(ctx, grad):
        return (to_device(grad, ctx.source_device),)


class Cast(Function):
    @staticmethod
    def forward(ctx, a, dtype):
        ctx.source_dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return (grad.astype(ctx.source_dtype),)


class Expand(Function):
    @staticmethod
    def forward(ctx, a, shape):
        return np.broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, grad):
        return (grad,)  # the engine sums the broadcast axes away


class GetItem(Function):
    @staticmethod
    def forward(ctx, a, index):
        ctx.input_shape = a.shape
        ctx.index = index
        return as_array(a[index])

    @staticmethod
    def backward(ctx, grad):
        out = np.zeros_like(grad, shape=ctx.input_shape)
        np.add.at(out, ctx.index, grad)  # repeated integer indices accumulate
        return (out,)


class Pad(Function):
    """Constant zero padding; `pad` is a list of (before, after) pairs, one per axis."""

    @staticmethod
    def forward(ctx, a, pad):
        ctx.slices = tuple(slice(lo, lo + n) for (lo, _), n in zip(pad, a.shape))
        return np.pad(a, pad)

    @staticmethod
    def backward(ctx, grad):
        return (grad[ctx.slices],)


class Cat(Function):
    @staticmethod
    def forward(ctx, *arrays, dim=0):
        ctx.dim = dim
        ctx.bounds = np.cumsum([a.shape[dim] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, grad):
        return tuple(np.split(grad, ctx.bounds, axis=ctx.dim))
