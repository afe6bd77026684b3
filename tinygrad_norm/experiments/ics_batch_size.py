"""ICS part (c), after Wu & He (2018, "Group Normalization"), Fig. 1: the digits CNN with
BatchNorm and with GroupNorm trained at batch sizes 2 to 32, same number of epochs, learning
rate scaled linearly with the batch size (lr = base_lr * batch / 32) and divided by 10 for
the last third of the epochs, as in their setup; the step-down keeps the final error from being
the noise of a large step.

BatchNorm's statistics come from the batch: at batch 2 they are noisy during training and
disagree with the running averages used at test time, so its test error grows as the batch
shrinks. GroupNorm's statistics come from each sample alone, so batch size does not enter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .classify import build_trainer
from .models import make_cnn
from .results import figure, format_table, save_figure

NORMS = {"batch": "BatchNorm", "group": "GroupNorm"}


def train_cnn(norm: str, batch_size: int, epochs: int, base_lr: float, seed: int,
              progress: bool) -> float:
    """Final test error of the CNN trained with this norm and batch size."""
    config = {"name": f"cnn {norm} b{batch_size}", "norm": norm, "batch_size": batch_size,
              "lr": base_lr * batch_size / 32, "seed": seed}
    trainer = build_trainer(lambda: make_cnn(norm), config, images=True)
    trainer.fit(epochs - epochs // 3, progress=progress, log=lambda line: None)
    for group in trainer.optimizer.param_groups:
        group["lr"] /= 10
    history = trainer.fit(epochs, progress=progress, log=lambda line: None)
    return 1.0 - history["test_accuracy"][-1]


def run(out: Path, batch_sizes: tuple[int, ...] = (2, 4, 8, 16, 32), epochs: int = 6,
        base_lr: float = 0.1, seed: int = 0, progress: bool = True) -> dict:
    print(f"\n(c) Wu & He: CNN test error against batch size, {epochs} epochs each, "
          f"lr = {base_lr} x batch / 32, / 10 after epoch {epochs - epochs // 3}")
    errors = {norm: [train_cnn(norm, b, epochs, base_lr, seed, progress) for b in batch_sizes]
              for norm in NORMS}
    print(format_table(["batch size", *(f"{name} error" for name in NORMS.values())],
                       [[b, *(errors[n][i] for n in NORMS)] for i, b in enumerate(batch_sizes)]))

    fig, axes = figure(1, 1, width=4.6)
    ax = axes[0, 0]
    positions = np.arange(len(batch_sizes))  # evenly spaced, like the powers of 2 they are
    for norm, name in NORMS.items():
        ax.plot(positions, 100 * np.array(errors[norm]), "o-", label=name)
    ax.set(xlabel="batch size (images per worker)", ylabel="test error (%)",
           title="digits CNN: BN vs GN", ylim=(0, None))
    ax.set_xticks(positions, [str(b) for b in batch_sizes])
    ax.legend()
    save_figure(fig, out / "batch_size.png")
    return {"batch_sizes": list(batch_sizes), "epochs": epochs, "base_lr": base_lr,
            "test_error": errors}
