"""`tinygrad-norm bench --train`: one SGD training step of five models, ours against PyTorch's.

A user training from scratch waits for the whole step (forward, loss, backward, update), not
just the norm layers, so this times exactly that, as a user runs it:

- each framework in its own process, with the user's environment: the one this process had
  before `import tinygrad_norm` set its thread defaults. Ours runs `python -m
  tinygrad_norm.train_bench --worker ours ...` (and sets its defaults itself, as it does for a
  user); PyTorch's worker loads this file by path, so that tinygrad_norm is never imported
  there (if it were, PyTorch would run under our OMP_WAIT_POLICY=passive: measured 1.3-2.0x
  slower on the digits CNN);
- ours and PyTorch's alternate, and which goes first swaps every round;
- per process: a few warm-up steps (Numba's first call loads or compiles), then timed steps;
  the round's number is the median step; the reported number is the median over rounds.

The same architecture is built from `torch.nn` and from `tinygrad_norm.nn`, which share the
names used here. A last row times only the MLP step's eight matrix products, NumPy's against
torch's, the same way (the BLAS libraries' share of the MLPs' gap). Then the normalization
layers alone at 16 MB working sets (LAYERS_16MB, forward+backward with autograd), also each
framework in its own processes: in ours, PyTorch's LayerNorm at 16 MB measured about 1.2x
slower (OMP_WAIT_POLICY=passive). `tinygrad-norm bench` (without --train) times the same
layers at the examples' shapes (LAYERS_SMALL) the same way, after the kernel table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

# Nothing of tinygrad_norm or kernels at module level: PyTorch's worker runs this file without
# our package (and its thread defaults); the functions that only the parent runs import
# kernels.bench inside.

# name: (description, batch, input shape (C, H, W) or (features,), builder(nn) -> model)
MODELS = {
    "digits_cnn": ("the examples' digits CNN, BatchNorm, batch 32, 1x8x8", 32, (1, 8, 8),
                   lambda nn: _digits_cnn(nn)),
    "mnist_cnn": ("MNIST-shaped CNN, BatchNorm, batch 64, 1x28x28", 64, (1, 28, 28),
                  lambda nn: _two_block_cnn(nn, 1, 28, lambda c: nn.BatchNorm2d(c))),
    "cifar_cnn": ("CIFAR-shaped CNN, GroupNorm(8), batch 32, 3x32x32", 32, (3, 32, 32),
                  lambda nn: _two_block_cnn(nn, 3, 32, lambda c: nn.GroupNorm(8, c))),
    "mlp_batchnorm": ("MLP 784-512-512-10, BatchNorm1d, batch 128", 128, (784,),
                      lambda nn: _mlp(nn, nn.BatchNorm1d)),
    "mlp_layernorm": ("MLP 784-512-512-10, LayerNorm, batch 128", 128, (784,),
                      lambda nn: _mlp(nn, nn.LayerNorm)),
}
CLASSES = 10
LR, MOMENTUM = 0.01, 0.9
# (layer name, constructor args, input shape) of the two layer tables: the examples' MLP width
# and CNN feature maps, and 16 MiB float32 inputs (4 Mi elements), past the private caches,
# where memory traffic decides
LAYERS_SMALL = [
    ("BatchNorm1d", (128,), (64, 128)),
    ("LayerNorm", (128,), (64, 128)),
    ("RMSNorm", (128,), (64, 128)),
    ("BatchNorm2d", (16,), (64, 16, 8, 8)),
    ("GroupNorm", (4, 16), (64, 16, 8, 8)),
    ("InstanceNorm2d", (16,), (64, 16, 8, 8)),
]
LAYERS_16MB = [
    ("BatchNorm1d", (1024,), (4096, 1024)),
    ("LayerNorm", (1024,), (4096, 1024)),
    ("RMSNorm", (1024,), (4096, 1024)),
    ("BatchNorm2d", (64,), (64, 64, 32, 32)),
    ("GroupNorm", (8, 64), (64, 64, 32, 32)),
    ("InstanceNorm2d", (64,), (64, 64, 32, 32)),
]
TABLE_16MB, TABLE_SMALL = "layers_16mb", "layers_small"  # --model of a layer-table worker
# each table's layers and the timed calls per process (a small layer takes ~100 us)
LAYER_TABLES = {TABLE_16MB: (LAYERS_16MB, 10), TABLE_SMALL: (LAYERS_SMALL, 50)}


def _digits_cnn(nn):
    """examples' make_cnn(norm="batch", channels=16), written out for both frameworks."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 2 * 2, CLASSES))


