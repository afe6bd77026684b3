"""`tinygrad-norm ics` / examples/ics.py: the internal covariate shift demonstration.

  a  scale:      std per layer of a deep N(0,1) Linear stack, sqrt(n)^k, overflow; BN/LN fix it
  b  sigmoid:    Ioffe & Szegedy Fig. 1, a sigmoid MLP with and without BatchNorm
  c  batch_size: Wu & He / Ioffe, the CNN with BN, GN and BatchRenorm at batch sizes 1 to 32
  d  shift:      ICS per layer and loss smoothness over training (Santurkar et al.), none/BN/LN
  e  sequence:   Ba et al., LSTM with no norm / per-step BatchNorm / LayerNorm, variable lengths
  f  style:      Ulyanov et al., a generator with BatchNorm vs InstanceNorm; an AdaIN step

Each part prints its table and writes PART.json and PART.png into the output folder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .arguments import output_folder, positive_int, seed

PARTS = {"a": "scale", "b": "sigmoid", "c": "batch_size", "d": "shift", "e": "sequence",
         "f": "style"}


def part_letter(text: str) -> str:
    # a type instead of choices=: argparse checks choices against nargs="*"'s empty default
    if text not in PARTS:
        raise argparse.ArgumentTypeError(f"unknown part {text!r}; choose from {', '.join(PARTS)}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("parts", nargs="*", type=part_letter, metavar="PART",
                        help="which parts to run: a b c d e f (default: --all)")
    parser.add_argument("--all", action="store_true", help="run every part, a to f")
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
    batch.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    batch.add_argument("--batch-size-epochs", type=positive_int, default=3)
    batch.add_argument("--batch-size-seeds", type=positive_int, default=3, help="seeds per point")
    batch.add_argument("--batch-size-images", type=positive_int, default=500,
                       help="training images (a subset of the 1,347)")
    batch.add_argument("--batch-size-noise", type=float, default=0.3,
                       help="std of the Gaussian pixel noise added to train and test images")
    batch.add_argument("--batch-size-channels", type=positive_int, default=8)
    shift = parser.add_argument_group("part d (ICS per layer)")
    shift.add_argument("--shift-epochs", type=positive_int, default=4)
    shift.add_argument("--shift-every", type=positive_int, default=5, help="measure every N steps")
    sequence = parser.add_argument_group("part e (LayerNorm for sequences)")
    sequence.add_argument("--sequence-steps", type=positive_int, default=200, help="Adam steps")
    sequence.add_argument("--sequence-hidden", type=positive_int, default=24)
    sequence.add_argument("--sequence-eval-every", type=positive_int, default=25)
    style = parser.add_argument_group("part f (InstanceNorm for style)")
    style.add_argument("--style-steps", type=positive_int, default=300, help="Adam steps")
    style.add_argument("--style-channels", type=positive_int, default=16)
    return parser


def run(args: argparse.Namespace) -> dict:
    # imported here, so that building the CLI's parser needs none of the examples' extras
    from . import ics_batch_size, ics_scale, ics_sequence, ics_shift, ics_sigmoid, ics_style
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
        "c": lambda: ics_batch_size.run(
            out, tuple(args.batch_sizes), args.batch_size_epochs, args.batch_size_seeds,
            args.batch_size_images, args.batch_size_noise, args.batch_size_channels, seed=seed,
            progress=progress),
        "d": lambda: ics_shift.run(out, args.shift_epochs, args.shift_every, seed=seed,
                                   progress=progress),
        "e": lambda: ics_sequence.run(out, args.sequence_steps, args.sequence_hidden,
                                      eval_every=args.sequence_eval_every, seed=seed,
                                      progress=progress),
        "f": lambda: ics_style.run(out, args.style_steps, args.style_channels, seed=seed,
                                   progress=progress),
    }
    results, start, cpu_start = {}, time.perf_counter(), time.process_time()
    with one_blas_thread():
        for part in parts:
            part_start, part_cpu = time.perf_counter(), time.process_time()
            results[part] = experiments[part]()
            results[part]["seconds"] = time.perf_counter() - part_start
            results[part]["cpu_seconds"] = time.process_time() - part_cpu
            write_json(out / f"{PARTS[part]}.json", results[part])
            print(f"    part {part} took {results[part]['seconds']:.1f} s "
                  f"({results[part]['cpu_seconds']:.1f} s of CPU)")
    written = ", ".join(f"{PARTS[p]}.json/.png" for p in parts)
    print(f"\nICS demonstration done in {time.perf_counter() - start:.1f} s "
          f"({time.process_time() - cpu_start:.1f} s of CPU); "
          f"wrote {written} to {Path(out).resolve()}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:9]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    run(add_arguments(parser).parse_args(argv))
    return 0
