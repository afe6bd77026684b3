"""ICS part (a), the scale argument: with N(0, 1) weights a Linear layer multiplies the std of
its input by sqrt(n) — Var(sum_j W_ij x_j) = n Var(W) Var(x) = n Var(x) — so after k layers
the std is sqrt(n)^k and float32 overflows (about 3.4e38) near k = 38 for n = 100. A BatchNorm
or LayerNorm after each layer divides the scale back out, and the std stays at 1.

The second half trains the digits MLP with N(0, 1) weights with each normalization: without
one the logits are enormous and it does not learn; with one it does.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..ics import ActivationRecorder
from ..random import manual_seed
from ..tensor import Tensor
from .classify import build_trainer
from .models import MLP_NORMS, initialize, make_mlp
from .results import figure, format_table, save_figure

STACK_NORMS = ("none", "batch", "layer")
FLOAT32_MAX = float(np.finfo(np.float32).max)


def make_stack(norm: str, width: int, depth: int) -> nn.Sequential:
    """`depth` blocks of Linear(width, width, no bias) with N(0, 1) weights, each followed by a
    normalization (or none)."""
    norms = {"none": nn.Identity, "batch": lambda: nn.BatchNorm1d(width),
             "layer": lambda: nn.LayerNorm(width)}
    blocks = []
    for _ in range(depth):
        linear = nn.Linear(width, width, bias=False)
        nn.init.normal_(linear.weight)
        blocks.append(nn.Sequential(linear, norms[norm]()))
    return nn.Sequential(*blocks)


def measure_stack(norm: str, width: int, depth: int, batch: int, seed: int) -> list[float]:
    """The std of every block's output for a batch of N(0, 1) inputs (inf/nan once it
    overflows)."""
    manual_seed(seed)
    stack = make_stack(norm, width, depth)
    x = Tensor(np.random.default_rng(seed).standard_normal((batch, width)).astype(np.float32))
    blocks = {str(k): block for k, block in enumerate(stack, start=1)}
    with ActivationRecorder(blocks) as recorder, no_grad(), np.errstate(all="ignore"):
        stack(x)
    return [recorder.records[str(k)][0]["std"] for k in range(1, depth + 1)]


def train_normal_init(norm: str, epochs: int, seed: int, progress: bool) -> dict:
    config = {"name": f"mlp N(0,1) {norm}", "norm": norm, "init": "normal", "epochs": epochs,
              "batch_size": 64, "lr": 0.05, "seed": seed}
    trainer = build_trainer(lambda: initialize(make_mlp(norm, 100, 3), "normal"), config,
                            images=False)
    with np.errstate(all="ignore"):
        return trainer.fit(epochs, progress=progress, log=lambda line: None)


def run(out: Path, width: int = 100, depth: int = 50, batch: int = 256, epochs: int = 5,
        seed: int = 0, progress: bool = True) -> dict:
    print(f"\n(a) std of each layer's output: {depth} Linear({width}, {width}) layers with "
          f"N(0,1) weights, input N(0,1), batch {batch}")
    stds = {norm: measure_stack(norm, width, depth, batch, seed) for norm in STACK_NORMS}
    predicted = [math.sqrt(width) ** k for k in range(1, depth + 1)]
    overflow = next((k for k, s in enumerate(stds["none"], start=1) if not np.isfinite(s)), None)
    shown = sorted({1, 2, 3, *range(5, depth + 1, 5), *([overflow] if overflow else [])})
    print(format_table(["layer", "sqrt(n)^k", *STACK_NORMS],
                       [[k, predicted[k - 1], *(stds[n][k - 1] for n in STACK_NORMS)]
                        for k in shown]))
    print(f"without normalization the activations overflow float32 at layer {overflow}"
          if overflow else "no overflow within this depth")

    print(f"\n    training the digits MLP (3 x 100, ReLU) with N(0,1) weights, {epochs} epochs")
    histories = {norm: train_normal_init(norm, epochs, seed, progress) for norm in MLP_NORMS}
    print(format_table(["norm", "first loss", "final loss", "test accuracy"],
                       [[n, h["train_loss"][0], h["train_loss"][-1], h["test_accuracy"][-1]]
                        for n, h in histories.items()]))

    fig, axes = figure(1, 2, width=4.6)
    layers = np.arange(1, depth + 1)
    axes[0, 0].plot(layers, np.minimum(predicted, 1e300), "k--", label="sqrt(n)^k")
    for norm in STACK_NORMS:
        axes[0, 0].plot(layers, np.where(np.isfinite(stds[norm]), stds[norm], np.nan), ".-",
                        label=norm)
    axes[0, 0].axhline(FLOAT32_MAX, color="red", lw=0.8, label="float32 max")
    axes[0, 0].set(yscale="log", xlabel="layer k", ylabel="std of output",
                   title=f"N(0,1) weights, n = {width}", ylim=(1e-1, 1e45))
    axes[0, 0].legend(fontsize=8)
    for norm, history in histories.items():
        axes[0, 1].plot(range(1, epochs + 1), history["test_accuracy"], "o-", label=norm)
    axes[0, 1].set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1),
                   title="digits MLP, N(0,1) weights", xticks=range(1, epochs + 1))
    axes[0, 1].legend(fontsize=8)
    save_figure(fig, out / "scale.png")
    return {"width": width, "depth": depth, "batch": batch, "predicted_std": predicted,
            "measured_std": stds, "overflow_layer": overflow, "normal_init_training": histories}