def _two_block_cnn(nn, channels: int, size: int, norm):
    """conv 32, conv 64 (3x3, pad 1), each followed by norm, ReLU and 2x2 max pooling."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), norm(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), norm(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (size // 4) ** 2, CLASSES))


def _mlp(nn, norm):
    return nn.Sequential(nn.Linear(784, 512), norm(512), nn.ReLU(),
                         nn.Linear(512, 512), norm(512), nn.ReLU(), nn.Linear(512, CLASSES))


def _batch(model: str) -> tuple[np.ndarray, np.ndarray]:
    _, batch, shape, _ = MODELS[model]
    rng = np.random.default_rng(0)
    return (rng.standard_normal((batch, *shape)).astype(np.float32),
            rng.integers(0, CLASSES, batch).astype(np.int64))


def _ours_step(model: str):
    from . import nn, optim
    from .nn import functional as F
    from .tensor import Tensor

    net = MODELS[model][3](nn)
    optimizer = optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    x, labels = _batch(model)
    inputs = Tensor(x)

    def step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(net(inputs), labels).backward()
        optimizer.step()
    return step


def _torch_step(model: str):
    import torch

    net = MODELS[model][3](torch.nn)
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    x, labels = _batch(model)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(labels)

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(inputs), targets).backward()
        optimizer.step()
    return step


# Not a model: the eight matrix products of one MLP step alone (forward x @ W.T per layer;
# backward g.T @ x per layer and g @ W for the two layers whose input needs a gradient), as
# NumPy's matmul (what our Linear calls) and as torch's, to show how much of the MLPs' gap is
# the BLAS library's (NumPy ships OpenBLAS, the PyTorch wheel MKL).
PRODUCTS = "mlp_products"
PRODUCTS_DESCRIPTION = "(not a model) the MLP step's 8 matrix products"


def _products_step(framework: str):
    rng = np.random.default_rng(0)
    sizes = [(784, 512), (512, 512), (512, CLASSES)]
    arrays = [(rng.standard_normal((128, k), np.float32),
               rng.standard_normal((n, k), np.float32),
               rng.standard_normal((128, n), np.float32)) for k, n in sizes]
    if framework == "torch":
        import torch

        arrays = [tuple(torch.from_numpy(a) for a in layer) for layer in arrays]

    def step() -> None:
        for x, w, _ in arrays:
            x @ w.T
        for layer, (x, w, g) in enumerate(arrays):
            g.T @ x
            if layer:
                g @ w
    return step


def _layer_times(framework: str, table: str = TABLE_16MB) -> dict:
    """Median forward+backward seconds of each layer of LAYER_TABLES[table] in this process,
    autograd included, on a fresh leaf input each call (no copy of it on either side)."""
    layers, repeat = LAYER_TABLES[table]
    if framework == "ours":
        from . import nn
        from .tensor import Tensor

        def leaf(x):
            return Tensor(x, requires_grad=True)
        upstream = np.asarray
    else:
        import torch

        nn = torch.nn

        def leaf(x):
            return torch.from_numpy(x).requires_grad_()
        upstream = torch.from_numpy
    rng = np.random.default_rng(0)
    times = {}
    for name, args, shape in layers:
        x = rng.standard_normal(shape).astype(np.float32)
        dy = upstream(rng.standard_normal(shape).astype(np.float32))
        layer = getattr(nn, name)(*args)

        def step(layer=layer, x=x, dy=dy) -> None:
            layer(leaf(x)).backward(dy)
        step(), step()  # warm-up (Numba's first call loads or compiles)
        times[name] = statistics.median(_seconds(step) for _ in range(repeat))
    return times


def _worker(framework: str, model: str, warmup: int, seconds: float) -> dict:
    """Time steps in this process: `warmup` untimed, then at least 5 and about `seconds`."""
    if model in LAYER_TABLES:
        return {"layers_s": _layer_times(framework, model),
                "tinygrad_norm_imported": "tinygrad_norm" in sys.modules}
    if model == PRODUCTS:
        step = _products_step(framework)
    else:
        step = (_ours_step if framework == "ours" else _torch_step)(model)
    for _ in range(warmup):
        step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < seconds and len(times) < 200):
        begin = time.perf_counter()
        step()
        times.append(time.perf_counter() - begin)
    return {"median_s": statistics.median(times), "steps": len(times),
            "tinygrad_norm_imported": "tinygrad_norm" in sys.modules}


# PyTorch's worker loads this file by its path, not as part of the package: importing
# tinygrad_norm sets thread defaults (OMP_WAIT_POLICY=passive among them) that PyTorch, loaded
# after it, would run under; a PyTorch user's process has none of them.
_STANDALONE = ("import importlib.util, sys; "
               "spec = importlib.util.spec_from_file_location('train_bench_alone', sys.argv[1]); "
               "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
               "sys.exit(module.main(sys.argv[2:]))")


def _worker_command(framework: str, model: str, warmup: int, seconds: float) -> list[str]:
    start = ([sys.executable, "-m", "tinygrad_norm.train_bench"] if framework == "ours"
             else [sys.executable, "-c", _STANDALONE, __file__])
    return start + ["--worker", framework, "--model", model, "--warmup", str(warmup),
                    "--seconds", str(seconds)]


def _run_worker(framework: str, model: str, warmup: int, seconds: float) -> dict:
    """One worker process's result, run in the user's environment: what this process's
    environment was before `import tinygrad_norm` added its defaults."""
    from kernels.bench import worker_result

    return worker_result(_worker_command(framework, model, warmup, seconds),
                         f"{framework} {model}")


def blas_configuration() -> dict:
    """NumPy's BLAS as this process loaded it (our products run there): its library, version,
    kernel family and threads by threadpoolctl where it is installed, and the OPENBLAS_*
    variables of the environment, which can force the kernel family (OPENBLAS_CORETYPE)."""
    found = {"environment": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return found
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            found.update({key: pool.get(key) for key in
                          ("internal_api", "version", "architecture", "num_threads")})
            break
    return found


def _print_blas(blas: dict) -> None:
    kernels = (f"{blas['internal_api']} {blas['version']}, {blas['architecture']} kernels, "
               f"{blas['num_threads']} threads" if "internal_api" in blas
               else "library unknown (threadpoolctl is not installed or found no BLAS)")
    variables = ", ".join(f"{k}={v}" for k, v in sorted(blas["environment"].items()))
    print(f"NumPy's BLAS (our matrix products): {kernels}; "
          f"environment: {variables or 'no OPENBLAS_* variables'}")


def _frameworks() -> list[str]:
    """The frameworks to time: PyTorch's only where it is installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return ["ours"]
    return ["ours", "torch"]


