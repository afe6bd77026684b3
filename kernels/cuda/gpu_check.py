"""Everything about kernels.cuda that only a GPU can tell, in one run of under 8 minutes on
an H100/H200: `python -m kernels.cuda.gpu_check [--out runs/gpu_check.json]`.

Sections, in order; the JSON file is rewritten after every case, so a run cut short still
leaves every result it reached:
  environment    versions, the device, one trivial kernel;
  correctness    every kernel against kernels.reference (float64 NumPy) at GPU shapes that
                 reach every launch path (each row bucket, block rows cached and not,
                 GroupNorm's small-S and large-S sets, BatchNorm's cross-block merge, fp64);
  streams        a CuPy non-blocking stream: input made by a slow op on that stream, our
                 kernel called under it; wrong results would mean a launch on another stream;
  timings        CUDA-event medians against torch.ops.aten (when torch has CUDA) and a device
                 copy of the same bytes, forward and backward of LN, RMSNorm, GN and BN;
  host_overhead  host microseconds per call at a tiny shape;
  registers      registers and shared memory per kernel as the driver compiled them.
Exit status 0 when every check passed. Under the CUDA simulator only environment and
correctness (with --tiny shapes) can run; tests/test_cuda_gpu_check.py runs them so.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import json
import os
import pathlib
import platform
import statistics
import sys
import time
import traceback

import numpy as np
from numba import cuda

from kernels import reference

TOLERANCE = {"float32": (2e-5, 1e-4), "float64": (1e-10, 1e-8)}  # (atol·scale, rtol)


class Report:
    """The JSON report, rewritten (atomically) whenever a result is added."""

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        self.data = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                     "argv": sys.argv[1:], "sections": {}}

    def add(self, section: str, key: str | None, value) -> None:
        entry = self.data["sections"].setdefault(section, {})
        if key is None:
            entry.update(value)
        else:
            entry[key] = value
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        temporary.replace(self.path)

    @property
    def ok(self) -> bool:
        return all(_all_ok(section) for section in self.data["sections"].values())


def _all_ok(value) -> bool:
    if isinstance(value, dict):
        if value.get("ok") is False or "error" in value:
            return False
        return all(_all_ok(v) for v in value.values())
    return True


def compare(ours, expected, dtype: str) -> dict:
    """Max errors of `ours` (host arrays) against `expected` (float64), scaled like the
    tests: |a - b| ≤ atol·max(1, max|b|) + rtol·|b|."""
    atol, rtol = TOLERANCE[dtype]
    worst_abs, worst_ratio = 0.0, 0.0
    for a, b in zip(ours, expected):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            return {"ok": False, "error": f"shape {a.shape} != expected {b.shape}"}
        if b.size == 0:
            continue
        allowed = atol * max(1.0, float(np.abs(b).max())) + rtol * np.abs(b)
        difference = np.abs(a - b)
        worst_abs = max(worst_abs, float(np.nanmax(difference)))
        worst_ratio = max(worst_ratio, float(np.nanmax(difference / allowed)))
        if not np.isfinite(a).all():
            return {"ok": False, "error": "non-finite output", "max_abs_error": worst_abs}
    return {"ok": worst_ratio <= 1.0, "max_abs_error": worst_abs,
            "max_error_over_tolerance": worst_ratio}


# ------------------------------------------------------------------------- the cases


def _inputs(shape, dtype, features, seed=0, affine=True, offset=3.0):
    rng = np.random.default_rng(seed)
    x = (offset + rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    weight = (1 + 0.5 * rng.standard_normal(features)).astype(dtype) if affine else None
    bias = rng.standard_normal(features).astype(dtype) if affine else None
    return x, dy, weight, bias


def run_case(kind: str, shape: tuple, dtype: str = "float32", affine: bool = True,
             num_groups: int = 1) -> dict:
    """Forward and backward of one kernel family on the device against the reference."""
    from kernels import cuda
    from tinygrad_norm import device

    def dev(*arrays):
        return [None if a is None else device.to_device(a, "cuda") for a in arrays]

    def host(arrays):
        return [device.to_host(a) for a in arrays]

    features = shape[1] if kind in ("group_norm", "batch_norm") else shape[-1]
    x, dy, weight, bias = _inputs(shape, dtype, features, affine=affine)
    eps = 1e-5
    if kind == "layer_norm":
        out = cuda.layer_norm_forward(*dev(x, weight, bias), eps)
        grads = cuda.layer_norm_backward(*dev(dy, x), out[1], out[2], *dev(weight))
        expected = reference.layer_norm_forward(x, weight, bias, eps)
        expected_grads = reference.layer_norm_backward(dy, x, *host(out[1:]), weight)
    elif kind == "rms_norm":
        out = cuda.rms_norm_forward(*dev(x, weight), eps)
        grads = cuda.rms_norm_backward(*dev(dy, x), out[1], *dev(weight))
        expected = reference.rms_norm_forward(x, weight, eps)
        expected_grads = reference.rms_norm_backward(dy, x, *host(out[1:]), weight)
    elif kind == "group_norm":
        out = cuda.group_norm_forward(*dev(x), num_groups, *dev(weight, bias), eps)
        grads = cuda.group_norm_backward(*dev(dy, x), out[1], out[2], num_groups, *dev(weight))
        expected = reference.group_norm_forward(x, num_groups, weight, bias, eps)
        expected_grads = reference.group_norm_backward(dy, x, *host(out[1:3]), num_groups,
                                                       weight)
    elif kind == "batch_norm":
        out = cuda.batch_norm_forward_train(*dev(x, weight, bias), eps)
        grads = cuda.batch_norm_backward(*dev(dy, x), out[1], out[2], *dev(weight))
        expected = reference.batch_norm_forward_train(x, weight, bias, eps)
        expected_grads = reference.batch_norm_backward(dy, x, *host(out[1:3]), weight)
    else:
        raise ValueError(f"unknown kernel family {kind!r}")
    return {"forward": compare(host(out), expected, dtype),
            "backward": compare(host(grads), expected_grads[:len(grads)], dtype)}


def correctness_cases(tiny: bool) -> list[tuple]:
    """(kind, shape, dtype, affine, num_groups): every path at GPU shapes (tiny: the same
    families at simulator shapes)."""
    if tiny:
        return [("layer_norm", (5, 40), "float32", True, 1),
                ("rms_norm", (3, 20), "float64", False, 1),
                ("group_norm", (2, 4, 3), "float32", True, 2),
                ("batch_norm", (3, 2, 5), "float32", True, 1)]
    return [
        ("layer_norm", (70000, 64), "float32", True, 1),  # bucket 2, many grid strides
        ("layer_norm", (20000, 128), "float32", False, 1),  # bucket 4, no affine
        ("layer_norm", (16384, 256), "float32", True, 1),  # bucket 8
        ("layer_norm", (4096, 1024), "float32", True, 1),  # block rows, bucket 4
        ("layer_norm", (64, 16384), "float32", True, 1),  # long rows, not cached
        ("layer_norm", (8192, 100), "float64", True, 1),  # float64 bucket 4
        ("layer_norm", (1024, 1000), "float64", True, 1),  # float64 block rows, bucket 4
        ("rms_norm", (16384, 256), "float32", True, 1),
        ("rms_norm", (2048, 4096), "float32", False, 1),  # long rows, cached
        ("group_norm", (8, 64, 4096), "float32", True, 32),  # large sets, split over blocks
        ("group_norm", (16, 2048, 1), "float32", True, 1),  # GroupNorm(1, 2048) on (N, C)
        ("group_norm", (32, 64, 16), "float32", False, 64),  # InstanceNorm, warp sets
        ("batch_norm", (64, 256, 784), "float32", True, 1),
        ("batch_norm", (4096, 512, 1), "float32", True, 1),  # BatchNorm1d
        ("batch_norm", (16, 8, 4096), "float64", False, 1),
    ]


@cuda.jit
def add_one(values):
    """The trivial kernel."""
    i = cuda.threadIdx.x + cuda.blockIdx.x * cuda.blockDim.x
    if i < values.shape[0]:
        values[i] += 1.0


def section_environment(report: Report, args) -> None:
    versions = {}
    for package in ("numpy", "numba", "numba-cuda", "cupy-cuda13x", "cupy-cuda12x", "torch",
                    "cuda-core", "nvidia-nvjitlink"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    from kernels.cuda import helpers

    report.add("environment", None, {"python": platform.python_version(),
                                     "versions": versions, "simulator": helpers.SIMULATOR,
                                     "geometry": str(helpers.GEOMETRY)})
    gpu = cuda.get_current_device()
    info = {"name": str(getattr(gpu, "name", "?"))}
    if not helpers.SIMULATOR:
        info.update(compute_capability=list(gpu.compute_capability),
                    multiprocessors=gpu.MULTIPROCESSOR_COUNT)
    report.add("environment", "device", info)

    host = np.arange(64, dtype=np.float32)
    values = cuda.to_device(host)
    add_one[1, 64](values)
    result = values.copy_to_host()
    report.add("environment", "trivial_kernel", {"ok": bool(np.array_equal(result, host + 1))})


def section_correctness(report: Report, args) -> None:
    for kind, shape, dtype, affine, groups in correctness_cases(args.tiny):
        name = f"{kind} {shape} {dtype}{'' if affine else ' no affine'}"
        start = time.perf_counter()
        result = run_case(kind, shape, dtype, affine, groups)
        result["seconds"] = round(time.perf_counter() - start, 3)
        report.add("correctness", name, result)


def section_streams(report: Report, args) -> None:
    import cupy

    from kernels import cuda

    rows, cols = 8192, 1024
    stream = cupy.cuda.Stream(non_blocking=True)
    wrong = 0
    for trial in range(10):
        with stream:
            rng = cupy.random.default_rng(trial)
            a = rng.standard_normal((2048, 2048), dtype=np.float32)
            slow = a @ a  # keeps the stream busy, so x below is written late
            x = rng.standard_normal((rows, cols), dtype=np.float32) + slow[:1, :1] * 0
            y, _, _ = cuda.layer_norm_forward(x, None, None, 1e-5)
            ours, host_x = y.get(), x.get()
        expected = reference.layer_norm_forward(host_x, None, None, 1e-5)[:1]
        wrong += int(not compare([ours], expected, "float32")["ok"])
    report.add("streams", "cupy_non_blocking", {"ok": wrong == 0, "wrong_trials": wrong,
                                                "trials": 10})


def _event_median(function, repeats: int) -> float:
    """Median milliseconds of function() between CUDA events on the current stream."""
    import cupy

    function()  # compile / warm up
    times = []
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        function()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


def timing_cases():
    """(name, shape, bytes moved forward, bytes moved backward) per kernel family."""
    return [("layer_norm", (16384, 1024)), ("rms_norm", (16384, 1024)),
            ("group_norm", (32, 128, 64 * 64)), ("batch_norm", (64, 256, 32 * 32))]


def _torch_functions(kind, x, weight, bias, dy):
    """(forward, backward) closures through torch.ops.aten on the same CuPy memory, or None
    when torch has no CUDA."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    tx, tdy = torch.as_tensor(x, device="cuda"), torch.as_tensor(dy, device="cuda")
    tw, tb = torch.as_tensor(weight, device="cuda"), torch.as_tensor(bias, device="cuda")
    aten = torch.ops.aten
    if kind == "layer_norm":
        shape = [x.shape[-1]]
        out = aten.native_layer_norm(tx, shape, tw, tb, 1e-5)
        return (lambda: aten.native_layer_norm(tx, shape, tw, tb, 1e-5),
                lambda: aten.native_layer_norm_backward(tdy, tx, shape, out[1], out[2], tw, tb,
                                                        [True, True, True]))
    if kind == "rms_norm":
        shape = [x.shape[-1]]
        return (lambda: torch.nn.functional.rms_norm(tx, shape, tw, 1e-5), None)
    if kind == "group_norm":
        n, c, s = x.shape
        out = aten.native_group_norm(tx, tw, tb, n, c, s, 32, 1e-5)
        return (lambda: aten.native_group_norm(tx, tw, tb, n, c, s, 32, 1e-5),
                lambda: aten.native_group_norm_backward(tdy, tx, out[1], out[2], tw, n, c, s,
                                                        32, [True, True, True]))
    out = aten.native_batch_norm(tx, tw, tb, None, None, True, 0.1, 1e-5)
    return (lambda: aten.native_batch_norm(tx, tw, tb, None, None, True, 0.1, 1e-5),
            lambda: aten.native_batch_norm_backward(tdy, tx, tw, None, None, out[1], out[2],
                                                    True, 1e-5, [True, True, True]))


