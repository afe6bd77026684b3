"""The case registry: one entry per normalization, read by everything that calls the kernels.

Each entry says how to build its inputs, how to run its forward and backward on any backend
(kernels.reference, kernels.cpu, kernels.cuda: the arguments are looked up by the names that
kernels/api.py declares, so no caller writes out an argument list), its PyTorch twin (the aten
kernels behind the PyTorch layer, no autograd), and its minimum memory traffic. The benchmark
(kernels/bench.py), the accuracy report (kernels/accuracy.py), the fuzz worker and the kernel,
argument and determinism tests all read `CASES`.

Minimum traffic, in bytes per element of x over the element size (kernels/README.md): a
per-row or per-(sample, group) normalization reads x and writes y (2) and reads dy and x and
writes dx (3); BatchNorm in training reads x twice (statistics, then apply: 3) and dy and x
twice (sums, then dx: 5); BatchNorm in eval is a per-channel affine map (2, and 3 for
backward, whose dweight needs x); LocalResponseNorm also writes and rereads its saved scale
(3 and 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from kernels import api

EPS = 1e-5


@dataclass(frozen=True)
class NormCase:
    name: str
    forward: str  # kernel names in kernels/api.py
    backward: str
    traffic: tuple[int, int]  # (forward, backward) minimum bytes per element / element size
    torch_twin: Callable | None  # (torch, tensors, affine) -> (forward(), backward()); None:
    # PyTorch has no such layer
    groups: Callable[[int], int] | None = None  # num_groups for C channels (GN, IN)
    scalars: tuple = ()  # further (name, value) arguments (LocalResponseNorm's size, ...)

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends that have this case's kernels (kernels/api.py)."""
        return api.BY_NAME[self.forward].backends

    @property
    def layout(self) -> str:
        """'rows' (x is (rows, cols)) or 'ncs' (x is (N, C, S))."""
        return api.BY_NAME[self.forward].layout

    def inputs(self, shape: tuple, dtype=np.float32, seed: int = 0, affine: bool = True,
               values: Callable | None = None, num_groups: int | None = None) -> dict:
        """Every argument any kernel of this case takes, by name. x is 0.5 + 1.5·N(0,1)
        unless `values(rng, shape)` says otherwise; dy is N(0,1); weight in [0.5, 1.5]."""
        rng = np.random.default_rng(seed)
        x = values(rng, shape) if values is not None else 0.5 + 1.5 * rng.standard_normal(shape)
        features = shape[1]
        weight = rng.uniform(0.5, 1.5, features)
        bias = 0.1 * rng.standard_normal(features)
        arrays = dict(x=x, dy=rng.standard_normal(shape),
                      weight=weight if affine else None, bias=bias if affine else None,
                      running_mean=0.1 * rng.standard_normal(features),
                      running_var=rng.uniform(0.5, 2.0, features))
        inputs = {k: None if v is None else np.ascontiguousarray(v, dtype)
                  for k, v in arrays.items()}
        inputs["eps"] = EPS
        inputs.update(self.scalars)
        if self.groups is not None:
            inputs["num_groups"] = self.groups(features) if num_groups is None else num_groups
        return inputs

    def arguments(self, kernel: str, named: dict) -> list:
        return [named[name] for name in api.BY_NAME[kernel].arguments]

    def run_forward(self, kernels, inputs: dict) -> dict:
        """The forward's results by name (kernels/api.py's `returns`)."""
        results = getattr(kernels, self.forward)(*self.arguments(self.forward, inputs))
        results = results if isinstance(results, tuple) else (results,)
        return dict(zip(api.BY_NAME[self.forward].returns, results))

    def run_backward(self, kernels, inputs: dict, forward: dict, param_grads: bool = True):
        """The backward's results as a tuple, from the forward's saved statistics."""
        named = {**inputs, **forward, "param_grads": param_grads}
        results = getattr(kernels, self.backward)(*self.arguments(self.backward, named))
        return results if isinstance(results, tuple) else (results,)

    def run(self, kernels, inputs: dict, param_grads: bool = True) -> tuple[tuple, tuple]:
        """(forward results, backward results) as tuples."""
        forward = self.run_forward(kernels, inputs)
        return tuple(forward.values()), self.run_backward(kernels, inputs, forward, param_grads)


# ------------------------------------------------------------------ PyTorch twins


def _mask(affine: bool) -> list:
    return [True, affine, affine]


def _layer_norm_twin(torch, t: dict, affine: bool):
    aten, cols = torch.ops.aten, t["x"].shape[1]
    _, mean, rstd = aten.native_layer_norm(t["x"], [cols], t["weight"], t["bias"], EPS)
    return (lambda: aten.native_layer_norm(t["x"], [cols], t["weight"], t["bias"], EPS),
            lambda: aten.native_layer_norm_backward(t["dy"], t["x"], [cols], mean, rstd,
                                                    t["weight"], t["bias"], _mask(affine)))


def _rms_norm_twin(torch, t: dict, affine: bool):
    # PyTorch 2.13 has no fused RMSNorm backward on the CPU: F.rms_norm's backward is
    # autograd through its composite forward, which is what a PyTorch user runs
    rms_norm, cols = torch.nn.functional.rms_norm, t["x"].shape[1]
    x = t["x"].clone().requires_grad_()
    weight = None if t["weight"] is None else t["weight"].clone().requires_grad_()
    out = rms_norm(x, [cols], weight, EPS)
    wanted = (x,) if weight is None else (x, weight)

    def forward():
        with torch.no_grad():
            return rms_norm(t["x"], [cols], t["weight"], EPS)

    return forward, lambda: torch.autograd.grad(out, wanted, t["dy"], retain_graph=True)


