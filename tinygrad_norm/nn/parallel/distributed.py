"""DistributedDataParallel: the same model on every rank, each on its own share of the data,
with gradients averaged across ranks after every backward (torch.nn.parallel's DDP).

At construction rank 0's parameters and buffers are broadcast, so every rank starts equal.
Gradients are averaged in buckets: the parameters, in reverse registration order (roughly the
order backward produces their gradients), are grouped into buckets of at most
`bucket_cap_mb` per dtype, and each bucket's gradients are flattened into one buffer and
all-reduced in one call once backward has accumulated all of them. Buckets are reduced in
bucket order on every rank (MPI needs every rank to call the collectives in the same order).
With `broadcast_buffers` (the default) rank 0's buffers (e.g. BatchNorm's running
statistics) are broadcast before each training forward, as in PyTorch.
"""

from __future__ import annotations

import numpy as np

from ... import distributed
from ..module import Module


class _Bucket:
    """Parameters whose gradients are all-reduced together, in one flat buffer."""

    def __init__(self, params: list) -> None:
        self.params = params
        self.ready: set[int] = set()

    def reduce(self, world_size: int) -> None:
        flat = np.concatenate([p.grad.data.reshape(-1) for p in self.params])
        distributed.all_reduce(flat)
        flat /= world_size
        offset = 0
        for p in self.params:
            p.grad.data = flat[offset:offset + p.data.size].reshape(p.shape)
            offset += p.data.size
        self.ready.clear()


class DistributedDataParallel(Module):
    """Wraps `module`; calling it calls `module`, and backward averages the gradients across
    the default process group. `module` is an attribute, so state_dict keys start with
    "module." as in PyTorch."""

    def __init__(self, module: Module, broadcast_buffers: bool = True,
                 bucket_cap_mb: float = 25.0) -> None:
        super().__init__()
        if not distributed.is_initialized():
            raise RuntimeError("DistributedDataParallel: the default process group is not "
                               "initialized; call tinygrad_norm.distributed."
                               "init_process_group() first (and launch with mpiexec -n N)")
        if bucket_cap_mb <= 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be > 0, got "
                             f"{bucket_cap_mb}")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.bucket_cap_mb = bucket_cap_mb
        self._world_size = distributed.get_world_size()
        self._broadcast(list(module.parameters()) + list(module.buffers()))
        self._buckets = self._make_buckets(bucket_cap_mb * 2 ** 20)
        self._next_bucket = 0
        self._bucket_of = {}
        for index, bucket in enumerate(self._buckets):
            for p in bucket.params:
                self._bucket_of[id(p)] = index
                p.register_post_accumulate_grad_hook(self._grad_ready)

    @staticmethod
    def _broadcast(tensors: list) -> None:
        """Rank 0's values into `tensors`, one broadcast per dtype. Every rank must hold the
        same tensors: their shapes are checked by the broadcast itself."""
        by_dtype: dict = {}
        for t in tensors:
            by_dtype.setdefault(t.data.dtype, []).append(t)
        for dtype in sorted(by_dtype, key=str):
            group = by_dtype[dtype]
            flat = np.concatenate([t.data.reshape(-1) for t in group])
            distributed.broadcast(flat, src=0)
            offset = 0
            for t in group:
                t.data[...] = flat[offset:offset + t.data.size].reshape(t.shape)
                offset += t.data.size

    def _make_buckets(self, cap_bytes: float) -> list[_Bucket]:
        buckets, open_buckets = [], {}
        for p in reversed([p for p in self.module.parameters() if p.requires_grad]):
            params, size = open_buckets.get(p.data.dtype, ([], 0))
            if params and size + p.data.nbytes > cap_bytes:
                buckets.append(_Bucket(params))
                params, size = [], 0
            open_buckets[p.data.dtype] = (params + [p], size + p.data.nbytes)
        buckets += [_Bucket(params) for params, _ in open_buckets.values()]
        return buckets

    def _grad_ready(self, param) -> None:
        self._buckets[self._bucket_of[id(param)]].ready.add(id(param))
        while (self._next_bucket < len(self._buckets)
               and len(self._buckets[self._next_bucket].ready)
               == len(self._buckets[self._next_bucket].params)):
            self._buckets[self._next_bucket].reduce(self._world_size)
            self._next_bucket += 1
        if self._next_bucket == len(self._buckets):
            self._next_bucket = 0

    def forward(self, *args, **kwargs):
        if self._next_bucket or any(bucket.ready for bucket in self._buckets):
            missing = [name for name, p in self.module.named_parameters()
                       if p.requires_grad and not any(id(p) in b.ready for b in self._buckets)]
            raise RuntimeError(
                "DistributedDataParallel: the previous backward did not reach every "
                f"parameter, so its gradients were not all averaged; no gradient for: "
                f"{', '.join(missing)}. Every parameter that requires grad must take part "
                "in the loss")
        if self.broadcast_buffers and self.training:
            buffers = list(self.module.buffers())
            if buffers:
                self._broadcast(buffers)
        return self.module(*args, **kwargs)