def _our_functions(kind, x, dy, weight, bias):
    """(forward, backward) closures of kernels.cuda for one family, at GroupNorm(32)."""
    from kernels import cuda

    forward = {"layer_norm": lambda: cuda.layer_norm_forward(x, weight, bias, 1e-5),
               "rms_norm": lambda: cuda.rms_norm_forward(x, weight, 1e-5),
               "group_norm": lambda: cuda.group_norm_forward(x, 32, weight, bias, 1e-5),
               "batch_norm": lambda: cuda.batch_norm_forward_train(x, weight, bias, 1e-5)}[kind]
    stats = forward()[1:3]
    backward = {"layer_norm": lambda: cuda.layer_norm_backward(dy, x, *stats, weight),
                "rms_norm": lambda: cuda.rms_norm_backward(dy, x, *stats, weight),
                "group_norm": lambda: cuda.group_norm_backward(dy, x, *stats, 32, weight),
                "batch_norm": lambda: cuda.batch_norm_backward(dy, x, *stats, weight)}[kind]
    return forward, backward


def section_timings(report: Report, args) -> None:
    import cupy

    for kind, shape in timing_cases():
        features = shape[1] if kind in ("group_norm", "batch_norm") else shape[-1]
        x, dy, weight, bias = (None if a is None else cupy.asarray(a)
                               for a in _inputs(shape, "float32", features))
        nbytes = x.nbytes
        copy_ms = _event_median(functools.partial(cupy.copyto, cupy.empty_like(x), x),
                                args.repeats)
        fwd, bwd = _our_functions(kind, x, dy, weight, bias)
        copy_bandwidth = 2 * nbytes / copy_ms / 1e6  # GB/s: read + write
        result = {"shape": list(shape), "copy_ms": copy_ms, "copy_GBps": copy_bandwidth}
        # minimum traffic: forward reads x, writes y; backward reads dy and x, writes dx
        for direction, function, traffic in (("forward", fwd, 2), ("backward", bwd, 3)):
            ms = _event_median(function, args.repeats)
            bandwidth = traffic * nbytes / ms / 1e6
            result[direction] = {"ms": ms, "GBps": bandwidth,
                                 "fraction_of_copy": bandwidth / copy_bandwidth}
        torch_functions = _torch_functions(kind, x, weight, bias, dy)
        if torch_functions is None:
            result["torch"] = "torch has no CUDA here: no comparison"
        else:
            for direction, function in zip(("forward", "backward"), torch_functions):
                if function is not None:
                    torch_ms = _event_median(function, args.repeats)
                    result[direction]["torch_ms"] = torch_ms
                    result[direction]["speedup_vs_torch"] = torch_ms / result[direction]["ms"]
        report.add("timings", kind, result)


