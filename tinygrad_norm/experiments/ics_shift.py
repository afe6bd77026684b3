"""ICS part (d): internal covariate shift itself, measured per layer while the digits MLP
(3 hidden layers of 100 ReLU units) trains, with no normalization, BatchNorm and LayerNorm.

Every `measure_every` steps, on a fixed batch of training images, `tinygrad_norm.ics.
covariate_shift` lets the layers before each Linear take one SGD step and reports how far that
Linear's input moved (change of each input unit's mean, in units of its std) and how much its
gradient changed, ||G' - G|| / ||G|| (Santurkar et al., 2018). The first Linear reads the data,
which never moves, so the table starts at the second.

At the same steps, `tinygrad_norm.ics.loss_landscape` measures Santurkar et al.'s Fig. 4: along
the gradient, over step sizes from 1/4 to 4 times the learning rate, the range of the loss
("loss landscape"), the largest change of the gradient ("gradient predictiveness") and that
change per unit of step ("effective beta-smoothness").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import nn
from ..ics import covariate_shift, loss_landscape
from ..tensor import Tensor
from .classify import build_trainer
from .models import make_mlp
from .results import figure, format_table, save_figure

NORMS = ("none", "batch", "layer")
MEASURES = ("input_shift", "grad_change")
SMOOTHNESS = ("loss_range", "gradient_change", "beta")
STEP_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def train_and_measure(norm: str, epochs: int, measure_every: int, lr: float, seed: int,
                      progress: bool) -> dict:
    config = {"name": f"mlp {norm} (ICS)", "norm": norm, "batch_size": 64, "lr": lr,
              "seed": seed}
    trainer = build_trainer(lambda: make_mlp(norm, 100, 3), config, images=False)
    x, y = trainer.loader.dataset[np.arange(256)]
    batch = Tensor(np.ascontiguousarray(x)), Tensor(np.ascontiguousarray(y))
    loss_fn = nn.CrossEntropyLoss()
    trace: dict = {"step": [], **{m: [] for m in MEASURES + SMOOTHNESS}}

    def measure(step: int) -> None:
        if step % measure_every:
            return
        # skip the first Linear: its input is the data, which no step moves
        shifts = covariate_shift(trainer.model, loss_fn, *batch, lr)[1:]
        trace["step"].append(step)
        for m in MEASURES:
            trace[m].append([s[m] for s in shifts])
        landscape = loss_landscape(trainer.model, loss_fn, *batch,
                                   [lr * k for k in STEP_MULTIPLIERS])
        for m in SMOOTHNESS:
            trace[m].append(landscape[m])

    measure(0)
    history = trainer.fit(epochs, progress=progress, log=lambda line: None, on_step=measure)
    trace["test_accuracy"] = history["test_accuracy"][-1]
    return trace


def run(out: Path, epochs: int = 4, measure_every: int = 5, lr: float = 0.05, seed: int = 0,
        progress: bool = True) -> dict:
    print(f"\n(d) ICS per layer while training the 3 x 100 ReLU MLP, {epochs} epochs, measured "
          f"every {measure_every} steps on 256 training images (Santurkar et al. 2018)")
    traces = {norm: train_and_measure(norm, epochs, measure_every, lr, seed, progress)
              for norm in NORMS}
    layers = [f"Linear {k}" for k in range(2, 2 + len(traces["none"]["input_shift"][0]))]
    means = {norm: {m: np.mean(t[m], axis=0).tolist() for m in MEASURES}
             for norm, t in traces.items()}
    rows = [[norm, layer, means[norm]["input_shift"][i], means[norm]["grad_change"][i]]
            for norm in NORMS for i, layer in enumerate(layers)]
    print(format_table(["norm", "layer", "input shift (std units)", "gradient change"], rows))
    print(format_table(["norm", "final test accuracy"],
                       [[norm, t["test_accuracy"]] for norm, t in traces.items()]))
    # means over the whole run and over its second half: early on, before an unnormalized
    # network leaves its initial plateau, every gradient is small
    smoothness = {norm: {m: float(np.mean(t[m])) for m in SMOOTHNESS}
                  for norm, t in traces.items()}
    late = {norm: {m: float(np.mean(t[m][len(t[m]) // 2:])) for m in SMOOTHNESS}
            for norm, t in traces.items()}
    print(f"Santurkar et al. Fig. 4, along the gradient with steps {STEP_MULTIPLIERS} x lr "
          f"(means over training | over its second half):")
    print(format_table(["norm", "loss range", "max gradient change", "effective beta"],
                       [[norm, *(f"{s[m]:.3g} | {late[norm][m]:.3g}" for m in SMOOTHNESS)]
                        for norm, s in smoothness.items()]))

    fig, axes = figure(2, 3, width=3.6, height=3.2)
    for norm, trace in traces.items():
        axes[0, 0].plot(trace["step"], np.array(trace["input_shift"])[:, -1], label=norm)
    axes[0, 0].set(xlabel="training step", ylabel="input shift (std units)", yscale="log",
                   title=f"input of {layers[-1]}")
    axes[0, 0].legend(fontsize=8)
    width = 0.8 / len(NORMS)
    for ax, m, label in ((axes[0, 1], "input_shift", "mean input shift"),
                         (axes[0, 2], "grad_change", "mean ||G'-G|| / ||G||")):
        for k, norm in enumerate(NORMS):
            ax.bar(np.arange(len(layers)) + k * width, means[norm][m], width, label=norm)
        ax.set_xticks(np.arange(len(layers)) + width, layers)
        ax.set(ylabel=label, yscale="log", title=label)
    titles = {"loss_range": "loss landscape: range of L", "gradient_change":
              "gradient predictiveness: max ||g'-g||", "beta": "effective beta-smoothness"}
    for ax, m in zip(axes[1], SMOOTHNESS):
        for norm, trace in traces.items():
            ax.plot(trace["step"], trace[m], label=norm)
        ax.set(xlabel="training step", yscale="log", title=titles[m])
    axes[1, 0].legend(fontsize=8)
    save_figure(fig, out / "shift.png")
    return {"epochs": epochs, "measure_every": measure_every, "lr": lr, "layers": layers,
            "step_multipliers": list(STEP_MULTIPLIERS), "mean": means,
            "smoothness": smoothness, "smoothness_second_half": late, "traces": traces}
