"""What SyncBatchNorm costs over BatchNorm per training step, and where the time goes:

    mpiexec -n 4 python -m tinygrad_norm.distributed.bench [--repeat 200]

Each rank runs forward + backward of BatchNorm2d and of SyncBatchNorm on its own batch, for a
few shapes (per-rank N, C, H, W). The ranks start each step together (a barrier, not timed),
a step's time is the slowest rank's, and the table shows medians (and minima) over the
repeats. SyncBatchNorm's step is split into its kernels (statistics, apply, gradient sums,
input gradient) and its two collectives (the all-gather of the statistics in forward, the
all-reduce of the gradient sums in backward), timed by wrapping the very functions it calls;
each collective includes the shape check that precedes it (a second, small MPI call).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .. import distributed as dist
from .. import nn
from ..tensor import Tensor

SHAPES = [(8, 32, 4, 4), (32, 64, 16, 16)]
KERNELS = ("batch_norm_statistics", "batch_norm_apply", "batch_norm_gradient_sums",
           "batch_norm_input_gradient")
COLLECTIVES = ("all_gather", "all_reduce")


class _Timers:
    """Wraps module attributes so that each call adds its duration to timings[name]."""

    def __init__(self, targets: list[tuple[object, str]]) -> None:
        self.timings = {name: 0.0 for _, name in targets}
        self._saved = [(module, name, getattr(module, name)) for module, name in targets]
        for module, name, original in self._saved:
            setattr(module, name, self._timed(name, original))

    def _timed(self, name, original):
        def call(*args, **kwargs):
            start = time.perf_counter()
            result = original(*args, **kwargs)
            self.timings[name] += time.perf_counter() - start
            return result
        return call

    def reset(self) -> None:
        for name in self.timings:
            self.timings[name] = 0.0

    def restore(self) -> None:
        for module, name, original in self._saved:
            setattr(module, name, original)


def _step(layer, x: np.ndarray, grad: np.ndarray) -> float:
    dist.barrier()
    start = time.perf_counter()
    xt = Tensor(x, requires_grad=True)
    layer(xt).backward(grad)
    return time.perf_counter() - start


def _slowest(values: np.ndarray) -> np.ndarray:
    """Per repeat, the largest value over the ranks."""
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def measure(shape: tuple, repeat: int) -> dict:
    from kernels import cpu

    rng = np.random.default_rng(dist.get_rank())
    x = rng.standard_normal(shape).astype(np.float32)
    grad = rng.standard_normal(shape).astype(np.float32)
    plain, sync = nn.BatchNorm2d(shape[1]), nn.SyncBatchNorm(shape[1])
    for _ in range(5):  # compile and warm up
        _step(plain, x, grad)
        _step(sync, x, grad)
    plain_times = _slowest(np.array([_step(plain, x, grad) for _ in range(repeat)]))
    timers = _Timers([(cpu, name) for name in KERNELS] + [(dist, name) for name in COLLECTIVES])
    sync_times, parts = [], {name: [] for name in timers.timings}
    try:
        for _ in range(repeat):
            timers.reset()
            sync_times.append(_step(sync, x, grad))
            for name, seconds in timers.timings.items():
                parts[name].append(seconds)
    finally:
        timers.restore()
    sync_times = _slowest(np.array(sync_times))
    row = {"shape": shape, "batchnorm": float(np.median(plain_times)),
           "syncbatchnorm": float(np.median(sync_times)),
           "batchnorm_min": float(plain_times.min()), "syncbatchnorm_min": float(sync_times.min())}
    for name, values in parts.items():
        row[name] = float(np.median(_slowest(np.array(values))))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    dist.init_process_group("mpi")
    world = dist.get_world_size()
    rows = [measure(shape, args.repeat) for shape in SHAPES]
    if dist.get_rank() == 0:
        print(f"{world} ranks; forward + backward per step, float32, slowest rank, median "
              f"(min) of {args.repeat} steps, microseconds")
        print("| ranks | per-rank input (N, C, H, W) | BatchNorm2d | SyncBatchNorm | extra | "
              "all-gather (fwd) | all-reduce (bwd) | the 4 split kernels |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            kernels = sum(r[name] for name in KERNELS)
            extra = r["syncbatchnorm"] - r["batchnorm"]
            print(f"| {world} | {r['shape']} | {1e6 * r['batchnorm']:.0f} "
                  f"({1e6 * r['batchnorm_min']:.0f}) | {1e6 * r['syncbatchnorm']:.0f} "
                  f"({1e6 * r['syncbatchnorm_min']:.0f}) | {1e6 * extra:+.0f} "
                  f"({r['syncbatchnorm'] / r['batchnorm']:.1f}x) | "
                  f"{1e6 * r['all_gather']:.0f} | {1e6 * r['all_reduce']:.0f} | "
                  f"{1e6 * kernels:.0f} |")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
