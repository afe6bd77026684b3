"""SGD with momentum, dampening, weight decay and Nesterov, by PyTorch's update rule."""

from __future__ import annotations

import numpy as np

from .optimizer import Optimizer


class SGD(Optimizer):
    """p -= lr * d, where g = grad + weight_decay * p and
    buf = g (first step) or momentum * buf + (1 - dampening) * g,
    d = g + momentum * buf (nesterov) or buf (momentum) or g (plain SGD).
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"SGD: lr, momentum and weight_decay must be >= 0, got lr={lr}, "
                f"momentum={momentum}, weight_decay={weight_decay}"
            )
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    _buffers = ("momentum_buffer",)

    def _update_group(self, params: list, states: list, group: dict) -> None:
        from kernels import cpu

        buffers = cpu.sgd_step(
            [p.data for p in params], [p.grad.data for p in params],
            [state.get("momentum_buffer") for state in states], group["lr"], group["momentum"],
            group["dampening"], group["weight_decay"], group["nesterov"], group["maximize"])
        if group["momentum"]:
            for state, buf in zip(states, buffers):
                state["momentum_buffer"] = buf

    def _update(self, param, grad: np.ndarray, state: dict, group: dict) -> None:
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + group["weight_decay"] * param.data
        momentum = group["momentum"]
        if momentum:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.copy()  # .copy(): also a CuPy array's own method
            else:
                buf = state["momentum_buffer"]
                buf *= momentum
                buf += (1 - group["dampening"]) * g
            buf = state["momentum_buffer"]
            g = g + momentum * buf if group["nesterov"] else buf
        param.data -= group["lr"] * g
