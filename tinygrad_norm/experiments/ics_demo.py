"""`tinygrad-norm ics` / examples/ics.py: the internal covariate shift demonstration.

  a  scale:      std per layer of a deep N(0,1) Linear stack, sqrt(n)^k, overflow; BN/LN fix it
  b  sigmoid:    Ioffe & Szegedy Fig. 1, a sigmoid MLP with and without BatchNorm
  c  batch_size: Wu & He, the CNN with BatchNorm vs GroupNorm at batch sizes 2 to 32
  d  shift:      ICS itself per layer over training (Santurkar et al.), none / BN / LN

Each part prints its table and writes PART.json and PART.png into the output folder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .arguments import output_folder, positive_int, seed

PARTS = {"a": "scale", "b": "sigmoid", "c": "batch_size", "d": "shift"}


def part_letter(text: str) -> str:
    # a type instead of choices=: argparse checks choices against nargs="*"'s empty default
    if text not in PARTS:
        raise argparse.ArgumentTypeError(f"unknown part {text!r}; choose from {', '.join(PARTS)}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("parts", nargs="*", type=part_letter, metavar="PART",
                        help="which parts to run: a b c d (default: --all)")
    parser.add_argument("--all", action="store_true", help="run parts a, b, c and d")
    parser.add_argument("--out", type=output_folder, default="runs/ics",
                        help="output folder (default runs/ics)")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    scale = parser.add_argument_group("part a (scale)")
    scale.add_argument("--stack-depth", type=positive_int, default=50)
    scale.add_argument("--stack-width", type=positive_int, default=100)
    scale.add_argument("--normal-init-epochs", type=positive_int, default=5,
                       help="epochs of the N(0,1)-initialised MLP trained with each norm")
    sigmoid = parser.add_argument_group("part b (sigmoid MLP)")
    sigmoid.add_argument("--sigmoid-steps", type=positive_int, default=3000)
    sigmoid.add_argument("--sigmoid-eval-every", type=positive_int, default=50)
    batch = parser.add_argument_group("part c (batch size)")
    batch.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[2, 4, 8, 16, 32])
    batch.add_argument("--batch-size-epochs", type=positive_int, default=6)
    shift = parser.add_argument_group("part d (ICS per layer)")
    shift.add_argument("--shift-epochs", type=positive_int, default=4)
    shift.add_argument("--shift-every", type=positive_int, default=5, help="measure every N steps")
    return parser


def run(args: argparse.Namespace) -> dict:
    # imported here, so that building the CLI's parser needs none of the examples' extras
    from . import ics_batch_size, ics_scale, ics_shift, ics_sigmoid
    from .blas import one_blas_thread
    from .results import output_folder, write_json

    parts = list(PARTS) if args.all or not args.parts else sorted(set(args.parts))
    out = output_folder(args.out)
    progress, seed = not args.no_progress, args.seed
    experiments = {
        "a": lambda: ics_scale.run(out, args.stack_width, args.stack_depth,
                                   epochs=args.normal_init_epochs, seed=seed, progress=progress),
        "b": lambda: ics_sigmoid.run(out, args.sigmoid_steps, args.sigmoid_eval_every,
                                     seed=seed, progress=progress),
        "c": lambda: ics_batch_size.run(out, tuple(args.batch_sizes), args.batch_size_epochs,
                                        seed=seed, progress=progress),
        "d": lambda: ics_shift.run(out, args.shift_epochs, args.shift_every, seed=seed,
                                   progress=progress),
    }
    results, start = {}, time.perf_counter()
    with one_blas_thread():
        for part in parts:
            part_start = time.perf_counter()
            results[part] = experiments[part]()
            results[part]["seconds"] = time.perf_counter() - part_start
            write_json(out / f"{PARTS[part]}.json", results[part])
            print(f"    part {part} took {results[part]['seconds']:.1f} s")
    written = ", ".join(f"{PARTS[p]}.json/.png" for p in parts)
    print(f"\nICS demonstration done in {time.perf_counter() - start:.1f} s; "
          f"wrote {written} to {Path(out).resolve()}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:7]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    run(add_arguments(parser).parse_args(argv))
    return 0
