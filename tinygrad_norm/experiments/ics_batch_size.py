"""ICS part (c), after Wu & He (2018, "Group Normalization"), Fig. 1, and Ioffe (2017, "Batch
Renormalization"): the digits CNN with BatchNorm, GroupNorm and Batch Renormalization trained
at batch sizes 1 to 32, several seeds each.

The task is made harder than the clean digits so that the 450 test images resolve the
differences: a training subset (`train_images`), and Gaussian pixel noise of std `noise` drawn
afresh for every training batch (augmentation) and once, fixed, for the test set. Same number
of epochs at every batch size, learning rate scaled linearly (base_lr * batch / 32) and divided
by 10 for the last third of the epochs, as in Wu & He's setup.

Three measurements:
- the noise of BatchNorm's batch statistics: per BN layer of a trained model, the std across
  random batches of the batch mean around the population mean (in units of the population
  std) and of the batch variance around the population variance (relative), per batch size;
- the train/eval gap: test error with each batch's own statistics (training mode, batches of
  the training batch size) against test error with the running statistics (eval mode);
- test error (eval mode) against batch size, mean and std over the seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import nn, optim
from ..autograd import no_grad
from ..data import load_digits
from ..random import manual_seed
from ..tensor import Tensor
from .models import make_cnn
from .results import figure, format_table, save_figure

NORMS = {"batch": "BatchNorm", "group": "GroupNorm", "renorm": "BatchRenorm"}
RUNNING_STATS_NORMS = ("batch", "renorm")


def noisy_digits(train_images: int, noise: float) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test + fixed noise, y_test)."""
    x_train, y_train, x_test, y_test = load_digits(seed=0, images=True)
    noisy_test = x_test + noise * np.random.default_rng(12345).standard_normal(x_test.shape)
    return (x_train[:train_images], y_train[:train_images], noisy_test.astype(np.float32),
            y_test)


def test_error(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int | None = None
               ) -> float:
    """Eval-mode error, or with batch_size the training-mode error on batches of that size
    (each normalized by its own statistics); the model's state is left as it was."""
    saved = model.state_dict()
    model.train(batch_size is not None)
    step = len(x) if batch_size is None else batch_size
    with no_grad():
        predicted = np.concatenate([model(Tensor(x[i:i + step])).numpy().argmax(1)
                                    for i in range(0, len(x), step)])
    model.load_state_dict(saved)
    model.train()
    return float((predicted != y).mean())


