"""BatchRenorm1d / BatchRenorm2d: Batch Renormalization (Ioffe 2017), BatchNorm's own fix for
small or non-i.i.d. batches. PyTorch has no such layer; the math is in
kernels/cpu/batch_renorm.py and its float64 spec in kernels/reference.py.

Training normalizes with the batch statistics and then corrects them toward the running ones,
    xhat = (x - mu_B) / sigma_B * r + d,  r = clip(sigma_B / sigma, 1/rmax, rmax),
    d = clip((mu_B - mu) / sigma, -dmax, dmax),
so that a training-mode output is what the eval-mode output (running statistics) would be, up
to the clipping. The paper starts as plain BatchNorm (rmax = 1, dmax = 0) and relaxes the
limits: `renorm_limits` gives that schedule from the number of batches seen.
"""

from __future__ import annotations

import math

from ..tensor import Tensor
from . import functional_norm as F
from .normalization import BatchNorm1d, BatchNorm2d
from .renorm_ops import BatchRenormFunction


def renorm_limits(step: int, rmax: float, dmax: float, warmup_steps: int = 0,
                  rmax_ramp_steps: int = 0, dmax_ramp_steps: int = 0) -> tuple[float, float]:
    """(rmax, dmax) after `step` training batches: 1 and 0 (BatchNorm) for `warmup_steps`, then
    linear ramps to the final `rmax` over `rmax_ramp_steps` and `dmax` over `dmax_ramp_steps`
    (Ioffe's schedule: warmup 5k steps, rmax to 3 over 40k, dmax to 5 over 25k)."""
    def ramp(final: float, start: float, steps: int) -> float:
        if step < warmup_steps:
            return start
        done = 1.0 if steps <= 0 else min(1.0, (step - warmup_steps) / steps)
        return start + (final - start) * done
    return ramp(rmax, 1.0, rmax_ramp_steps), ramp(dmax, 0.0, dmax_ramp_steps)


class _BatchRenorm:
    """The renormalizing forward shared by BatchRenorm1d and BatchRenorm2d (mixed in before
    the BatchNorm class whose parameters, buffers and input checks they keep)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.01,
                 affine: bool = True, rmax: float = 3.0, dmax: float = 5.0,
                 warmup_steps: int = 0, rmax_ramp_steps: int = 0, dmax_ramp_steps: int = 0,
                 device=None, dtype=None) -> None:
        if not isinstance(momentum, (int, float)) or not 0 < momentum <= 1:
            raise ValueError(f"{type(self).__name__}: momentum must be in (0, 1], got "
                             f"{momentum!r} (the running statistics are part of the output)")
        if rmax < 1 or dmax < 0:
            raise ValueError(f"{type(self).__name__}: need rmax >= 1 and dmax >= 0, got "
                             f"rmax={rmax}, dmax={dmax}")
        super().__init__(num_features, eps, momentum, affine, True, device, dtype)
        self.rmax, self.dmax = float(rmax), float(dmax)
        self.warmup_steps = warmup_steps
        self.rmax_ramp_steps, self.dmax_ramp_steps = rmax_ramp_steps, dmax_ramp_steps

    def current_limits(self) -> tuple[float, float]:
        """(rmax, dmax) for the next training batch, from the schedule."""
        return renorm_limits(int(self.num_batches_tracked.data), self.rmax, self.dmax,
                             self.warmup_steps, self.rmax_ramp_steps, self.dmax_ramp_steps)

    def forward(self, input: Tensor) -> Tensor:
        if not self.training:
            return super().forward(input)
        F._check_input(input, type(self).__name__)
        self._check_input_dim(input)
        F._running_buffer(self.running_mean, input.shape[1], input, "running_mean",
                          type(self).__name__)  # the channel count, as BatchNorm checks it
        if input.shape[0] * math.prod(input.shape[2:]) <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got "
                             f"input size {list(input.shape)}")
        rmax, dmax = self.current_limits()
        self.num_batches_tracked.data += 1
        return BatchRenormFunction.apply(
            input, self.weight, self.bias, running_mean=self.running_mean.data,
            running_var=self.running_var.data, eps=F._check_eps(self.eps, "batch_renorm"),
            momentum=self.momentum, rmax=rmax, dmax=dmax)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, rmax={self.rmax}, dmax={self.dmax}, "
                f"warmup_steps={self.warmup_steps}")


class BatchRenorm1d(_BatchRenorm, BatchNorm1d):
    """Batch Renormalization over (N, C) or (N, C, L) input."""


class BatchRenorm2d(_BatchRenorm, BatchNorm2d):
    """Batch Renormalization over (N, C, H, W) input."""
