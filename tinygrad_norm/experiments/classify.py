"""One training run on the digits data, shared by the MLP and CNN examples: build, train (or
resume), then write results.json, training.png and checkpoint.npz into the output folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .. import nn, optim
from ..data import DataLoader, TensorDataset, load_digits
from ..random import manual_seed
from .blas import one_blas_thread
from .results import figure, output_folder, save_figure, write_json
from .trainer import Trainer


def build_trainer(make_model: Callable[[], nn.Module], config: dict, images: bool) -> Trainer:
    """Seed, build the model and the SGD + momentum optimizer, and load the data, always in the
    same order, so that a run and its resumption start from identical objects."""
    manual_seed(config["seed"])
    model = make_model()
    x_train, y_train, x_test, y_test = load_digits(seed=config["seed"], images=images)
    loader = DataLoader(TensorDataset(x_train, y_train), config["batch_size"], shuffle=True,
                        seed=config["seed"])
    optimizer = optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)
    return Trainer(model, optimizer, loader, (x_test, y_test), config)


def plot_history(history: dict, title: str, path: Path) -> Path:
    fig, axes = figure(1, 2, width=4.2, height=3.2)
    epochs = range(1, len(history["train_loss"]) + 1)
    axes[0, 0].plot(epochs, history["train_loss"], label="train")
    axes[0, 0].plot(epochs, history["test_loss"], label="test")
    axes[0, 0].set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title=title)
    axes[0, 0].legend()
    axes[0, 1].plot(epochs, history["test_accuracy"])
    # zoom in on the accuracies reached, which differ in the last percent
    bottom = min(history["test_accuracy"], default=0.0) - 0.02
    axes[0, 1].set(xlabel="epoch", ylabel="test accuracy", ylim=(max(0.0, bottom), 1.0))
    return save_figure(fig, path)


def run_classifier(make_model: Callable[[], nn.Module], config: dict, out: str | Path,
                   images: bool, resume: bool = False, progress: bool = True) -> dict:
    """Train (resuming from out/checkpoint.npz if asked) and write the run's outputs."""
    folder = output_folder(out)
    checkpoint = folder / "checkpoint.npz"
    trainer = build_trainer(make_model, config, images)
    if resume:
        trainer.resume(checkpoint)
        print(f"resumed from {checkpoint} after epoch {trainer.epoch}")
    print(trainer.model)
    start = time.perf_counter()
    with one_blas_thread():
        history = trainer.fit(config["epochs"], checkpoint, progress)
    seconds = time.perf_counter() - start
    results = {"config": config, "epochs_done": trainer.epoch, "seconds": seconds, **history}
    write_json(folder / "results.json", results)
    plot_history(history, f"{config['name']}, norm={config['norm']}", folder / "training.png")
    if history["test_accuracy"]:
        print(f"final test accuracy {history['test_accuracy'][-1]:.4f} "
              f"({trainer.epoch} epochs, this run {seconds:.1f} s)")
    print(f"wrote results.json, training.png and checkpoint.npz to {folder.resolve()}")
    return results
