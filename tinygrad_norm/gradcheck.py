"""gradcheck: compare autograd's gradients with central finite differences, in float64.

    >>> x = tinygrad_norm.randn(3, 4, dtype=tinygrad_norm.float64, requires_grad=True)
    >>> tinygrad_norm.gradcheck(lambda t: (t * t).sum(dim=1), (x,))
    True

For every input that requires grad and every element of it, the numerical derivative
(f(x + eps) - f(x - eps)) / (2 eps) of every output element is compared with the analytic one
from backward. They agree when |analytic - numerical| <= atol + rtol * |numerical|, PyTorch's
rule. The first input that disagrees raises GradcheckError naming the input, the worst element
and both values. `fn` must be deterministic (no dropout) for the comparison to mean anything.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .autograd import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with finite differences."""


def _as_tuple(values) -> tuple:
    return tuple(values) if isinstance(values, (tuple, list)) else (values,)


def _outputs(fn: Callable, inputs: tuple) -> tuple:
    outputs = _as_tuple(fn(*inputs))
    for i, out in enumerate(outputs):
        if not isinstance(out, Tensor):
            raise TypeError(f"gradcheck: fn must return Tensors, output {i} is {type(out)}")
    return outputs


def _numerical_jacobians(fn, inputs, index, eps) -> list:
    """One (output_numel, input_numel) matrix per output, by central differences."""
    data = inputs[index].data
    flat = data.reshape(-1)  # a view: the input is contiguous (checked in gradcheck)
    columns = []
    with no_grad():
        for k in range(flat.size):
            saved = flat[k]
            flat[k] = saved + eps
            plus = [o.data.astype(np.float64).ravel() for o in _outputs(fn, inputs)]
            flat[k] = saved - eps
            minus = [o.data.astype(np.float64).ravel() for o in _outputs(fn, inputs)]
            flat[k] = saved
            columns.append([(p - m) / (2 * eps) for p, m in zip(plus, minus)])
    return [
        np.stack([col[j] for col in columns], axis=1) if columns else np.zeros((0, 0))
        for j in range(len(columns[0]) if columns else 0)
    ]


def _analytic_jacobians(fn, inputs, differentiable) -> dict:
    """{(output j, input i): (output_numel, input_numel) matrix}, one backward per output
    element."""
    outputs = _outputs(fn, inputs)
    jacobians = {}
    for j, out in enumerate(outputs):
        for i in differentiable:
            jacobians[j, i] = np.zeros((out.data.size, inputs[i].data.size))
        if not out.requires_grad:
            continue
        for row in range(out.data.size):
            for i in differentiable:
                inputs[i].grad = None
            seed = np.zeros(out.data.size, dtype=out.dtype)
            seed[row] = 1
            out.backward(seed.reshape(out.shape), retain_graph=True)
            for i in differentiable:
                if inputs[i].grad is not None:
                    jacobians[j, i][row] = inputs[i].grad.data.ravel()
    return jacobians


def gradcheck(fn: Callable, inputs: Sequence[Tensor] | Tensor, eps: float = 1e-6,
              atol: float = 1e-5, rtol: float = 1e-3) -> bool:
    """Check fn's analytic gradients against central differences; True or GradcheckError.

    inputs: a Tensor or a sequence of arguments for fn. Tensors with requires_grad=True are
    checked and must be float64 (finite differences in float32 are too coarse to mean much).
    Their `.grad` is left as it was before the call.
    """
    inputs = _as_tuple(inputs)
    differentiable = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not differentiable:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check")
    for i in differentiable:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} has dtype {inputs[i].dtype}; gradcheck needs float64 "
                f"inputs (use .double())"
            )
        if not inputs[i].data.flags.c_contiguous or not inputs[i].data.flags.writeable:
            inputs[i].data = np.array(inputs[i].data, copy=True)  # perturbed in place below
    saved_grads = [inputs[i].grad for i in differentiable]
    try:
        analytic = _analytic_jacobians(fn, inputs, differentiable)
    finally:
        for i, grad in zip(differentiable, saved_grads):
            inputs[i].grad = grad
    for i in differentiable:
        numerical = _numerical_jacobians(fn, inputs, i, eps)
        for j, num in enumerate(numerical):
            ana = analytic[j, i]
            error = np.abs(ana - num) - (atol + rtol * np.abs(num))
            if error.size and (np.nanmax(error) > 0 or not np.isfinite(ana).all()):
                bad = np.where(np.isfinite(error), error, np.inf)
                row, col = np.unravel_index(np.argmax(bad), bad.shape)
                element = np.unravel_index(col, inputs[i].shape)
                out_element = np.unravel_index(row, _outputs(fn, inputs)[j].shape)
                raise GradcheckError(
                    f"gradcheck failed for input {i} (shape {inputs[i].shape}), element "
                    f"{tuple(int(e) for e in element)}, output {j} element "
                    f"{tuple(int(e) for e in out_element)}: analytic {ana[row, col]:.10g}, "
                    f"numerical {num[row, col]:.10g} (atol={atol}, rtol={rtol})"
                )
    return True