def train_cnn(norm: str, data: tuple, batch_size: int, epochs: int, base_lr: float,
              noise: float, channels: int, seed: int) -> tuple[nn.Module, dict]:
    """Train one CNN; returns it and its eval-mode and training-mode test errors."""
    x_train, y_train, x_test, y_test = data
    steps_per_epoch = -(-len(x_train) // batch_size)
    manual_seed(seed)
    model = make_cnn(norm, channels, renorm_steps=epochs * steps_per_epoch)
    optimizer = optim.SGD(model.parameters(), lr=base_lr * batch_size / 32, momentum=0.9)
    rng = np.random.default_rng(seed)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        if epoch == epochs - epochs // 3:
            for group in optimizer.param_groups:
                group["lr"] /= 10
        order = rng.permutation(len(x_train))
        for i in range(0, len(x_train), batch_size):
            index = order[i:i + batch_size]
            x = x_train[index] + noise * rng.standard_normal(x_train[index].shape)
            optimizer.zero_grad()
            loss_fn(model(Tensor(x.astype(np.float32))), Tensor(y_train[index])).backward()
            optimizer.step()
    errors = {"eval": test_error(model, x_test, y_test)}
    if norm in RUNNING_STATS_NORMS:
        errors["train_mode"] = test_error(model, x_test, y_test, batch_size)
    return model, errors


def statistics_noise(model: nn.Module, x: np.ndarray, batch_sizes: tuple[int, ...],
                     draws: int = 30, seed: int = 0) -> dict:
    """Per BatchNorm layer and batch size: RMS over channels of std over `draws` random
    batches of (batch mean - population mean) / population std and of batch var / population
    var - 1, the population being all of `x` (the layer inputs of the trained model)."""
    norms = [m for m in model if isinstance(m, nn.BatchNorm2d)]
    inputs: dict[int, np.ndarray] = {}
    handles = [m.register_forward_hook(
        lambda module, args, output, k=k: inputs.__setitem__(k, args[0].data.astype(np.float64)))
        for k, m in enumerate(norms)]
    model.eval()
    with no_grad():
        model(Tensor(x))
    model.train()
    for handle in handles:
        handle.remove()
    rng = np.random.default_rng(seed)
    result = {"mean": [], "var": []}
    for k in range(len(norms)):
        values = inputs[k]  # (N, C, H, W)
        mean, var = values.mean(axis=(0, 2, 3)), values.var(axis=(0, 2, 3))
        by_mean, by_var = [], []
        for b in batch_sizes:
            batches = [values[rng.choice(len(values), b, replace=False)] for _ in range(draws)]
            means = np.array([s.mean(axis=(0, 2, 3)) for s in batches])
            vars_ = np.array([s.var(axis=(0, 2, 3)) for s in batches])
            alive = var > 0
            by_mean.append(float(np.sqrt(np.mean(
                ((means[:, alive] - mean[alive]) / np.sqrt(var[alive])).std(axis=0) ** 2))))
            by_var.append(float(np.sqrt(np.mean((vars_[:, alive] / var[alive]).std(axis=0)
                                                 ** 2))))
        result["mean"].append(by_mean)
        result["var"].append(by_var)
    return result


def run(out: Path, batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32), epochs: int = 3,
        seeds: int = 3, train_images: int = 400, noise: float = 0.5, channels: int = 8,
        base_lr: float = 0.1, seed: int = 0, progress: bool = True) -> dict:
    print(f"\n(c) Wu & He / Ioffe: CNN ({channels} channels) on {train_images} noisy digits "
          f"(pixel noise std {noise}), {epochs} epochs at each batch size, lr = {base_lr} x "
          f"batch / 32, / 10 for the last third; seeds {seed}..{seed + seeds - 1}")
    data = noisy_digits(train_images, noise)
    errors = {norm: {"eval": [], "train_mode": []} for norm in NORMS}
    noise_model = None
    with tqdm(total=len(NORMS) * len(batch_sizes) * seeds, disable=not progress, leave=False,
              desc="CNN runs") as bar:
        for norm in NORMS:
            for b in batch_sizes:
                runs = []
                for s in range(seeds):
                    runs.append(train_cnn(norm, data, b, epochs, base_lr, noise, channels,
                                          seed + s))
                    bar.update()
                for kind in errors[norm]:
                    errors[norm][kind].append([r[1][kind] for r in runs if kind in r[1]])
                if norm == "batch" and b == max(batch_sizes):
                    noise_model = runs[0][0]
    errors = {n: {k: v for k, v in e.items() if any(v)} for n, e in errors.items()}
    stats_noise = statistics_noise(noise_model, data[0] + noise * np.random.default_rng(
        seed).standard_normal(data[0].shape).astype(np.float32), batch_sizes)

    def mean_std(values: list) -> str:
        return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"

    print("test error (%), mean ± std over seeds:")
    print(format_table(["batch size", *NORMS.values()],
                       [[b, *(mean_std(errors[n]["eval"][i]) for n in NORMS)]
                        for i, b in enumerate(batch_sizes)]))
    print("train/eval gap: test error (%) with batch statistics (train mode) - with running "
          "statistics (eval mode):")
    print(format_table(["batch size", *(NORMS[n] for n in RUNNING_STATS_NORMS)], [
        [b, *(f"{100 * np.mean(np.subtract(errors[n]['train_mode'][i], errors[n]['eval'][i])):+.1f}"
              for n in RUNNING_STATS_NORMS)] for i, b in enumerate(batch_sizes)]))
    print(f"BatchNorm's batch statistics around the population ones (trained at batch "
          f"{max(batch_sizes)}): std of (batch mean - mean)/std | std of batch var/var")
    print(format_table(["batch size", *(f"BN {k + 1}" for k in range(len(stats_noise["mean"])))],
                       [[b, *(f"{m[i]:.3f} | {v[i]:.3f}" for m, v in
                              zip(stats_noise["mean"], stats_noise["var"]))]
                        for i, b in enumerate(batch_sizes)]))

    fig, axes = figure(1, 3, width=3.8, height=3.2)
    positions = np.arange(len(batch_sizes))  # evenly spaced, like the powers of 2 they are
    for k, (norm, name) in enumerate(NORMS.items()):
        values = 100 * np.array(errors[norm]["eval"])
        axes[0, 0].errorbar(positions + 0.06 * (k - 1), values.mean(1), values.std(1),
                            fmt="o-", capsize=3, label=name)
    axes[0, 0].set(xlabel="batch size", ylabel="test error (%)", ylim=(0, None),
                   title="test error (mean ± std, seeds)")
    axes[0, 0].legend(fontsize=8)
    for k, (m, v) in enumerate(zip(stats_noise["mean"], stats_noise["var"])):
        line, = axes[0, 1].plot(positions, m, "o-", label=f"BN {k + 1} mean")
        axes[0, 1].plot(positions, v, "s--", color=line.get_color(), label=f"BN {k + 1} var")
    axes[0, 1].set(xlabel="batch size", ylabel="std around population", yscale="log",
                   title="noise of BN's batch statistics")
    axes[0, 1].legend(fontsize=6)
    for norm in RUNNING_STATS_NORMS:
        gap = 100 * np.subtract(errors[norm]["train_mode"], errors[norm]["eval"])
        axes[0, 2].errorbar(positions, gap.mean(1), gap.std(1), fmt="o-", capsize=3,
                            label=NORMS[norm])
    axes[0, 2].axhline(0, color="gray", lw=0.8)
    axes[0, 2].set(xlabel="batch size", ylabel="train-mode - eval-mode error (%)",
                   title="train/eval gap")
    axes[0, 2].legend(fontsize=8)
    for ax in axes[0]:
        ax.set_xticks(positions, [str(b) for b in batch_sizes])
    save_figure(fig, out / "batch_size.png")
    return {"batch_sizes": list(batch_sizes), "epochs": epochs, "seeds": seeds,
            "train_images": train_images, "noise": noise, "channels": channels,
            "base_lr": base_lr, "test_error": errors, "statistics_noise": stats_noise}