def section_host_overhead(report: Report, args) -> None:
    import cupy

    from kernels import cuda

    x = cupy.ones((8, 64), np.float32)
    cuda.layer_norm_forward(x, None, None, 1e-5)
    cupy.cuda.get_current_stream().synchronize()
    calls = 300
    start = time.perf_counter()
    for _ in range(calls):
        cuda.layer_norm_forward(x, None, None, 1e-5)
    host_us = (time.perf_counter() - start) / calls * 1e6
    cupy.cuda.get_current_stream().synchronize()
    report.add("host_overhead", "layer_norm_forward (8, 64)", {"us_per_call": host_us})


def section_registers(report: Report, args) -> None:
    """Registers per compiled kernel as numba's dispatchers report them (every variant the
    earlier sections launched)."""
    from kernels.cuda import batch_norm, group_norm, helpers, layer_norm

    kernels = {}
    block = helpers.GEOMETRY.block
    for b in helpers.GEOMETRY.row_buckets:
        for layout, threads in (("warp", None), ("block", block)):
            kernels[f"forward_{layout}_rows[{b}]"] = layer_norm.forward_kernel(b, threads)
            kernels[f"backward_{layout}_rows[{b}]"] = layer_norm.backward_kernel(b, threads)
    for module in (layer_norm, group_norm, batch_norm, helpers):
        for name in dir(module):
            kernel = getattr(module, name)
            if hasattr(kernel, "get_regs_usage") and hasattr(kernel, "overloads"):
                kernels[f"{module.__name__.rsplit('.', 1)[-1]}.{name}"] = kernel
    for name, kernel in sorted(kernels.items()):
        for signature in list(kernel.overloads):
            report.add("registers", f"{name} {signature}", {
                "registers": kernel.get_regs_usage(signature),
                "shared_bytes": kernel.get_shared_mem_per_block(signature)})


SECTIONS = {"environment": section_environment, "correctness": section_correctness,
            "streams": section_streams, "timings": section_timings,
            "host_overhead": section_host_overhead, "registers": section_registers}


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m kernels.cuda.gpu_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/gpu_check.json", help="the JSON report")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, in this order: {','.join(SECTIONS)}")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per median")
    parser.add_argument("--tiny", action="store_true",
                        help="simulator-sized correctness shapes (for the tests)")
    args = parser.parse_args(argv)
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report(args.out)
    for name in SECTIONS:
        if name not in args.sections:
            continue
        start = time.perf_counter()
        try:
            SECTIONS[name](report, args)
        except Exception as error:  # record it and go on: later sections may still run
            report.add(name, "error", f"{type(error).__name__}: {error}")
            report.add(name, "traceback", traceback.format_exc(limit=5))
        report.add(name, "section_seconds", round(time.perf_counter() - start, 2))
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
    print(f"{'all checks passed' if report.ok else 'FAILED'}; report in {report.path}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
