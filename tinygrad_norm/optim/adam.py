"""Adam and AdamW, by PyTorch's update rules (bias-corrected moments, optional AMSGrad)."""

from __future__ import annotations

import math

import numpy as np

from .optimizer import Optimizer


class Adam(Optimizer):
    """m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;  t += 1
    p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
    Adam adds weight_decay*p to g (L2); AdamW instead shrinks p by lr*weight_decay first.
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(
                f"{type(self).__name__}: lr, eps and weight_decay must be >= 0, got lr={lr}, "
                f"eps={eps}, weight_decay={weight_decay}"
            )
        if not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"{type(self).__name__}: betas must be two numbers in [0, 1), "
                             f"got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    _buffers = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def _update_group(self, params: list, states: list, group: dict) -> None:
        from kernels import cpu

        for param, state in zip(params, states):
            self._init_state(param.data, state, group)
            state["step"] += 1
        beta1, beta2 = group["betas"]
        cpu.adam_step(
            [p.data for p in params], [p.grad.data for p in params],
            [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
            [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else None,
            [s["step"] for s in states], group["lr"], beta1, beta2, group["eps"],
            group["weight_decay"], group["amsgrad"], group["maximize"],
            self.decoupled_weight_decay)

    @staticmethod
    def _init_state(data, state: dict, group: dict) -> None:
        if not state:
            state["step"] = 0.0
            state["exp_avg"] = np.zeros_like(data)
            state["exp_avg_sq"] = np.zeros_like(data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(data)

    def _update(self, param, grad: np.ndarray, state: dict, group: dict) -> None:
        beta1, beta2 = group["betas"]
        lr, weight_decay = group["lr"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        if weight_decay and self.decoupled_weight_decay:
            param.data *= 1 - lr * weight_decay
        elif weight_decay:
            g = g + weight_decay * param.data
        self._init_state(param.data, state, group)
        state["step"] += 1
        step = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (1 - beta1) * (g - m)  # PyTorch's lerp form of b1*m + (1-b1)*g
        v *= beta2
        v += (1 - beta2) * g * g
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        step_size = lr / (1 - beta1**step)
        denom = np.sqrt(v) / math.sqrt(1 - beta2**step) + group["eps"]
        param.data -= step_size * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), default weight_decay=1e-2."""

    decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)
