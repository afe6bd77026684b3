"""Benchmark of the kernels against PyTorch and the machine's copy bandwidth, on either device.

    python -m kernels.bench                       # CPU: every normalization, forward and backward
    python -m kernels.bench --device cuda         # the numba.cuda kernels, 4 MiB to 1 GiB
    python -m kernels.bench --sizes small,64 --json out.json
    python -m kernels.bench --smoke               # tiny shapes, one call: the code paths only
    python -m kernels.bench --crossover           # CPU serial vs parallel LayerNorm (the switch)
    python -m kernels.bench --latency             # CPU small-call latency (the OpenMP floor)
    python -m kernels.bench --startup             # CPU first-call compile and cached-load time
    python -m kernels.bench --accuracy            # float32 error on hard inputs (kernels.accuracy)

`tinygrad-norm bench` takes the same options and adds the layer table (autograd included).

Method: every case of kernels/cases.py at every size, ours against PyTorch's twin (the aten
kernels behind its layers, no autograd). On the CPU each framework runs in its own process, as
its users run it (PyTorch's without our thread defaults: sharing a process, our passive OpenMP
wait slowed PyTorch's small calls, and its spinning threads with OMP_WAIT_POLICY=active slowed
ours), `--rounds` processes each, alternating; a time is the median over the rounds of each
process's median of `--repeat` calls. On a GPU both run interleaved in one process, timed by
CUDA events around each call, so launch overhead counts. Sizes are the working set of x in MiB
(2^20 bytes of float32), or 'small' for the shapes the examples train with. Achieved GB/s uses
each case's minimum traffic (kernels/cases.py), and 'copy' is a parallel read + write copy of
the same size measured in the same process as our kernels (a device-to-device copy on a GPU),
so the two are comparable. Without PyTorch (or, for cuda, without PyTorch's CUDA build) its
columns are empty and a note says so.
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
from typing import Callable

import numba
import numpy as np

from kernels.cases import CASES, torch_tensors

MIB = 2**20
# the examples' shapes: the MLP's (batch 64, width 128) rows and the CNN's 8x8 feature maps
SMALL_SHAPES = {"rows": [(64, 128)], "ncs": [(64, 16, 64)]}
SMALL_EXTRA = {"BatchNorm": [(64, 128, 1)]}  # BatchNorm1d on the MLP's (N, C) activations
DEFAULT_SIZES = {"cpu": "small,64", "cuda": "4,16,64,256,1024"}
SMOKE_SHAPES = {"rows": [(2, 40)], "ncs": [(2, 4, 8)]}


@numba.njit(parallel=True, cache=True)
def _parallel_copy(source, target):
    for i in numba.prange(source.size):
        target[i] = source[i]


class Device:
    """What differs between the devices: arrays, the clock, the copy, PyTorch's twin."""

    def __init__(self, name: str, with_torch: bool = True) -> None:
        from numba import config

        self.name = name
        self.simulator = name == "cuda" and bool(config.ENABLE_CUDASIM)
        if name == "cpu":
            import kernels.cpu as kernels
        else:
            import kernels.cuda as kernels
        self.kernels = kernels
        self.xp = np
        if name == "cuda" and not self.simulator:
            import cupy

            self.xp = cupy
        self.torch, self.torch_note = (_torch_for(name, self.simulator) if with_torch
                                       else (None, None))

    def array(self, host):
        return host if host is None or self.xp is np else self.xp.asarray(host)

    def seconds(self, fn: Callable) -> float:
        """One timed call: CUDA events on a GPU, wall time elsewhere."""
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

    def copy_gbps(self, nbytes: int, repeat: int) -> float:
        """Read + write bandwidth of a copy of `nbytes`, in GB/s."""
        source = self.xp.ones(max(1, nbytes // 4), np.float32)
        target = self.xp.empty_like(source)
        if self.xp is np:
            copy = lambda: _parallel_copy(source, target)  # noqa: E731
        else:
            copy = lambda: self.xp.copyto(target, source)  # noqa: E731
        copy()
        return 2 * source.nbytes / statistics.median(
            self.seconds(copy) for _ in range(repeat)) / 1e9

    def description(self) -> str:
        if self.name == "cpu":
            return (f"CPU: {cpu_description()}; {numba.get_num_threads()} threads, numba "
                    f"{numba.__version__}, "
                    f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}")
        if self.simulator:
            return "CUDA simulator (timings meaningless)"
        from numba import cuda

        name = cuda.get_current_device().name
        return name.decode() if isinstance(name, bytes) else name


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU the numbers come from, e.g. "AMD EPYC (family 25, model 1), 2 logical CPUs,
    AVX2": the sessions' machines differ, and which BLAS kernels run (and how fast, against
    PyTorch's MKL) follows the vendor and the widest vector unit. Linux's /proc/cpuinfo;
    elsewhere platform.processor()."""
    fields = {}
    try:
        with open(cpuinfo) as info:
            for line in info:
                key, _, value = line.partition(":")
                if not line.strip():
                    break  # the first CPU's block is enough
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields:
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    flags = set(fields.get("flags", "").split())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None
    return f"{name}, {os.cpu_count()} logical CPUs" + (f", {vector}" if vector else "")


def _torch_for(device: str, simulator: bool):
    """(torch or None, a note saying why its columns are empty)."""
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed: its columns are empty (pip install torch==2.13.0)"
    if device == "cpu":  # in its own process, with its own default threads
        return torch, None
    if simulator or not torch.cuda.is_available():
        return None, "PyTorch has no CUDA device here: its columns are empty"
    return torch, None


def cuda_unavailable_reason(smoke: bool) -> str | None:
    """Why a cuda benchmark cannot run here, or None."""
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


def shapes(case, size: str) -> list[tuple]:
    """x's shapes for one case at one size: 'small' (the examples'), 'smoke', or MiB."""
    if size == "small":
        return SMALL_SHAPES[case.layout] + SMALL_EXTRA.get(case.name, [])
    if size == "smoke":
        return SMOKE_SHAPES[case.layout]
    elements = max(1, int(float(size) * MIB) // 4)
    if case.layout == "rows":
        return [(max(1, elements // 1024), 1024)]
    return [(max(1, elements // (64 * 4096)), 64, 4096)]


def _calls(device: Device, case, shape: tuple, framework: str) -> tuple:
    """(forward, backward) callables of one framework at one shape: our kernels, or PyTorch's
    twin ((None, None) where there is none)."""
    host = case.inputs(shape)
    inputs = {k: device.array(v) if isinstance(v, np.ndarray) else v for k, v in host.items()}
    if framework == "ours":
        saved = case.run_forward(device.kernels, inputs)
        return (lambda: case.run_forward(device.kernels, inputs),
                lambda: case.run_backward(device.kernels, inputs, saved))
    if device.torch is None or case.torch_twin is None:
        return None, None
    tensors = torch_tensors(device.torch, inputs, "cpu" if device.name == "cpu" else "cuda")
    return case.torch_twin(device.torch, tensors, True)


def _row(case, direction: str, shape: tuple, ours_s: float, torch_s: float | None,
         copy: float) -> dict:
    elements = int(np.prod(shape))
    traffic = case.traffic[("forward", "backward").index(direction)]
    gbps = traffic * elements * 4 / ours_s / 1e9
    return dict(op=case.name, direction=direction, shape=list(shape),
                mib=round(elements * 4 / MIB, 3), ours_us=ours_s * 1e6,
                torch_us=None if torch_s is None else torch_s * 1e6,
                speedup=None if torch_s is None else torch_s / ours_s,
                ours_gbps=gbps, copy_gbps=copy, fraction_of_copy=gbps / copy)


def time_case(device: Device, case, shape: tuple, repeat: int, copy: float) -> list[dict]:
    """Forward and backward rows of one case at one shape, ours and PyTorch's interleaved in
    this process (the GPU's method)."""
    ours = _calls(device, case, shape, "ours")
    theirs = _calls(device, case, shape, "torch")
    rows = []
    for direction, mine, twin in zip(("forward", "backward"), ours, theirs):
        mine()  # compile, fill the buffer pools
        if twin is not None:
            twin()
        mine_times, twin_times = [], []
        for _ in range(repeat):  # interleaved, so drifting load (or clocks) hit both alike
            mine_times.append(device.seconds(mine))
            if twin is not None:
                twin_times.append(device.seconds(twin))
        rows.append(_row(case, direction, shape, statistics.median(mine_times),
                         statistics.median(twin_times) if twin_times else None, copy))
    return rows


def print_table(rows: list[dict]) -> None:
    header = (f"{'op':15s} {'dir':8s} {'shape':>16s} {'MiB':>7s} {'ours us':>10s} "
              f"{'torch us':>10s} {'speedup':>8s} {'GB/s':>7s} {'copy':>7s} {'% copy':>7s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        torch_us = "-" if r["torch_us"] is None else f"{r['torch_us']:10.1f}"
        speedup = "-" if r["speedup"] is None else f"{r['speedup']:7.2f}x"
        shape = "x".join(str(s) for s in r["shape"])
        print(f"{r['op']:15s} {r['direction']:8s} {shape:>16s} {r['mib']:7.2f} "
              f"{r['ours_us']:10.1f} {torch_us:>10s} {speedup:>8s} {r['ours_gbps']:7.1f} "
              f"{r['copy_gbps']:7.1f} {100 * r['fraction_of_copy']:6.0f}%")


def _cases_at(device: Device, sizes: list[str]):
    """(case, shape) of every case this device has, at every size, in table order."""
    for size in sizes:
        for case in (c for c in CASES if device.name in c.backends):
            for shape in shapes(case, size):
                yield case, shape


def _copy_for(device: Device, shape: tuple, repeat: int, measured: dict) -> float:
    """The copy bandwidth at this shape's working set, measured once per size (`measured`)."""
    nbytes = max(int(np.prod(shape)) * 4, MIB)
    if nbytes not in measured:
        measured[nbytes] = device.copy_gbps(nbytes, 3 * repeat)
    return measured[nbytes]


def kernel_table(device: Device, sizes: list[str], repeat: int) -> list[dict]:
    """Rows of every case, ours and PyTorch's interleaved in this process."""
    rows, copies = [], {}
    for case, shape in _cases_at(device, sizes):
        rows += time_case(device, case, shape, repeat, _copy_for(device, shape, repeat, copies))
    return rows


def _loaded_before(first: str, second: str) -> bool:
    """Whether module `first` was imported before `second` (sys.modules keeps import order)."""
    order = list(sys.modules)
    return first in order and (second not in order or order.index(first) < order.index(second))


def _worker_times(framework: str, sizes: list[str], repeat: int) -> dict:
    """In a worker process: the median seconds of each case's forward and backward for one
    framework on the CPU, in ours the copy bandwidth of each size, and which of torch and
    kernels this process loaded first."""
    device = Device("cpu", with_torch=framework == "torch")
    times, copies = [], {}
    for case, shape in _cases_at(device, sizes):
        copy = _copy_for(device, shape, repeat, copies) if framework == "ours" else None
        for direction, call in zip(("forward", "backward"),
                                   _calls(device, case, shape, framework)):
            if call is not None:
                times.append(dict(op=case.name, direction=direction, shape=list(shape),
                                  seconds=median_seconds(call, repeat), copy_gbps=copy))
    return dict(times=times, torch_loaded="torch" in sys.modules,
                torch_before_kernels=_loaded_before("torch", "kernels"))


# PyTorch's worker imports torch before this package: importing kernels sets our thread
# defaults (OMP_WAIT_POLICY=passive among them), which an OpenMP runtime reads when it loads
_TORCH_FIRST = ("import sys, runpy, torch; "
                "runpy.run_module('kernels.bench', run_name='__main__', alter_sys=True)")


def worker_result(command: list[str], what: str) -> dict:
    """Run one benchmark worker process in the user's environment (the one before our thread
    defaults); its last line of output, as JSON."""
    from kernels import user_environment

    done = subprocess.run(command, capture_output=True, text=True, env=user_environment())
    if done.returncode != 0:
        raise RuntimeError(f"{what} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def round_orders(frameworks: list[str], rounds: int) -> list[list[str]]:
    """The order the frameworks run in, per round: which goes first swaps every round, so
    drifting load hits both alike."""
    return [frameworks if round_ % 2 == 0 else frameworks[::-1] for round_ in range(rounds)]


def _run_worker(framework: str, sizes: list[str], repeat: int) -> dict:
    start = ([sys.executable, "-m", "kernels.bench"] if framework == "ours"
             else [sys.executable, "-c", _TORCH_FIRST])
    return worker_result(start + ["--worker", framework, "--sizes", ",".join(sizes),
                                  "--repeat", str(repeat)], f"{framework} kernel")


def own_process_table(sizes: list[str], repeat: int, rounds: int, has_torch: bool
                      ) -> list[dict]:
    """Rows of every CPU case, each framework timed in its own processes, `rounds` of them
    alternating; per case the median over the rounds."""
    frameworks = ["ours", "torch"] if has_torch else ["ours"]
    seconds: dict = {f: {} for f in frameworks}
    copies: dict = {}
    for order in round_orders(frameworks, rounds):
        for framework in order:
            for t in _run_worker(framework, sizes, repeat)["times"]:
                key = (t["op"], t["direction"], tuple(t["shape"]))
                seconds[framework].setdefault(key, []).append(t["seconds"])
                if t["copy_gbps"] is not None:
                    copies.setdefault(key, []).append(t["copy_gbps"])
    by_name = {case.name: case for case in CASES}
    rows = []
    for (op, direction, shape), ours in seconds["ours"].items():  # in table order
        theirs = seconds.get("torch", {}).get((op, direction, shape))
        rows.append(_row(by_name[op], direction, shape, statistics.median(ours),
                         None if theirs is None else statistics.median(theirs),
                         statistics.median(copies[(op, direction, shape)])))
    return rows


# ------------------------------------------------------------------ CPU-only measurements


def median_seconds(fn: Callable, repeat: int) -> float:
    """Median wall time of fn() over `repeat` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _layer_norm_drivers(elements: int) -> tuple[Callable, Callable]:
    """The serial and the parallel LayerNorm forward driver on one (elements/256, 256) input."""
    from kernels.cpu import layer_norm as ln

    x = np.random.default_rng(0).standard_normal((elements // 256, 256)).astype(np.float32)
    y = np.empty_like(x)
    mean, inv_std = np.empty((2, len(x)), np.float32)
    threads = numba.get_num_threads()
    return (lambda: ln._forward_rows(x, None, None, 1e-5, y, mean, inv_std, 0, len(x)),
            lambda: ln._forward_parallel(x, None, None, 1e-5, y, mean, inv_std, threads))


def crossover(repeat: int) -> None:
    """Serial vs parallel LayerNorm forward at growing sizes (sets SERIAL_MAX_ELEMENTS)."""
    print(f"{'elements':>10s} {'serial us':>10s} {'parallel us':>12s}")
    for elements in (4096, 16384, 65536, 262144, 1048576):
        serial, parallel = _layer_norm_drivers(elements)
        print(f"{elements:10d} {median_seconds(serial, repeat) * 1e6:10.1f} "
              f"{median_seconds(parallel, repeat) * 1e6:12.1f}")


def latency(repeat: int) -> dict:
    """Median microseconds of a small call, of a call just above the parallel threshold, and
    of a small call right after a parallel region: a healthy run is 5-50 us each; OpenMP's
    active wait policy on a busy 2-core machine put a 1.5-8 ms floor under them."""
    import kernels.cpu as cpu
    from kernels.cpu.stats import SERIAL_MAX_ELEMENTS

    rng = np.random.default_rng(0)
    small = rng.standard_normal((64, 64)).astype(np.float32)
    just_parallel = rng.standard_normal((SERIAL_MAX_ELEMENTS // 256 + 4, 256)).astype(
        np.float32)
    calls = {"small (64x64)": lambda: cpu.layer_norm_forward(small, None, None, 1e-5),
             "just parallel": lambda: cpu.layer_norm_forward(just_parallel, None, None, 1e-5)}
    calls["parallel then small"] = lambda: (calls["just parallel"](), calls["small (64x64)"]())
    results = {name: median_seconds(call, repeat) * 1e6 for name, call in calls.items()}
    for name, us in results.items():
        print(f"{name:22s} {us:9.1f} us")
    return results


_STARTUP_SCRIPT = """
import time
start = time.perf_counter()
import numpy as np
import kernels.cpu as k
from kernels.cases import CASES
imported = time.perf_counter()
for dtype in (np.float32, np.float64):
    for case in CASES:
        for size in (3, 2100):  # the serial and the parallel driver
            shape = (4, 8 * size) if case.layout == "rows" else (4, 8, size)
            for affine in (True, False):
                case.run(k, case.inputs(shape, dtype, affine=affine))
print(imported - start, time.perf_counter() - imported)
"""


def startup() -> dict:
    """Import time and the time to run every kernel once (float32 and float64, the serial
    and the parallel driver, with and without affine), with an empty Numba cache
    (compilation) and then with the cache it left (cached load)."""
    import tempfile

    results = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold cache (compile)", "warm cache (load)"):
            out = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            results[label] = dict(import_s=float(out[0]), first_calls_s=float(out[1]))
            print(f"{label:22s} import {float(out[0]):6.2f} s   first call of every kernel "
                  f"variant {float(out[1]):6.2f} s")
    return results


# ------------------------------------------------------------------ command line


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--sizes", help="comma list of 'small' (the examples' shapes) and "
                        "working-set sizes in MiB (default: cpu small,64; cuda 4,...,1024)")
    parser.add_argument("--repeat", type=positive_int, default=15,
                        help="timed calls per case (median)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="processes per framework, alternating (CPU; with --train: per "
                             "model); default 3")
    parser.add_argument("--worker", choices=["ours", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes, one call each: checks the code paths (simulator ok)")
    for flag, what in (("--crossover", "serial vs parallel LayerNorm forward (CPU)"),
                       ("--latency", "small-call latency (CPU)"),
                       ("--startup", "compile and cached-load time (CPU)"),
                       ("--accuracy", "float32 error on hard inputs (kernels.accuracy)")):
        parser.add_argument(flag, action="store_true", help=what)
    return parser


def run(args: argparse.Namespace) -> dict | None:
    """Run what args ask for; returns the JSON report of a kernel table (None otherwise)."""
    if args.accuracy:
        from kernels import accuracy

        accuracy.main([])
        return None
    cpu_only = [flag for flag in ("crossover", "latency", "startup") if getattr(args, flag)]
    if cpu_only and args.device != "cpu":
        raise SystemExit(f"--{cpu_only[0]} measures the CPU kernels: leave out --device cuda")
    if args.crossover:
        crossover(args.repeat)
        return None
    if args.latency:
        latency(args.repeat)
        return None
    if args.startup:
        startup()
        return None
    if args.device == "cuda":
        reason = cuda_unavailable_reason(args.smoke)
        if reason is not None:
            raise SystemExit(f"cuda benchmark cannot run: {reason}")
    repeat = 1 if args.smoke else args.repeat
    sizes = ["smoke"] if args.smoke else (args.sizes or DEFAULT_SIZES[args.device]).split(",")
    for size in sizes:
        if size not in ("small", "smoke"):
            try:
                float(size)
            except ValueError:
                raise SystemExit(f"--sizes takes 'small' and MiB numbers, got {size!r}") from None
    if args.worker:  # one framework's times, as JSON, for own_process_table
        print(json.dumps(_worker_times(args.worker, sizes, repeat)))
        return None
    device = Device(args.device)
    rounds = 1 if args.smoke else args.rounds
    method = (f"each framework in its own process, {rounds} round(s) alternating, median of "
              f"{repeat} calls per process" if device.name == "cpu" else
              f"interleaved, median of {repeat}")
    print(f"{device.description()}, torch "
          f"{None if device.torch is None else device.torch.__version__}, float32, {method}\n")
    if device.torch_note:
        print(f"note: {device.torch_note}\n")
    rows = (own_process_table(sizes, repeat, rounds, device.torch is not None)
            if device.name == "cpu" else kernel_table(device, sizes, repeat))
    print_table(rows)
    report = dict(meta=dict(device=device.description(), machine=platform.machine(),
                            processor=cpu_description(), threads=numba.get_num_threads(),
                            numba=numba.__version__, repeat=repeat, rounds=rounds,
                            torch=None if device.torch is None else device.torch.__version__,
                            torch_note=device.torch_note, units="MiB = 2^20 bytes of x"),
                  rows=rows)
    if device.name == "cpu":
        report["meta"]["threading_layer"] = numba.threading_layer()
        print(f"\nnumba threading layer: {numba.threading_layer()}")
    return report


def write_json(report: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"\nwrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    args = add_arguments(parser).parse_args(argv)
    report = run(args)
    if report is not None and args.json:
        write_json(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
