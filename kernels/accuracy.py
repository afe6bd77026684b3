"""Numerics report: float32 error of every CPU kernel against the float64 reference
(kernels.reference) on hard inputs, next to PyTorch's float32 error on the same inputs.

    python -m kernels.accuracy [--skip-huge] [--no-torch]

Errors, on the same float32 input and upstream gradient:
    forward   max |y - y64|, y in normalized units (O(1))
    backward  max over dx, dweight, dbias of max |g - g64| / max |g64|
Inputs: a large offset (1e4 + 0.01·N(0,1), where E[x^2] - E[x]^2 and even a plain float32
two-pass mean fail), tiny variance (1e-3·N(0,1), below eps), huge sets (2^24 elements in one
row, channel or group: long sums) and values near float32 overflow (1e37·N(0,1): x^2
overflows float32). PyTorch's column is skipped when torch is not installed.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from kernels import api, cases, cpu, reference
from kernels.cases import NormCase

EPS = 1e-5
HUGE = 2**24


@dataclass
class HardInput:
    name: str
    values: Callable[[np.random.Generator, tuple], np.ndarray]
    huge: bool = False


HARD_INPUTS = [
    HardInput("offset 1e4 + 0.01·N(0,1)",
              lambda rng, shape: 1e4 + 0.01 * rng.standard_normal(shape)),
    HardInput("tiny variance 1e-3·N(0,1)", lambda rng, shape: 1e-3 * rng.standard_normal(shape)),
    HardInput("huge sets: 2^24 elements", lambda rng, shape: 3 + rng.standard_normal(shape), True),
    HardInput("near overflow 1e37·N(0,1)", lambda rng, shape: 1e37 * rng.standard_normal(shape)),
]


@dataclass
class Norm:
    """One normalization of the case registry at its report shapes (normal and huge)."""

    case: NormCase
    shape: tuple
    huge_shape: tuple
    num_groups: int | None = None
    torch: Callable | None = None  # (x, w, b, dy) -> (y, (dx, dw, db)), PyTorch float32

    @property
    def name(self) -> str:
        """The case's name; BatchNorm's training mode says so, beside "BatchNorm eval"."""
        return "BatchNorm train" if self.case.name == "BatchNorm" else self.case.name


def _running_stats(x):
    """The batch's exact statistics rounded to float32, in x's dtype: eval mode on its own
    batch, with the same running statistics for the float32 kernels and the reference."""
    x64 = x.astype(np.float64)
    rounded = (x64.mean(axis=(0, 2)).astype(np.float32), x64.var(axis=(0, 2)).astype(np.float32))
    return tuple(s.astype(x.dtype) for s in rounded)


def _torch_runs():
    """PyTorch float32 twins, or None for each when torch is missing."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return {}

    def autograd(forward):
        def run(x, w, b, dy):
            tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
            y = forward(torch, F, tx, tw, tb)
            y.backward(torch.from_numpy(dy))
            grads = [t.grad.numpy() if t.grad is not None else np.zeros_like(a)
                     for t, a in ((tx, x), (tw, w), (tb, b))]
            return y.detach().numpy(), tuple(grads)
        return run

    def eval_forward(torch, F, x, w, b):
        running_mean, running_var = (torch.from_numpy(a) for a in _running_stats(x.detach()
                                                                                 .numpy()))
        return F.batch_norm(x, running_mean, running_var, w, b, False, 0.0, EPS)

    return {
        "LayerNorm": autograd(lambda torch, F, x, w, b: F.layer_norm(x, x.shape[1:], w, b, EPS)),
        "RMSNorm": autograd(lambda torch, F, x, w, b: F.rms_norm(x, x.shape[1:], w, EPS)),
        "GroupNorm": autograd(lambda torch, F, x, w, b: F.group_norm(x, 8, w, b, EPS)),
        "InstanceNorm": autograd(
            lambda torch, F, x, w, b: F.instance_norm(x, weight=w, bias=b, eps=EPS)),
        "BatchNorm train": autograd(
            lambda torch, F, x, w, b: F.batch_norm(x, None, None, w, b, True, 0.0, EPS)),
        "BatchNorm eval": autograd(eval_forward),
    }


