"""The `tinygrad-norm` command: train, train-cnn, train-ddp, ics, gradcheck, bench."""

from __future__ import annotations

import argparse
import sys


def _example(run):
    """The CLI handler of an example: its `run(args)` returns the results; the exit code is 0."""
    def handler(args) -> int:
        from .experiments.arguments import UsageError

        try:
            run(args)
        except UsageError as err:  # a request that parsed but cannot be done: no traceback
            print(f"tinygrad-norm {args.command}: error: {err}", file=sys.stderr)
            return 2
        return 0
    return handler


def _add_example_commands(sub) -> None:
    """train, train-cnn and ics; without the examples extra they say what to install."""
    try:
        from .experiments import ics_demo, train_cnn, train_ddp, train_mlp
    except ImportError as err:
        absent = err.name

        def missing(args) -> int:
            sys.exit(f"tinygrad-norm {args.command} needs the examples extra ({absent} is "
                     f"not installed): pip install 'tinygrad_norm[examples]'")

        for name in ("train", "train-cnn", "train-ddp", "ics"):
            command = sub.add_parser(name, help="an example (needs tinygrad_norm[examples])")
            command.add_argument("args", nargs=argparse.REMAINDER)
            command.set_defaults(run=missing)
        return
    train = sub.add_parser("train", aliases=["train-mlp"],
                           help="train an MLP on the bundled digits data (examples/train_mlp.py)")
    train_mlp.add_arguments(train).set_defaults(run=_example(train_mlp.run))
    cnn = sub.add_parser("train-cnn", help="train a small CNN on the digits images "
                                           "(examples/train_cnn.py)")
    train_cnn.add_arguments(cnn).set_defaults(run=_example(train_cnn.run))
    ddp = sub.add_parser("train-ddp", help="data-parallel CNN training over MPI: mpiexec -n 4 "
                                           "tinygrad-norm train-ddp (examples/train_ddp.py)",
                         description=train_ddp.__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    train_ddp.add_arguments(ddp).set_defaults(run=_example(train_ddp.run))
    ics = sub.add_parser("ics", help="why each normalization exists, demonstrated: parts a-f "
                                     "(examples/ics.py)",
                         description=ics_demo.__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    ics_demo.add_arguments(ics).set_defaults(run=_example(ics_demo.run))


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
    """The kernel table of `python -m kernels.bench`, then (for a CPU kernel table) the same
    normalizations through the layers with autograd, in the same --json report."""
    from kernels import bench

    if args.train:
        from . import train_bench

        if args.smoke:  # the code paths only: one model, one short round, no layer table
            report = train_bench.run(rounds=1, models=["digits_cnn"], warmup=1, seconds=0.05,
                                     layers=False)
        else:
            report = train_bench.run(rounds=args.rounds, layers=not args.no_layers)
        if args.json:
            bench.write_json(report, args.json)
        return 0
    report = bench.run(args)
    if report is not None and args.device == "cpu" and not args.smoke and not args.no_layers:
        from . import train_bench

        report["layers"] = train_bench.layer_table(args.rounds, train_bench.TABLE_SMALL)
    if report is not None and args.json:
        bench.write_json(report, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .experiments.arguments import seed

    parser = argparse.ArgumentParser(
        prog="tinygrad-norm",
        description="Normalization layers on hand-written Numba kernels: train, check, measure.")
    sub = parser.add_subparsers(dest="command", required=True)

    _add_example_commands(sub)

    check = sub.add_parser("gradcheck", help="gradcheck every normalization layer (float64)")
    check.add_argument("--seed", type=seed, default=0)
    check.set_defaults(run=_gradcheck)

    from kernels import bench as kernel_bench

    bench = sub.add_parser("bench", help="benchmark the kernels (and the layers) against "
                                         "PyTorch and the copy bandwidth",
                           description=kernel_bench.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    kernel_bench.add_arguments(bench)
    bench.add_argument("--no-layers", action="store_true",
                       help="leave out the layer table (forward+backward with autograd)")
    bench.add_argument("--train", action="store_true",
                       help="time one SGD step of five models, ours and PyTorch's, each in its "
                            "own process (tinygrad_norm/train_bench.py), then the layers at 16 MB")
    bench.set_defaults(run=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
