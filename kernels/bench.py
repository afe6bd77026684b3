"""Benchmark of the CPU kernels against PyTorch CPU and the machine's copy bandwidth.

    python -m kernels.bench                 # table: every normalization, forward and backward
    python -m kernels.bench --json out.json # the same rows as JSON
    python -m kernels.bench --crossover     # serial vs parallel LayerNorm, to place the switch
    python -m kernels.bench --startup       # first-call compile time and cached-import time
    python -m kernels.bench --accuracy      # float32 error on hard inputs (kernels.accuracy)
    python -m kernels.bench --device cuda   # the numba.cuda kernels (kernels.cuda_bench)

Method: ours and PyTorch's kernel (torch.ops.aten.native_*: the kernels behind the layers,
without autograd) run interleaved in one process with the same thread count; each time is
the median of `--repeat` calls. Achieved GB/s uses the minimum traffic of KERNELS.md
(bytes that must cross memory at least once), and "copy" is a parallel read+write copy of
the same size measured in the same run, so the two are comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np

import kernels.cpu as cpu

EPS = 1e-5


@numba.njit(parallel=True, cache=True)
def _parallel_copy(source, target):
    for i in numba.prange(source.size):
        target[i] = source[i]


def median_seconds(fn: Callable[[], object], repeat: int, min_seconds: float = 0.0) -> float:
    """Median wall time of fn() over `repeat` calls (after one warm-up call)."""
    fn()
    times = []
    deadline = time.perf_counter() + min_seconds
    while len(times) < repeat or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def copy_gbps(nbytes: int, repeat: int) -> float:
    """Read + write bandwidth of a parallel copy of `nbytes`, in GB/s."""
    source = np.ones(nbytes // 4, np.float32)
    target = np.empty_like(source)
    return 2 * nbytes / median_seconds(lambda: _parallel_copy(source, target), repeat) / 1e9


@dataclass
class Case:
    """One normalization at one shape: our kernels and PyTorch's, forward and backward."""

    name: str
    shape: tuple
    forward: Callable
    backward: Callable
    torch_forward: Callable | None
    torch_backward: Callable | None
    traffic: tuple  # (forward, backward) bytes per element in units of the element size


def _torch_tensors(*arrays):
    import torch

    return [None if a is None else torch.from_numpy(a) for a in arrays]


def layer_norm_case(rows: int, cols: int, rng) -> Case:
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    weight, bias = np.ones(cols, np.float32), np.zeros(cols, np.float32)
    _, mean, inv_std = cpu.layer_norm_forward(x, weight, bias, EPS)
    case = Case("LayerNorm", x.shape, lambda: cpu.layer_norm_forward(x, weight, bias, EPS),
                lambda: cpu.layer_norm_backward(dy, x, mean, inv_std, weight), None, None, (2, 3))
    try:
        import torch
    except ImportError:
        return case
    tx, tdy, tw, tb = _torch_tensors(x, dy, weight, bias)
    _, tmean, trstd = torch.ops.aten.native_layer_norm(tx, [cols], tw, tb, EPS)
    case.torch_forward = lambda: torch.ops.aten.native_layer_norm(tx, [cols], tw, tb, EPS)
    case.torch_backward = lambda: torch.ops.aten.native_layer_norm_backward(
        tdy, tx, [cols], tmean, trstd, tw, tb, [True, True, True])
    return case


def rms_norm_case(rows: int, cols: int, rng) -> Case:
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    weight = np.ones(cols, np.float32)
    _, inv_rms = cpu.rms_norm_forward(x, weight, EPS)
    case = Case("RMSNorm", x.shape, lambda: cpu.rms_norm_forward(x, weight, EPS),
                lambda: cpu.rms_norm_backward(dy, x, inv_rms, weight), None, None, (2, 3))
    try:
        import torch
    except ImportError:
        return case
    tx, tdy, tw = _torch_tensors(x, dy, weight)
    case.torch_forward = lambda: torch.ops.aten._fused_rms_norm(tx, [cols], tw, EPS)
    # PyTorch 2.13 has no fused RMSNorm backward on the CPU: F.rms_norm's backward is
    # autograd through its composite forward, which is what a PyTorch user runs
    gx, gw = tx.clone().requires_grad_(), tw.clone().requires_grad_()
    out = torch.nn.functional.rms_norm(gx, [cols], gw, EPS)
    case.torch_backward = lambda: torch.autograd.grad(out, (gx, gw), tdy, retain_graph=True)
    return case


