"""examples/ddp_experiment.py: GroupNorm's small-batch case where it arises in practice,
data-parallel training with a small batch per worker.

The digits CNN on 8 ranks (mpiexec -n 8, one process each) with 2 samples per rank and step,
so 16 per step, against one process on batch 16:

    local BatchNorm   statistics of each rank's 2 samples (what plain BatchNorm does in DDP)
    SyncBatchNorm     statistics of all 16 samples of the step
    GroupNorm         per-sample statistics: the batch does not matter
    one process       BatchNorm on batch 16, the same samples per step as the 8 ranks

Writes runs/ddp/*.json, prints the test errors and draws the test error per epoch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

RUNS = [  # (label, ranks, --norm, per-rank batch)
    ("local BatchNorm, 8 x 2", 8, "batch", 2),
    ("SyncBatchNorm, 8 x 2", 8, "sync-batch", 2),
    ("GroupNorm, 8 x 2", 8, "group", 2),
    ("one process, BatchNorm, batch 16", 1, "batch", 16),
]


def mpiexec() -> str:
    """The mpiexec of this Python's environment (the mpich wheel's), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit("no mpiexec: pip install 'tinygrad_norm[distributed]'")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/ddp", help="folder of the runs' JSON")
    parser.add_argument("--figure", default=None, help="figure path (default OUT/ddp.png)")
    parser.add_argument("--reuse", action="store_true",
                        help="read the runs' JSON already in OUT instead of training again")
    args = parser.parse_args(argv)

    from .results import figure, format_table, output_folder, save_figure

    folder = output_folder(args.out)
    results = {}
    for label, ranks, norm, batch in RUNS:
        path = folder / f"{norm}-n{ranks}-b{batch}.json"
        command = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "tinygrad_norm.cli",
                   "train-ddp", "--norm", norm, "--batch-size", str(batch), "--epochs",
                   str(args.epochs), "--lr", str(args.lr), "--seed", str(args.seed), "--out",
                   str(path)]
        print(f"== {label}: mpiexec -n {ranks} tinygrad-norm train-ddp --norm {norm} "
              f"--batch-size {batch}", flush=True)
        if not (args.reuse and path.exists()):
            subprocess.run(command, check=True)
        results[label] = json.loads(path.read_text())

    rows = [[label, f"{100 * (1 - r['test_accuracy'][-1]):.2f} %",
             f"{100 * (1 - max(r['test_accuracy'])):.2f} %", f"{r['test_loss'][-1]:.4f}",
             f"{r['seconds']:.0f} s"] for label, r in results.items()]
    print(format_table(["run", "test error (last epoch)", "best epoch", "test loss",
                        "training time"], rows))
    fig, axes = figure(1, 2, width=4.6, height=3.4)
    for label, r in results.items():
        epochs = range(1, len(r["test_accuracy"]) + 1)
        axes[0, 0].plot(epochs, [100 * (1 - a) for a in r["test_accuracy"]], marker="o",
                        label=label)
        axes[0, 1].plot(epochs, r["train_loss"], marker="o", label=label)
    axes[0, 0].set(xlabel="epoch", ylabel="test error (%)", ylim=(0, None),
                   title="digits CNN, 16 samples per step")
    axes[0, 1].set(xlabel="epoch", ylabel="training loss", yscale="log")
    axes[0, 0].legend(fontsize=7)
    path = save_figure(fig, Path(args.figure) if args.figure else folder / "ddp.png")
    print(f"wrote {path.resolve()} and the runs' JSON in {folder.resolve()}")
    return 0