def run(rounds: int = 3, models: list[str] | None = None, warmup: int = 3,
        seconds: float = 1.0, layers: bool = True) -> dict:
    """Time every model `rounds` times per framework, alternating; print and return the table."""
    frameworks = _frameworks()
    has_torch = "torch" in frameworks
    models = list(models or [*MODELS, PRODUCTS])
    times: dict = {m: {f: [] for f in frameworks} for m in models}
    from kernels.bench import round_orders

    for order in round_orders(frameworks, rounds):
        for model in models:
            for framework in order:
                times[model][framework].append(
                    _run_worker(framework, model, warmup, seconds)["median_s"])
    rows = []
    for model in models:
        ours = statistics.median(times[model]["ours"])
        theirs = statistics.median(times[model]["torch"]) if has_torch else None
        description = PRODUCTS_DESCRIPTION if model == PRODUCTS else MODELS[model][0]
        rows.append(dict(model=model, description=description, ours_ms=ours * 1e3,
                         torch_ms=None if theirs is None else theirs * 1e3,
                         speed_ratio=None if theirs is None else theirs / ours,
                         rounds_ours_ms=[t * 1e3 for t in times[model]["ours"]],
                         rounds_torch_ms=[t * 1e3 for t in times[model].get("torch", [])]))
    from kernels.bench import cpu_description

    cpu = cpu_description()
    print(f"CPU: {cpu}")
    blas = blas_configuration()
    _print_blas(blas)
    _print_steps(rows, rounds, has_torch)
    report = {"rounds": rounds, "cpu": cpu, "blas": blas, "steps": rows, "torch": has_torch}
    ratios = [r["speed_ratio"] for r in rows if r["speed_ratio"] and r["model"] != PRODUCTS]
    if ratios:
        report["geomean_speed_ratio"] = float(np.exp(np.mean(np.log(ratios))))
        print(f"geomean of ours/PyTorch speed: {report['geomean_speed_ratio']:.2f}")
    report["autograd"] = autograd_overhead()
    if layers:
        report["layers_16mb"] = layer_table(rounds, TABLE_16MB, frameworks)
    return report