def group_norm_case(shape: tuple, num_groups: int, rng, name: str = "GroupNorm") -> Case:
    """GroupNorm of x (N, C, S); InstanceNorm is num_groups == C (PyTorch runs its
    InstanceNorm as a BatchNorm over (1, N·C, S), so that is what it is timed with)."""
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    batch, channels, spatial = shape
    weight, bias = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    _, mean, inv_std = cpu.group_norm_forward(x, num_groups, weight, bias, EPS)
    case = Case(name, shape, lambda: cpu.group_norm_forward(x, num_groups, weight, bias, EPS),
                lambda: cpu.group_norm_backward(dy, x, mean, inv_std, num_groups, weight),
                None, None, (2, 3))
    try:
        import torch
    except ImportError:
        return case
    tx, tdy, tw, tb = _torch_tensors(x, dy, weight, bias)
    if name == "InstanceNorm":
        flat_x, flat_dy = tx.reshape(1, batch * channels, spatial), tdy.reshape(1, -1, spatial)
        _, tmean, trstd = torch.ops.aten.native_batch_norm(flat_x, None, None, None, None,
                                                           True, 0.1, EPS)
        case.torch_forward = lambda: torch.ops.aten.native_batch_norm(
            flat_x, None, None, None, None, True, 0.1, EPS)
        case.torch_backward = lambda: torch.ops.aten.native_batch_norm_backward(
            flat_dy, flat_x, None, None, None, tmean, trstd, True, EPS, [True, False, False])
        return case
    _, tmean, trstd = torch.ops.aten.native_group_norm(tx, tw, tb, batch, channels, spatial,
                                                       num_groups, EPS)
    case.torch_forward = lambda: torch.ops.aten.native_group_norm(
        tx, tw, tb, batch, channels, spatial, num_groups, EPS)
    case.torch_backward = lambda: torch.ops.aten.native_group_norm_backward(
        tdy, tx, tmean, trstd, tw, batch, channels, spatial, num_groups, [True, True, True])
    return case


def batch_norm_case(shape: tuple, rng) -> Case:
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    channels = shape[1]
    weight, bias = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    _, mean, inv_std, _ = cpu.batch_norm_forward_train(x, weight, bias, EPS)
    case = Case("BatchNorm", shape, lambda: cpu.batch_norm_forward_train(x, weight, bias, EPS),
                lambda: cpu.batch_norm_backward(dy, x, mean, inv_std, weight), None, None,
                (3, 5))
    try:
        import torch
    except ImportError:
        return case
    tx, tdy, tw, tb = _torch_tensors(x, dy, weight, bias)
    _, tmean, tinv = torch.ops.aten.native_batch_norm(tx, tw, tb, None, None, True, 0.1, EPS)
    case.torch_forward = lambda: torch.ops.aten.native_batch_norm(tx, tw, tb, None, None, True,
                                                                  0.1, EPS)
    case.torch_backward = lambda: torch.ops.aten.native_batch_norm_backward(
        tdy, tx, tw, None, None, tmean, tinv, True, EPS, [True, True, True])
    return case


def batch_norm_eval_case(shape: tuple, rng) -> Case:
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    channels = shape[1]
    weight, bias = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    running_mean = np.zeros(channels, np.float32)
    running_var = np.ones(channels, np.float32)
    case = Case("BatchNorm eval", shape,
                lambda: cpu.batch_norm_forward_eval(x, running_mean, running_var, weight, bias,
                                                    EPS),
                lambda: cpu.batch_norm_backward_eval(dy, x, running_mean, running_var, weight,
                                                     EPS),
                None, None, (2, 3))
    try:
        import torch
    except ImportError:
        return case
    tx, tdy, tw, tb, tm, tv = _torch_tensors(x, dy, weight, bias, running_mean, running_var)
    case.torch_forward = lambda: torch.ops.aten.native_batch_norm(tx, tw, tb, tm, tv, False,
                                                                  0.1, EPS)
    case.torch_backward = lambda: torch.ops.aten.native_batch_norm_backward(
        tdy, tx, tw, tm, tv, None, None, False, EPS, [True, True, True])
    return case