def _group_norm_twin(torch, t: dict, affine: bool):
    aten = torch.ops.aten
    batch, channels, spatial = t["x"].shape
    groups = t["num_groups"]
    _, mean, rstd = aten.native_group_norm(t["x"], t["weight"], t["bias"], batch, channels,
                                           spatial, groups, EPS)
    return (lambda: aten.native_group_norm(t["x"], t["weight"], t["bias"], batch, channels,
                                           spatial, groups, EPS),
            lambda: aten.native_group_norm_backward(t["dy"], t["x"], mean, rstd, t["weight"],
                                                    batch, channels, spatial, groups,
                                                    _mask(affine)))


def _instance_norm_twin(torch, t: dict, affine: bool):
    """PyTorch runs InstanceNorm as a BatchNorm over (1, N·C, S) (F.instance_norm), with the
    affine applied per channel afterwards; the normalization itself is timed."""
    aten = torch.ops.aten
    batch, channels, spatial = t["x"].shape
    x, dy = t["x"].reshape(1, batch * channels, spatial), t["dy"].reshape(1, -1, spatial)
    _, mean, rstd = aten.native_batch_norm(x, None, None, None, None, True, 0.1, EPS)
    return (lambda: aten.native_batch_norm(x, None, None, None, None, True, 0.1, EPS),
            lambda: aten.native_batch_norm_backward(dy, x, None, None, None, mean, rstd, True,
                                                    EPS, [True, False, False]))


def _batch_norm_twin(torch, t: dict, affine: bool):
    aten = torch.ops.aten
    _, mean, rstd = aten.native_batch_norm(t["x"], t["weight"], t["bias"], None, None, True,
                                           0.1, EPS)
    return (lambda: aten.native_batch_norm(t["x"], t["weight"], t["bias"], None, None, True,
                                           0.1, EPS),
            lambda: aten.native_batch_norm_backward(t["dy"], t["x"], t["weight"], None, None,
                                                    mean, rstd, True, EPS, _mask(affine)))


def _batch_norm_eval_twin(torch, t: dict, affine: bool):
    aten = torch.ops.aten
    stats = (t["running_mean"], t["running_var"])
    return (lambda: aten.native_batch_norm(t["x"], t["weight"], t["bias"], *stats, False, 0.1,
                                           EPS),
            lambda: aten.native_batch_norm_backward(t["dy"], t["x"], t["weight"], *stats, None,
                                                    None, False, EPS, _mask(affine)))


def _local_response_norm_twin(torch, t: dict, affine: bool):
    """F.local_response_norm (PyTorch composes it from avg_pool3d: no aten kernel of its own);
    its backward is autograd through that composite, which is what a PyTorch user runs."""
    lrn = torch.nn.functional.local_response_norm
    args = (t["size"], t["alpha"], t["beta"], t["k"])
    x = t["x"].clone().requires_grad_()
    out = lrn(x, *args)

    def forward():
        with torch.no_grad():
            return lrn(t["x"], *args)

    return forward, lambda: torch.autograd.grad(out, (x,), t["dy"], retain_graph=True)


def _channels_per_group_4(channels: int) -> int:
    return channels // 4 if channels % 4 == 0 and channels >= 4 else 1


CASES = (
    NormCase("LayerNorm", "layer_norm_forward", "layer_norm_backward", (2, 3),
             _layer_norm_twin),
    NormCase("RMSNorm", "rms_norm_forward", "rms_norm_backward", (2, 3), _rms_norm_twin),
    NormCase("GroupNorm", "group_norm_forward", "group_norm_backward", (2, 3),
             _group_norm_twin, groups=_channels_per_group_4),
    NormCase("InstanceNorm", "group_norm_forward", "group_norm_backward", (2, 3),
             _instance_norm_twin, groups=lambda channels: max(channels, 1)),
    NormCase("BatchNorm", "batch_norm_forward_train", "batch_norm_backward", (3, 5),
             _batch_norm_twin),
    NormCase("BatchNorm eval", "batch_norm_forward_eval", "batch_norm_backward_eval", (2, 3),
             _batch_norm_eval_twin),
    # BatchNorm's passes with r and d from the running statistics; no PyTorch twin
    NormCase("BatchRenorm", "batch_renorm_forward_train", "batch_renorm_backward", (3, 5), None,
             scalars=(("rmax", 2.0), ("dmax", 1.0))),
    # reads x, writes y and the saved scale; backward reads dy, x and scale, writes dx
    NormCase("LocalResponseNorm", "local_response_norm_forward", "local_response_norm_backward",
             (3, 4), _local_response_norm_twin,
             scalars=(("size", 3), ("alpha", 1e-2), ("beta", 0.75), ("k", 1.0))),
)
BY_NAME = {case.name: case for case in CASES}


def torch_tensors(torch, inputs: dict, device: str = "cpu") -> dict:
    """The same inputs as torch tensors sharing memory (CPU) or on `device`."""
    return {k: torch.as_tensor(v, device=device) if hasattr(v, "shape") else v
            for k, v in inputs.items()}
