"""Benchmark of the numba.cuda kernels against PyTorch CUDA and the GPU's copy bandwidth.

    tinygrad-norm bench --device cuda                # every normalization, 4 MB to 1 GB
    python -m kernels.cuda_bench --sizes 64,256 --json out.json
    NUMBA_ENABLE_CUDASIM=1 python -m kernels.cuda_bench --smoke   # code paths, no timings

Method: inputs are CuPy arrays; PyTorch (when it has CUDA) runs its own kernels
(torch.ops.aten.native_*, no autograd; RMSNorm's backward through autograd) on the same
memory. Each time is the median of `--repeat` calls, ours and PyTorch's interleaved, each
timed with CUDA events around the call (so launch overhead counts). Achieved GB/s uses the
minimum traffic of KERNELS.md; "copy" is a device-to-device copy (read + write) of the same
working set, measured in the same run. The working set is the size of x (float32).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Callable

import numpy as np

from kernels.bench import Case

EPS = 1e-5
SIZES_MB = (4, 16, 64, 256, 1024)


class Timer:
    """Seconds per call: CUDA events on a GPU, wall time (no meaning) in the simulator."""

    def __init__(self, xp) -> None:
        self.xp = xp

    def __call__(self, fn: Callable) -> float:
        if self.xp is np:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        start, stop = self.xp.cuda.Event(), self.xp.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        return self.xp.cuda.get_elapsed_time(start, stop) / 1e3


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def make_cases(shapes: dict, xp, torch) -> list[Case]:
    """Cases for the given shapes: {'rows': (rows, cols), 'ncs': (N, C, S)}."""
    from kernels import cuda

    rng = np.random.default_rng(0)

    def array(shape):
        return xp.asarray(rng.standard_normal(shape).astype(np.float32))

    def t(*arrays):  # zero-copy views of our arrays for PyTorch
        return [torch.as_tensor(a, device="cuda") for a in arrays]

    rows, cols = shapes["rows"]
    batch, channels, spatial = shapes["ncs"]
    x2, dy2, x3, dy3 = array((rows, cols)), array((rows, cols)), array(shapes["ncs"]), \
        array(shapes["ncs"])
    w2, b2 = xp.ones(cols, np.float32), xp.zeros(cols, np.float32)
    w3, b3 = xp.ones(channels, np.float32), xp.zeros(channels, np.float32)
    rm, rv = xp.zeros(channels, np.float32), xp.ones(channels, np.float32)
    groups = max(1, channels // 8)
    _, mean2, inv2 = cuda.layer_norm_forward(x2, w2, b2, EPS)
    _, inv_rms = cuda.rms_norm_forward(x2, w2, EPS)
    _, gmean, ginv = cuda.group_norm_forward(x3, groups, w3, b3, EPS)
    _, imean, iinv = cuda.group_norm_forward(x3, channels, w3, b3, EPS)
    _, bmean, binv, _ = cuda.batch_norm_forward_train(x3, w3, b3, EPS)
    cases = [
        Case("LayerNorm", (rows, cols), lambda: cuda.layer_norm_forward(x2, w2, b2, EPS),
             lambda: cuda.layer_norm_backward(dy2, x2, mean2, inv2, w2), None, None, (2, 3)),
        Case("RMSNorm", (rows, cols), lambda: cuda.rms_norm_forward(x2, w2, EPS),
             lambda: cuda.rms_norm_backward(dy2, x2, inv_rms, w2), None, None, (2, 3)),
        Case(f"GroupNorm G={groups}", shapes["ncs"],
             lambda: cuda.group_norm_forward(x3, groups, w3, b3, EPS),
             lambda: cuda.group_norm_backward(dy3, x3, gmean, ginv, groups, w3), None, None,
             (2, 3)),
        Case("InstanceNorm", shapes["ncs"],
             lambda: cuda.group_norm_forward(x3, channels, w3, b3, EPS),
             lambda: cuda.group_norm_backward(dy3, x3, imean, iinv, channels, w3), None, None,
             (2, 3)),
        Case("BatchNorm", shapes["ncs"], lambda: cuda.batch_norm_forward_train(x3, w3, b3, EPS),
             lambda: cuda.batch_norm_backward(dy3, x3, bmean, binv, w3), None, None, (3, 5)),
        Case("BatchNorm eval", shapes["ncs"],
             lambda: cuda.batch_norm_forward_eval(x3, rm, rv, w3, b3, EPS),
             lambda: cuda.batch_norm_backward_eval(dy3, x3, rm, rv, w3, EPS), None, None,
             (2, 4)),
    ]
    if torch is not None:
        _add_torch(cases, torch, t(x2, dy2, w2, b2), t(x3, dy3, w3, b3, rm, rv), groups)
    return cases


def _add_torch(cases: list[Case], torch, rows_args, ncs_args, groups: int) -> None:
    aten = torch.ops.aten
    x2, dy2, w2, b2 = rows_args
    x3, dy3, w3, b3, rm, rv = ncs_args
    cols = x2.shape[1]
    batch, channels, spatial = x3.shape
    _, lmean, lrstd = aten.native_layer_norm(x2, [cols], w2, b2, EPS)
    gx, gw = x2.clone().requires_grad_(), w2.clone().requires_grad_()
    rms_out = torch.nn.functional.rms_norm(gx, [cols], gw, EPS)
    _, gmean, grstd = aten.native_group_norm(x3, w3, b3, batch, channels, spatial, groups, EPS)
    _, imean, irstd = aten.native_group_norm(x3, w3, b3, batch, channels, spatial, channels,
                                             EPS)
    _, bmean, binv = aten.native_batch_norm(x3, w3, b3, None, None, True, 0.1, EPS)
    mask = [True, True, True]
    pairs = [
        (lambda: aten.native_layer_norm(x2, [cols], w2, b2, EPS),
         lambda: aten.native_layer_norm_backward(dy2, x2, [cols], lmean, lrstd, w2, b2, mask)),
        (lambda: torch.nn.functional.rms_norm(x2, [cols], w2, EPS),
         lambda: torch.autograd.grad(rms_out, (gx, gw), dy2, retain_graph=True)),
        (lambda: aten.native_group_norm(x3, w3, b3, batch, channels, spatial, groups, EPS),
         lambda: aten.native_group_norm_backward(dy3, x3, gmean, grstd, w3, batch, channels,
                                                 spatial, groups, mask)),
        (lambda: aten.native_group_norm(x3, w3, b3, batch, channels, spatial, channels, EPS),
         lambda: aten.native_group_norm_backward(dy3, x3, imean, irstd, w3, batch, channels,
                                                 spatial, channels, mask)),
        (lambda: aten.native_batch_norm(x3, w3, b3, None, None, True, 0.1, EPS),
         lambda: aten.native_batch_norm_backward(dy3, x3, w3, None, None, bmean, binv, True,
                                                 EPS, mask)),
        (lambda: aten.native_batch_norm(x3, w3, b3, rm, rv, False, 0.1, EPS),
         lambda: aten.native_batch_norm_backward(dy3, x3, w3, rm, rv, None, None, False, EPS,
                                                 mask)),
    ]
    for case, (forward, backward) in zip(cases, pairs):
        case.torch_forward, case.torch_backward = forward, backward


def shapes_for(megabytes: float) -> dict:
    """Shapes whose x is `megabytes` of float32: LayerNorm/RMSNorm rows of 1024, and
    (N, 256, 32·32) feature maps for GroupNorm, InstanceNorm and BatchNorm."""
    elements = int(megabytes * 2**20) // 4
    return dict(rows=(max(1, elements // 1024), 1024),
                ncs=(max(1, elements // (256 * 1024)), 256, 1024))


def copy_gbps(xp, nbytes: int, timer: Timer, repeat: int) -> float:
    """Device-to-device copy (read + write) of `nbytes`, in GB/s."""
    source = xp.ones(nbytes // 4, np.float32)
    target = xp.empty_like(source)
    xp.copyto(target, source)
    return 2 * nbytes / statistics.median(
        timer(lambda: xp.copyto(target, source)) for _ in range(repeat)) / 1e9


def run_case(case: Case, timer: Timer, repeat: int, copy: float, warm_up: bool = True
             ) -> list[dict]:
    rows = []
    elements = int(np.prod(case.shape))
    for direction, ours, theirs, traffic in (
            ("forward", case.forward, case.torch_forward, case.traffic[0]),
            ("backward", case.backward, case.torch_backward, case.traffic[1])):
        if warm_up:  # compile, fill the memory pools
            ours()
            if theirs is not None:
                theirs()
        ours_times, theirs_times = [], []
        for _ in range(repeat):  # interleaved, so clock and thermal drift hit both alike
            ours_times.append(timer(ours))
            if theirs is not None:
                theirs_times.append(timer(theirs))
        ours_s = statistics.median(ours_times)
        theirs_s = statistics.median(theirs_times) if theirs_times else None
        gbps = traffic * elements * 4 / ours_s / 1e9
        rows.append(dict(
            op=case.name, direction=direction, shape=list(case.shape),
            megabytes=round(elements * 4 / 2**20, 3), ours_us=ours_s * 1e6,
            torch_us=None if theirs_s is None else theirs_s * 1e6,
            speedup=None if theirs_s is None else theirs_s / ours_s,
            ours_gbps=gbps, copy_gbps=copy, fraction_of_copy=gbps / copy))
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'op':16s} {'dir':8s} {'shape':>18s} {'MiB':>7s} {'ours us':>10s} "
          f"{'torch us':>10s} {'vs torch':>8s} {'GB/s':>7s} {'copy':>7s} {'%copy':>6s}")
    for r in rows:
        torch_us = "-" if r["torch_us"] is None else f"{r['torch_us']:10.1f}"
        speedup = "-" if r["speedup"] is None else f"{r['speedup']:7.2f}x"
        print(f"{r['op']:16s} {r['direction']:8s} {str(tuple(r['shape'])):>18s} "
              f"{r['megabytes']:7.1f} {r['ours_us']:10.1f} {torch_us:>10s} {speedup:>8s} "
              f"{r['ours_gbps']:7.1f} {r['copy_gbps']:7.1f} {100 * r['fraction_of_copy']:5.0f}%")


def _unavailable_reason(smoke: bool) -> str | None:
    """Why this run cannot happen here, or None."""
    from numba import config

    if config.ENABLE_CUDASIM:
        return None if smoke else (
            "NUMBA_ENABLE_CUDASIM=1: the simulator cannot time kernels; run on a GPU, or pass "
            "--smoke to exercise the benchmark's code paths")
    try:
        import cupy  # noqa: F401
        from numba import cuda
    except ImportError as error:
        return f"{error}; install the GPU stack with: pip install \"tinygrad_norm[cuda]\""
    if not cuda.is_available():
        return "no CUDA GPU is visible to numba.cuda (numba.cuda.is_available() is False)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tinygrad-norm bench --device cuda",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES_MB)),
                        help="comma list of working-set sizes in MiB (default 4 to 1024)")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per case (median)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes, one call each: checks the code paths (simulator ok)")
    args = parser.parse_args(argv)
    reason = _unavailable_reason(args.smoke)
    if reason is not None:
        print(f"cuda benchmark cannot run: {reason}", file=sys.stderr)
        return 2
    from numba import config

    if config.ENABLE_CUDASIM:
        xp, torch, device_name = np, None, "CUDA simulator (timings meaningless)"
    else:
        import cupy as xp
        from numba import cuda

        torch, device_name = _torch_cuda(), cuda.get_current_device().name
        device_name = device_name.decode() if isinstance(device_name, bytes) else device_name
    timer = Timer(xp)
    if args.smoke:
        plan, repeat = [(0.0, dict(rows=(2, 40), ncs=(2, 2, 8)))], 1
    else:
        sizes = [float(size) for size in args.sizes.split(",")]
        plan, repeat = [(size, shapes_for(size)) for size in sizes], args.repeat
    rows = []
    for megabytes, shapes in plan:
        nbytes = max(4, int(np.prod(shapes["ncs"])) * 4)
        copy = copy_gbps(xp, nbytes, timer, repeat)
        print(f"\nworking set {megabytes:g} MiB on {device_name}: device copy {copy:.1f} GB/s")
        table = [row for case in make_cases(shapes, xp, torch)
                 for row in run_case(case, timer, repeat, copy, warm_up=not args.smoke)]
        print_table(table)
        rows += table
    if args.json:
        meta = dict(device=device_name, repeat=repeat, torch=None if torch is None
                    else torch.__version__, method="median of CUDA-event-timed calls; "
                    "traffic model of KERNELS.md; copy = device-to-device read+write")
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
