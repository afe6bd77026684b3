"""Forward + backward through the normalization layers, autograd included, against PyTorch.

`tinygrad-norm bench` prints this after the kernel table of `python -m kernels.bench`: it is
what a training step pays per layer at the shapes the examples use (the kernels alone are
measured there; this adds validation, reshapes and the autograd graph). Without PyTorch the
torch column is empty.
"""

from __future__ import annotations

import numpy as np

from kernels.bench import median_seconds

from . import nn
from .tensor import Tensor

# (layer name, constructor args, input shape): the examples' MLP width and CNN feature maps
LAYERS = [
    ("BatchNorm1d", (128,), (64, 128)),
    ("LayerNorm", (128,), (64, 128)),
    ("RMSNorm", (128,), (64, 128)),
    ("BatchNorm2d", (16,), (64, 16, 8, 8)),
    ("GroupNorm", (4, 16), (64, 16, 8, 8)),
    ("InstanceNorm2d", (16,), (64, 16, 8, 8)),
]
# the same layers at 16 MiB: tinygrad_norm.train_bench.LAYERS_16MB, timed in own processes


def _step_seconds(layer, make_input, upstream, repeat: int) -> float:
    return median_seconds(lambda: layer(make_input()).backward(upstream), repeat)


def compare(repeat: int = 50, layers: list = LAYERS) -> list[dict]:
    """Median forward+backward time per layer, ours and (if installed) PyTorch's, same
    threads, three interleaved rounds (the best round's median of each)."""
    import numba

    try:
        import torch
    except ImportError:
        torch = None
    else:
        torch.set_num_threads(numba.get_num_threads())
    rng = np.random.default_rng(0)
    rows = []
    for name, args, shape in layers:
        x = rng.standard_normal(shape).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        ours = getattr(nn, name)(*args)
        ours_s = torch_s = float("inf")
        for _ in range(3):
            ours_s = min(ours_s, _step_seconds(ours, lambda x=x: Tensor(x, requires_grad=True),
                                               dy, repeat))
            if torch is not None:
                theirs, tx = getattr(torch.nn, name)(*args), torch.from_numpy(x)
                torch_s = min(torch_s, _step_seconds(  # a fresh leaf, no copy, like ours
                    theirs, lambda tx=tx: tx.detach().requires_grad_(), torch.from_numpy(dy),
                    repeat))
        has_torch = torch is not None
        rows.append(dict(layer=name, shape=list(shape), ours_us=ours_s * 1e6,
                         torch_us=torch_s * 1e6 if has_torch else None,
                         speedup=torch_s / ours_s if has_torch else None))
    return rows


def main(repeat: int = 50, layers: list = LAYERS) -> list[dict]:
    rows = compare(repeat, layers)
    print(f"\n{'layer (forward+backward, autograd)':36s} {'shape':>12s} {'ours us':>9s} "
          f"{'torch us':>9s} {'speedup':>8s}")
    for r in rows:
        shape = "x".join(str(s) for s in r["shape"])
        torch_us = "-" if r["torch_us"] is None else f"{r['torch_us']:9.1f}"
        speedup = "-" if r["speedup"] is None else f"{r['speedup']:7.2f}x"
        print(f"{r['layer']:36s} {shape:>12s} {r['ours_us']:9.1f} {torch_us:>9s} {speedup:>8s}")
    return rows