def cases(size: str, rng) -> list[Case]:
    """'small': the shapes the examples train with; 'large': 64 MB float32 working sets."""
    if size == "small":
        return [layer_norm_case(64, 128, rng), rms_norm_case(64, 128, rng),
                batch_norm_case((64, 128, 1), rng), batch_norm_case((64, 16, 64), rng),
                batch_norm_eval_case((64, 16, 64), rng),
                group_norm_case((64, 16, 64), 4, rng),
                group_norm_case((64, 16, 64), 16, rng, "InstanceNorm")]
    return [layer_norm_case(16384, 1024, rng), rms_norm_case(16384, 1024, rng),
            batch_norm_case((64, 64, 4096), rng), batch_norm_eval_case((64, 64, 4096), rng),
            group_norm_case((64, 64, 4096), 16, rng),
            group_norm_case((64, 64, 4096), 64, rng, "InstanceNorm")]


def run_case(case: Case, repeat: int, copy: float) -> list[dict]:
    rows = []
    element_bytes = 4
    elements = int(np.prod(case.shape))
    passes = [("forward", case.forward, case.torch_forward, case.traffic[0]),
              ("backward", case.backward, case.torch_backward, case.traffic[1])]
    for direction, ours, theirs, traffic in passes:
        ours_times, theirs_times = [], []
        ours()
        if theirs is not None:
            theirs()
        for _ in range(repeat):  # interleaved, so drifting machine load hits both alike
            ours_times.append(median_seconds(ours, 1))
            if theirs is not None:
                theirs_times.append(median_seconds(theirs, 1))
        ours_s = statistics.median(ours_times)
        theirs_s = statistics.median(theirs_times) if theirs_times else None
        gbps = traffic * elements * element_bytes / ours_s / 1e9
        rows.append(dict(
            op=case.name, direction=direction, shape=list(case.shape),
            megabytes=round(elements * element_bytes / 1e6, 3), ours_us=ours_s * 1e6,
            torch_us=None if theirs_s is None else theirs_s * 1e6,
            speedup=None if theirs_s is None else theirs_s / ours_s,
            ours_gbps=gbps, copy_gbps=copy, fraction_of_copy=gbps / copy))
    return rows


