"""`tinygrad-norm train` / examples/train_mlp.py: an MLP on digits with a chosen normalization.

With `--init normal` every weight is N(0, 1): without normalization each layer multiplies the
activations' scale by about sqrt(fan_in), the logits are huge and training fails; with a
normalization layer after each Linear the scale is reset and the same network trains.
"""

from __future__ import annotations

import argparse

from .arguments import non_negative_int, output_folder, positive_float, positive_int, seed
from .models import INITS, MLP_NORMS, initialize, make_mlp


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--norm", choices=MLP_NORMS, default="batch")
    parser.add_argument("--init", choices=INITS, default="default",
                        help="normal: N(0,1) weights, the setting of the scale argument")
    parser.add_argument("--epochs", type=positive_int, default=10)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--lr", type=positive_float, default=0.05)
    parser.add_argument("--width", type=positive_int, default=100)
    parser.add_argument("--depth", type=non_negative_int, default=3, help="number of hidden layers")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--out", type=output_folder, default=None,
                        help="output folder (default runs/mlp-NORM-INIT)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.npz up to --epochs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> dict:
    # imported here, so that building the CLI's parser needs none of the examples' extras
    from .classify import run_classifier

    config = {"name": "mlp", "norm": args.norm, "init": args.init, "epochs": args.epochs,
              "batch_size": args.batch_size, "lr": args.lr, "width": args.width,
              "depth": args.depth, "seed": args.seed}
    out = args.out or f"runs/mlp-{args.norm}-{args.init}"
    print(f"training an MLP on digits: norm={args.norm}, init={args.init}, "
          f"{args.epochs} epochs")
    return run_classifier(
        lambda: initialize(make_mlp(args.norm, args.width, args.depth), args.init),
        config, out, images=False, resume=args.resume, progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    run(add_arguments(parser).parse_args(argv))
    return 0
