"""SyncBatchNorm: BatchNorm whose statistics span the batches of every process (rank).

Forward: each rank computes its per-channel count, mean and variance with the statistics
kernel; the ranks all-gather them (all-gather, not all-reduce: counts may differ and may be
zero) and merge them with Chan's formula in float64; each rank normalizes its own part with
the apply kernel. Every rank holds the same merged statistics, so the running buffers stay
equal everywhere. Backward: sum(dy) and sum(dy·(x - mean)) are all-reduced and the input
gradient comes from those global sums; the weight and bias gradients stay this rank's own,
as in PyTorch: DistributedDataParallel averages them across ranks with the other
parameters' gradients.

In eval mode, without an initialized process group, or with one rank, it is BatchNorm.
"""

from __future__ import annotations

import numpy as np

from .. import distributed
from ..autograd import Function
from ..tensor import Tensor
from . import functional_norm as F
from .module import Module
from .norm_ops import _as_ncs, _contiguous, _flat, _param_grad
from .normalization import _BatchNorm, _rank_error


def merge_statistics(counts: np.ndarray, means: np.ndarray,
                     variances: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(n, mean, biased var) of the union of sets given per set (rows) and channel (columns):
    Chan's formula for k sets at once, M2 = sum M2_k + sum n_k·(mean_k - mean)^2, in float64.
    Empty sets weigh nothing."""
    total = float(counts.sum())
    weights = counts[:, None]
    mean = (weights * means).sum(axis=0) / total
    m2 = (weights * variances).sum(axis=0) + (weights * (means - mean) ** 2).sum(axis=0)
    return total, mean, m2 / total


class SyncBatchNormFunction(Function):
    """Training-mode BatchNorm over the union of every rank's batch (see the module
    docstring); updates the running buffers in place when they are given."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, momentum, running_mean=None, running_var=None):
        from kernels import cpu

        x3d = _as_ncs(x)
        channels = x3d.shape[1]
        mean, var = cpu.batch_norm_statistics(x3d)
        local = np.concatenate([[x3d.shape[0] * x3d.shape[2]], mean, var])
        gathered = [np.empty_like(local) for _ in range(distributed.get_world_size())]
        distributed.all_gather(gathered, local)
        stats = np.stack(gathered)
        count, mean, var = merge_statistics(stats[:, 0], stats[:, 1:channels + 1],
                                            stats[:, channels + 1:])
        if count <= 1:  # on every rank alike: they all see the same counts
            raise ValueError(
                f"Expected more than 1 value per channel when training, got {int(count)} over "
                f"all {len(gathered)} ranks (input size here {list(x.shape)})")
        inv_std = 1.0 / np.sqrt(var + eps)
        y = cpu.batch_norm_apply(x3d, mean, inv_std, _flat(weight), _flat(bias))
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
            running_var[...] = (1 - momentum) * running_var + momentum * var * (count /
                                                                                (count - 1))
        ctx.save_for_backward(x3d, mean, inv_std, weight, bias)
        ctx.count = int(count)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        from kernels import cpu

        x3d, mean, inv_std, weight, bias = ctx.saved_tensors
        dy = _contiguous(grad, x3d.shape)
        sum_dy, sum_dy_xmu = cpu.batch_norm_gradient_sums(dy, x3d, mean)
        needs = ctx.needs_input_grad
        dweight = _param_grad((sum_dy_xmu * inv_std).astype(x3d.dtype), weight, needs[1])
        dbias = _param_grad(sum_dy.astype(x3d.dtype), bias, needs[2])
        if not needs[0]:  # the same on every rank, so they all skip the all-reduce
            return None, dweight, dbias
        sums = np.concatenate([sum_dy, sum_dy_xmu])
        distributed.all_reduce(sums)
        channels = x3d.shape[1]
        dx = cpu.batch_norm_input_gradient(dy, x3d, mean, inv_std, _flat(weight),
                                           sums[:channels], sums[channels:], ctx.count)
        return dx.reshape(grad.shape), dweight, dbias


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over (N, C, *) input with statistics over every rank's batch
    (torch.nn.SyncBatchNorm). `process_group` must be None: the default group, every rank."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, process_group=None,
                 device=None, dtype=None, *, bias: bool = True) -> None:
        if process_group is not None:
            raise ValueError("SyncBatchNorm: only the default process group is supported "
                             f"(process_group=None, every rank), got {process_group!r}")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype, bias=bias)
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim < 2:
            raise _rank_error(type(self).__name__, "at least 2D", input)

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and distributed.is_initialized()
                and distributed.get_world_size() > 1):
            return super().forward(input)
        name = type(self).__name__
        self._check_input_dim(input)
        F._check_input(input, name)
        if input.device != "cpu":
            raise TypeError(f"{name}: across processes only CPU tensors are supported, got a "
                            f"{input.device} tensor")
        channels = input.shape[1]
        weight = F._check_param(self.weight, (channels,), input, "weight", name)
        bias = F._check_param(self.bias, (channels,), input, "bias", name)
        running_mean = F._running_buffer(self.running_mean, channels, input, "running_mean",
                                         name)
        running_var = F._running_buffer(self.running_var, channels, input, "running_var", name)
        factor = self._update_factor()
        return SyncBatchNormFunction.apply(input, weight, bias, eps=F._check_eps(self.eps, name),
                                           momentum=factor, running_mean=running_mean,
                                           running_var=running_var)

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group=None) -> Module:
        """`module` with every BatchNorm*d inside it replaced by a SyncBatchNorm that shares
        its parameters and running buffers (a BatchNorm `module` itself is returned
        converted); everything else is kept as it is."""
        converted = module
        if isinstance(module, _BatchNorm):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group)
            for name in ("weight", "bias"):  # bias may be None (BatchNorm(bias=False))
                if module.affine:
                    converted.register_parameter(name, getattr(module, name))
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                if module.track_running_stats:
                    setattr(converted, name, getattr(module, name))
            converted.train(module.training)
        for name, child in list(module.named_children()):
            converted.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return converted