def print_table(rows: list[dict]) -> None:
    header = (f"{'op':15s} {'dir':8s} {'shape':>16s} {'MB':>7s} {'ours us':>10s} "
              f"{'torch us':>10s} {'speedup':>8s} {'GB/s':>6s} {'% copy':>7s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        torch_us = "-" if r["torch_us"] is None else f"{r['torch_us']:10.1f}"
        speedup = "-" if r["speedup"] is None else f"{r['speedup']:7.2f}x"
        shape = "x".join(str(s) for s in r["shape"])
        print(f"{r['op']:15s} {r['direction']:8s} {shape:>16s} {r['megabytes']:7.2f} "
              f"{r['ours_us']:10.1f} {torch_us:>10s} {speedup:>8s} {r['ours_gbps']:6.1f} "
              f"{100 * r['fraction_of_copy']:6.0f}%")


def _layer_norm_drivers(elements: int) -> tuple[Callable, Callable]:
    """The serial and the parallel LayerNorm forward driver on one (elements/256, 256) input."""
    from kernels.cpu import layer_norm as ln

    x = np.random.default_rng(0).standard_normal((elements // 256, 256)).astype(np.float32)
    w, b = np.ones(256, np.float32), np.zeros(256, np.float32)
    y = np.empty_like(x)
    mean, inv_std = np.empty((2, len(x)), np.float32)
    threads = numba.get_num_threads()
    return (lambda: ln._forward_rows(x, w, b, EPS, y, mean, inv_std, 0, len(x)),
            lambda: ln._forward_parallel(x, w, b, EPS, y, mean, inv_std, threads))


def crossover(repeat: int) -> None:
    """Serial vs parallel LayerNorm forward at growing sizes (sets SERIAL_MAX_ELEMENTS)."""
    print(f"{'elements':>10s} {'serial us':>10s} {'parallel us':>12s}")
    for elements in (4096, 16384, 65536, 262144, 1048576):
        serial, parallel = _layer_norm_drivers(elements)
        print(f"{elements:10d} {median_seconds(serial, repeat) * 1e6:10.1f} "
              f"{median_seconds(parallel, repeat) * 1e6:12.1f}")


_STARTUP_SCRIPT = """
import time
start = time.perf_counter()
import numpy as np
import kernels.cpu as k
imported = time.perf_counter()
for dtype, size in [(t, s) for t in (np.float32, np.float64) for s in (3, 2100)]:
    x = np.ones((4, 8, size), dtype); w = np.ones(8, dtype); b = np.zeros(8, dtype)
    x2 = x.reshape(4, -1); w2 = np.ones(x2.shape[1], dtype)
    _, m, r = k.layer_norm_forward(x2, w2, None, 1e-5); k.layer_norm_backward(x2, x2, m, r, w2)
    _, r = k.rms_norm_forward(x2, w2, 1e-5); k.rms_norm_backward(x2, x2, r, w2)
    _, m, r = k.group_norm_forward(x, 2, w, b, 1e-5); k.group_norm_backward(x, x, m, r, 2, w)
    _, m, r, _ = k.batch_norm_forward_train(x, w, b, 1e-5); k.batch_norm_backward(x, x, m, r, w)
    k.batch_norm_forward_eval(x, b, w, w, b, 1e-5); k.batch_norm_backward_eval(x, x, b, w, w, 1e-5)
print(imported - start, time.perf_counter() - imported)
"""


def startup() -> dict:
    """Import time and the time to run every kernel once (float32 and float64, the serial
    and the parallel driver), with an empty Numba cache (compilation) and then with the
    cache it left (cached load)."""
    import tempfile

    results = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold cache (compile)", "warm cache (load)"):
            out = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            results[label] = dict(import_s=float(out[0]), first_calls_s=float(out[1]))
            print(f"{label:22s} import {float(out[0]):6.2f} s   first call of every kernel, "
                  f"float32 and float64, serial and parallel {float(out[1]):6.2f} s")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--sizes", default="small,large",
                        help="comma list of 'small' (example shapes) and 'large' (64 MB)")
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per case (median)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--crossover", action="store_true")
    parser.add_argument("--startup", action="store_true")
    parser.add_argument("--accuracy", action="store_true")
    args, rest = parser.parse_known_args(argv)
    if args.repeat < 1:  # a median of no calls
        parser.error(f"argument --repeat: must be an integer >= 1, got {args.repeat}")
    if args.device == "cuda":
        from kernels import cuda_bench

        return cuda_bench.main([a for a in (argv or sys.argv[1:]) if a not in ("--device",
                                                                                "cuda")])
    if args.accuracy:
        from kernels import accuracy

        return accuracy.main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.crossover:
        crossover(args.repeat)
        return 0
    if args.startup:
        startup()
        return 0
    try:
        import torch

        torch.set_num_threads(numba.get_num_threads())
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
        print("PyTorch is not installed: its columns are empty (pip install torch==2.13.0)")
    policy = os.environ.get("OMP_WAIT_POLICY", "")
    print(f"{numba.get_num_threads()} threads, numba {numba.__version__}, torch "
          f"{torch_version}, float32, median of {args.repeat}, OMP_WAIT_POLICY={policy}\n")
    if policy.lower() == "passive":
        print("note: PyTorch shares this process's OpenMP runtime, and passive waiting (our\n"
              "default, safe on a busy machine) makes its small multi-threaded calls several\n"
              "times slower; on a quiet machine OMP_WAIT_POLICY=active compares like with like\n")
    rng = np.random.default_rng(0)
    rows = []
    copy_by_size: dict[int, float] = {}  # one copy measurement per working-set size
    for size in args.sizes.split(","):
        if size not in ("small", "large"):
            parser.error(f"--sizes takes 'small' and/or 'large', got {size!r}")
        for case in cases(size, rng):
            nbytes = max(int(np.prod(case.shape)) * 4, 1 << 20)
            if nbytes not in copy_by_size:
                copy_by_size[nbytes] = copy_gbps(nbytes, 3 * args.repeat)
            rows += run_case(case, args.repeat, copy_by_size[nbytes])
            del case
    print_table(rows)
    print(f"\nnumba threading layer: {numba.threading_layer()}")
    if args.json:
        meta = dict(machine=platform.machine(), processor=platform.processor(),
                    threads=numba.get_num_threads(), threading_layer=numba.threading_layer(),
                    numba=numba.__version__, torch=torch_version, repeat=args.repeat)
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
