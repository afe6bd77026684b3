"""Float64 NumPy reference of the optimizer kernels (kernels/cpu/sgd.py, adam.py): the spec.

PyTorch's update formulas (torch.optim.SGD/Adam/AdamW, foreach=False), one parameter at a
time, written to be read. Unlike the normalization references these update their arguments
in place, as the kernels do: each new value is computed in float64 from the arrays' values
and then stored in the array's own dtype (one rounding per step for a float32 parameter).
"""

from __future__ import annotations

import numpy as np


def _as64(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64)


def sgd_step(params: list, grads: list, momentum_buffers: list, lr: float, momentum: float,
             dampening: float, weight_decay: float, nesterov: bool, maximize: bool) -> list:
    """p -= lr·d, g = ±grad + weight_decay·p, buf = g at first (a None buffer) and then
    momentum·buf + (1 - dampening)·g, d = g + momentum·buf (nesterov), buf, or g."""
    buffers = list(momentum_buffers)
    for i, (param, grad) in enumerate(zip(params, grads)):
        p = _as64(param)
        g = -_as64(grad) if maximize else _as64(grad)
        g = g + weight_decay * p
        if momentum != 0:
            if buffers[i] is None:
                buffers[i] = np.empty_like(param)
                buf = g
            else:
                buf = momentum * _as64(buffers[i]) + (1 - dampening) * g
            buffers[i][...] = buf
            g = g + momentum * buf if nesterov else buf
        param[...] = p - lr * g
    return buffers


def adam_step(params: list, grads: list, exp_avgs: list, exp_avg_sqs: list,
              max_exp_avg_sqs: list | None, state_steps: list, lr: float, beta1: float,
              beta2: float, eps: float, weight_decay: float, amsgrad: bool, maximize: bool,
              decoupled_weight_decay: bool) -> None:
    """m = beta1·m + (1 - beta1)·g, v = beta2·v + (1 - beta2)·g², v_max = max(v_max, v),
    p -= lr/(1 - beta1^t)·m/(sqrt(v or v_max)/sqrt(1 - beta2^t) + eps); AdamW first
    shrinks p by 1 - lr·weight_decay, Adam adds weight_decay·p to g."""
    for i, (param, grad, step) in enumerate(zip(params, grads, state_steps)):
        p = _as64(param)
        g = -_as64(grad) if maximize else _as64(grad)
        if decoupled_weight_decay:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = beta1 * _as64(exp_avgs[i]) + (1 - beta1) * g
        v = beta2 * _as64(exp_avg_sqs[i]) + (1 - beta2) * g * g
        exp_avgs[i][...], exp_avg_sqs[i][...] = m, v
        if amsgrad:
            v = np.maximum(_as64(max_exp_avg_sqs[i]), v)
            max_exp_avg_sqs[i][...] = v
        denom = np.sqrt(v) / np.sqrt(1 - beta2**step) + eps
        param[...] = p - lr / (1 - beta1**step) * m / denom
