"""`tinygrad-norm train-cnn` / examples/train_cnn.py: a small CNN on the 8x8 digits images.

Three 3x3 conv blocks (conv -> norm -> ReLU, max-pooling after the last two) and a Linear
classifier. `--batch-size` matters for BatchNorm, whose statistics come from the batch, and not
for GroupNorm, InstanceNorm or LayerNorm, whose statistics come from each sample.
"""

from __future__ import annotations

import argparse

from .arguments import output_folder, positive_float, positive_int, seed
from .models import CNN_NORMS, INITS, initialize, make_cnn


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--norm", choices=CNN_NORMS, default="batch")
    parser.add_argument("--init", choices=INITS, default="default",
                        help="normal: N(0,1) weights, the setting of the scale argument")
    parser.add_argument("--epochs", type=positive_int, default=10)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--lr", type=positive_float, default=0.02)
    parser.add_argument("--channels", type=positive_int, default=16,
                        help="channels of the first conv block (then 2x and 4x)")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--out", type=output_folder, default=None,
                        help="output folder (default runs/cnn-NORM-bBATCH)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.npz up to --epochs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> dict:
    # imported here, so that building the CLI's parser needs none of the examples' extras
    from .classify import run_classifier

    config = {"name": "cnn", "norm": args.norm, "init": args.init, "epochs": args.epochs,
              "batch_size": args.batch_size, "lr": args.lr, "channels": args.channels,
              "seed": args.seed}
    out = args.out or f"runs/cnn-{args.norm}-b{args.batch_size}"
    print(f"training a CNN on digits: norm={args.norm}, batch size {args.batch_size}, "
          f"{args.epochs} epochs")
    return run_classifier(
        lambda: initialize(make_cnn(args.norm, args.channels), args.init),
        config, out, images=True, resume=args.resume, progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    run(add_arguments(parser).parse_args(argv))
    return 0