def layer_table(rounds: int, table: str = TABLE_16MB, frameworks: list[str] | None = None
                ) -> list[dict]:
    """Forward+backward of the layers of LAYER_TABLES[table], each framework in its own
    processes as the steps are (alternating, `rounds` rounds); per layer the best round's
    median. Printed and returned."""
    frameworks = frameworks or _frameworks()
    best: dict = {f: {} for f in frameworks}
    from kernels.bench import round_orders

    for order in round_orders(frameworks, rounds):
        for framework in order:
            for name, seconds in _run_worker(framework, table, 0, 0)["layers_s"].items():
                best[framework][name] = min(seconds, best[framework].get(name, float("inf")))
    rows = []
    print(f"\n{'layer (forward+backward, autograd)':36s} {'shape':>12s} {'ours us':>9s} "
          f"{'torch us':>9s} {'speedup':>8s}")
    for name, _, shape in LAYER_TABLES[table][0]:
        ours = best["ours"][name]
        theirs = best["torch"][name] if "torch" in best else None
        rows.append(dict(layer=name, shape=list(shape), ours_us=ours * 1e6,
                         torch_us=None if theirs is None else theirs * 1e6,
                         speedup=None if theirs is None else theirs / ours))
        torch_us = "-" if theirs is None else f"{theirs * 1e6:9.1f}"
        speedup = "-" if theirs is None else f"{theirs / ours:7.2f}x"
        print(f"{name:36s} {'x'.join(map(str, shape)):>12s} {ours * 1e6:9.1f} {torch_us:>9s} "
              f"{speedup:>8s}")
    return rows


def autograd_overhead(ops: int = 2000, repeat: int = 7) -> dict:
    """Microseconds per Function.apply (a graph-building multiply of 4-element arrays) and
    per backward node (its Mul.backward: two 4-element NumPy products included), beside one
    4-element NumPy product: what the engine adds to every op."""
    from .tensor import Tensor

    a = Tensor(np.ones(4, np.float32), requires_grad=True)
    b = Tensor(np.ones(4, np.float32), requires_grad=True)

    def chain():
        x = a
        for _ in range(ops):
            x = x * b
        return x.sum()

    def backward_seconds() -> float:
        loss = chain()
        begin = time.perf_counter()
        loss.backward()
        return time.perf_counter() - begin

    x = np.ones(4, np.float32)
    numpy_s = statistics.median(_seconds(lambda: [x * x for _ in range(ops)])
                                for _ in range(repeat))
    apply_s = statistics.median(_seconds(chain) for _ in range(repeat))
    node_s = statistics.median(backward_seconds() for _ in range(repeat))
    result = {"apply_us": apply_s / ops * 1e6, "backward_node_us": node_s / ops * 1e6,
              "numpy_multiply_us": numpy_s / ops * 1e6}
    print(f"autograd overhead: {result['apply_us']:.2f} us per Function.apply, "
          f"{result['backward_node_us']:.2f} us per backward node (one NumPy multiply of the "
          f"same arrays: {result['numpy_multiply_us']:.2f} us)")
    return result


def _seconds(function) -> float:
    begin = time.perf_counter()
    function()
    return time.perf_counter() - begin


def _print_steps(rows: list[dict], rounds: int, has_torch: bool) -> None:
    print(f"one SGD step (forward, cross-entropy, backward, update), each framework in its own "
          f"process, median of {rounds} rounds")
    print(f"{'model':54s} {'ours ms':>9s} {'torch ms':>9s} {'ours/torch speed':>17s}")
    for r in rows:
        theirs = "-" if r["torch_ms"] is None else f"{r['torch_ms']:9.2f}"
        ratio = "-" if r["speed_ratio"] is None else f"{r['speed_ratio']:16.2f}x"
        print(f"{r['description']:54s} {r['ours_ms']:9.2f} {theirs:>9s} {ratio:>17s}")
    if any(r["model"] == PRODUCTS for r in rows):
        print("(the products row: NumPy's matmul, which our Linear calls (OpenBLAS), against "
              "torch's (MKL), same shapes, own processes; not in the geomean)")
    if not has_torch:
        print("(PyTorch is not installed: its column is empty; pip install torch==2.13.0)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=["ours", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=[*MODELS, PRODUCTS, *LAYER_TABLES],
                        help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is None or args.model is None:
        parser.error("this module is run by `tinygrad-norm bench --train`")
    print(json.dumps(_worker(args.worker, args.model, args.warmup, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