def norms() -> list[Norm]:
    torch_runs = _torch_runs()
    table = [
        ("LayerNorm", (256, 1024), (1, HUGE), None),
        ("RMSNorm", (256, 1024), (1, HUGE), None),
        ("GroupNorm", (32, 32, 256), (1, 8, HUGE // 8), 8),
        ("InstanceNorm", (32, 32, 256), (1, 1, HUGE), None),
        ("BatchNorm", (64, 32, 256), (16, 1, HUGE // 16), None),
        ("BatchNorm eval", (64, 32, 256), (16, 1, HUGE // 16), None),
    ]
    norms = [Norm(cases.BY_NAME[name], shape, huge, groups) for name, shape, huge, groups in table]
    for norm in norms:
        norm.torch = torch_runs.get(norm.name)
    return norms


def _run(norm: Norm, kernels, inputs: dict):
    """(y, (dx, dweight, dbias)) of one backend; RMSNorm has no dbias: zeros stand in."""
    forward, grads = norm.case.run(kernels, inputs)
    if len(grads) == 2:
        grads = (*grads, np.zeros_like(grads[1]))
    return forward[0], grads


def _forward_error(y, y64) -> float:
    return float(np.max(np.abs(y.astype(np.float64) - y64)))


def _backward_error(grads, grads64) -> float:
    errors = []
    for g, g64 in zip(grads, grads64):
        scale = float(np.max(np.abs(g64)))
        errors.append(float(np.max(np.abs(g.astype(np.float64) - g64))) / (scale or 1.0))
    return max(errors)


def measure(norm: Norm, hard: HardInput, seed: int = 0) -> dict:
    """{"ours": (forward, backward), "torch": (forward, backward) or None} for one pair."""
    shape = norm.huge_shape if hard.huge else norm.shape
    inputs = norm.case.inputs(shape, np.float32, seed, values=hard.values,
                              num_groups=norm.num_groups)
    if "running_mean" in api.BY_NAME[norm.case.forward].arguments:
        inputs["running_mean"], inputs["running_var"] = _running_stats(inputs["x"])
    inputs64 = {k: v.astype(np.float64) if isinstance(v, np.ndarray) else v
                for k, v in inputs.items()}
    y64, grads64 = _run(norm, reference, inputs64)
    runs = {"ours": lambda: _run(norm, cpu, inputs),
            "torch": None if norm.torch is None else
            lambda: norm.torch(*(inputs[k] for k in ("x", "weight", "bias", "dy")))}
    results = {}
    for label, run in runs.items():
        if run is None:
            results[label] = None
            continue
        with np.errstate(all="ignore"):
            y, grads = run()
            results[label] = (_forward_error(y, y64), _backward_error(grads, grads64))
    return results


def _text(error: float | None) -> str:
    return "—" if error is None else f"{error:.1e}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-huge", action="store_true",
                        help="leave out the 2^24-element sets (most of the run time)")
    parser.add_argument("--no-torch", action="store_true", help="leave out PyTorch's column")
    args = parser.parse_args(argv)
    selected = [hard for hard in HARD_INPUTS if not (hard.huge and args.skip_huge)]
    header = f"{'input':28} {'normalization':16} {'direction':9} {'ours':>9} {'PyTorch':>9}"
    print("float32 error against the float64 reference (forward: max abs, normalized units; "
          "backward: max relative)")
    print(header)
    print("-" * len(header))
    for hard in selected:
        for norm in norms():
            if norm.name == "BatchNorm eval" and hard.name.startswith("near overflow"):
                continue  # its running_var (~1e74) is not a float32 number: no such input
            if args.no_torch:
                norm.torch = None
            errors = measure(norm, hard)
            for i, direction in enumerate(("forward", "backward")):
                theirs = None if errors["torch"] is None else errors["torch"][i]
                print(f"{hard.name:28} {norm.name:16} {direction:9} "
                      f"{_text(errors['ours'][i]):>9} {_text(theirs):>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
