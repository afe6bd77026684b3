"""The `tinygrad-norm` command: train, gradcheck, bench."""

from __future__ import annotations

import argparse
import sys


def _train(args) -> int:
    from .training import train_mlp

    print(f"training an MLP on digits with norm={args.norm} for {args.epochs} epochs")
    history = train_mlp(norm=args.norm, epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, seed=args.seed)
    print(f"final test accuracy: {history['test_accuracy'][-1]:.3f}")
    return 0


def _gradcheck(args) -> int:
    """Run gradcheck on every normalization layer, in training and eval mode."""
    import numpy as np

    from . import Tensor, gradcheck, nn

    layers = {
        "BatchNorm1d": (lambda: nn.BatchNorm1d(3), (4, 3, 5)),
        "BatchNorm2d": (lambda: nn.BatchNorm2d(3), (3, 3, 2, 3)),
        "InstanceNorm2d": (lambda: nn.InstanceNorm2d(3, affine=True,
                                                     track_running_stats=True), (2, 3, 3, 2)),
        "LayerNorm": (lambda: nn.LayerNorm((3, 4)), (2, 3, 4)),
        "GroupNorm": (lambda: nn.GroupNorm(2, 4), (2, 4, 3)),
        "RMSNorm": (lambda: nn.RMSNorm(5), (3, 5)),
    }
    rng = np.random.default_rng(args.seed)
    for name, (make, shape) in layers.items():
        for mode in ("train", "eval"):
            layer = make().double().train(mode == "train")
            for param in layer.parameters():
                param.data[...] = rng.uniform(0.5, 1.5, param.shape)
            x = Tensor(rng.standard_normal(shape), requires_grad=True)
            gradcheck(lambda x, *params, layer=layer: layer(x), (x, *layer.parameters()))
            print(f"gradcheck {name:15s} {mode:5s} ok")
    return 0


def _bench(args) -> int:
    """The kernel table of `python -m kernels.bench`, then (for a plain CPU run) the same
    normalizations through the layers with autograd, added to the --json file if given."""
    import json

    from kernels.bench import main as bench_main

    status = bench_main(args.bench_args)
    special = {"--crossover", "--startup", "--accuracy", "cuda", "-h", "--help"}
    if status or special & set(args.bench_args):
        return status
    from .layer_bench import main as layer_bench_main

    rows = layer_bench_main()
    if "--json" in args.bench_args:
        path = args.bench_args[args.bench_args.index("--json") + 1]
        with open(path) as f:
            report = json.load(f)
        report["layers"] = rows
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinygrad-norm",
        description="Normalization layers on hand-written Numba kernels: train, check, measure.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a small MLP on the bundled digits data")
    train.add_argument("--norm", choices=["none", "batch", "layer", "rms"], default="batch")
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=0.1)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=_train)

    check = sub.add_parser("gradcheck", help="gradcheck every normalization layer (float64)")
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(run=_gradcheck)

    bench = sub.add_parser("bench", help="benchmark the kernels against PyTorch "
                                         "(arguments go to python -m kernels.bench)")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(run=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "bench":  # its options belong to python -m kernels.bench
        args.bench_args = unknown + args.bench_args
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
