"""ICS part (b), after Ioffe & Szegedy (2015), Fig. 1: an MLP with 3 hidden layers of 100 sigmoid
units, trained with and without BatchNorm. Every `eval_every` steps we record the test accuracy
and, on the test set, the 15th/50th/85th percentiles of the input to one sigmoid unit of the
last hidden layer. Without BN that distribution drifts while the earlier layers learn; with BN
(mean and variance fixed per unit, up to the learned scale and shift) it stays put.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..autograd import no_grad
from ..ics import ActivationRecorder
from ..tensor import Tensor
from .classify import build_trainer
from .models import make_mlp
from .results import figure, format_table, save_figure
from .trainer import evaluate

PERCENTILES = (15, 50, 85)
UNIT = 0


def train_and_watch(norm: str, steps: int, eval_every: int, batch_size: int, lr: float,
                    seed: int, progress: bool) -> dict:
    config = {"name": f"sigmoid MLP {norm}", "norm": norm, "batch_size": batch_size, "lr": lr,
              "seed": seed}
    trainer = build_trainer(lambda: make_mlp(norm, 100, 3, activation="sigmoid"), config,
                            images=False)
    model, (x_test, y_test) = trainer.model, trainer.test_data
    last_sigmoid = model[8]  # blocks are Linear, norm, Sigmoid: the third block's Sigmoid
    trace = {"step": [], "test_accuracy": [], **{f"p{q}": [] for q in PERCENTILES}}

    def watch(step: int) -> None:
        if step % eval_every:
            return
        trace["step"].append(step)
        trace["test_accuracy"].append(evaluate(model, x_test, y_test)[1])
        model.eval()
        with ActivationRecorder({"input": last_sigmoid}, where="input", unit=UNIT,
                                percentiles=PERCENTILES) as recorder, no_grad():
            model(Tensor(x_test))
        model.train()
        for q in PERCENTILES:
            trace[f"p{q}"].append(recorder.records["input"][0][f"p{q}"])

    watch(0)
    epochs = -(-steps // len(trainer.loader))
    trainer.fit(epochs, progress=progress, log=lambda line: None, on_step=watch)
    return trace


def run(out: Path, steps: int = 3000, eval_every: int = 50, batch_size: int = 60,
        lr: float = 0.5, seed: int = 0, progress: bool = True) -> dict:
    print(f"\n(b) Ioffe & Szegedy Fig. 1: 3 x 100 sigmoid MLP, SGD lr {lr}, batch {batch_size}, "
          f"about {steps} steps; input of last-hidden-layer unit {UNIT} on the test set")
    traces = {norm: train_and_watch(norm, steps, eval_every, batch_size, lr, seed, progress)
              for norm in ("none", "batch")}
    picks = sorted({0, *np.linspace(0, len(traces["none"]["step"]) - 1, 7).astype(int)})
    rows = []
    for i in picks:
        row = [traces["none"]["step"][i]]
        for norm in ("none", "batch"):
            t = traces[norm]
            row += [t["test_accuracy"][i], f"{t['p15'][i]:+.2f} / {t['p50'][i]:+.2f} / "
                                           f"{t['p85'][i]:+.2f}"]
        rows.append(row)
    print(format_table(["step", "acc (no BN)", "p15/p50/p85 (no BN)", "acc (BN)",
                        "p15/p50/p85 (BN)"], rows))

    fig, axes = figure(1, 3, width=3.6, height=3.2)
    for norm, label in (("none", "without BN"), ("batch", "with BN")):
        axes[0, 0].plot(traces[norm]["step"], traces[norm]["test_accuracy"], label=label)
    axes[0, 0].set(xlabel="training step", ylabel="test accuracy", ylim=(0, 1),
                   title="(a) test accuracy")
    axes[0, 0].legend(fontsize=8)
    for ax, norm, title in ((axes[0, 1], "none", "(b) without BN"),
                            (axes[0, 2], "batch", "(c) with BN")):
        for q in PERCENTILES:
            ax.plot(traces[norm]["step"], traces[norm][f"p{q}"], "k", lw=1 + (q == 50))
        ax.set(xlabel="training step", ylabel=f"input of sigmoid unit {UNIT}", title=title)
    low = min(min(traces[n]["p15"]) for n in traces)
    high = max(max(traces[n]["p85"]) for n in traces)
    for ax in axes[0, 1:]:
        ax.set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low))
    save_figure(fig, out / "sigmoid.png")
    return {"steps": steps, "batch_size": batch_size, "lr": lr, "unit": UNIT,
            "percentiles": list(PERCENTILES), "traces": traces}
