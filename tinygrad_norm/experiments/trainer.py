"""The training loop of the examples: epochs of SGD steps, test metrics, checkpoints, resume.

A checkpoint holds everything the next step depends on — model and optimizer state, the epoch,
the history so far, and the states of the data loader's shuffling generator and of the global
generator — so training resumed from it continues bit for bit as if it had never stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import nn
from ..autograd import no_grad
from ..checkpoint import load, save
from ..data import DataLoader
from ..optim.optimizer import Optimizer
from ..random import generator
from ..tensor import Tensor
from .arguments import UsageError
from .resume import generator_state, set_generator_state


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` in eval mode; restores its previous mode."""
    was_training = model.training
    model.eval()
    with no_grad(), np.errstate(all="ignore"):
        logits = model(Tensor(x))
        loss = nn.functional.cross_entropy(logits, Tensor(y)).item()
        predicted = logits.numpy().argmax(axis=1)
    model.train(was_training)
    return float(loss), float((predicted == y).mean())


class Trainer:
    """Trains `model` on `loader` with `optimizer`; after every epoch records the mean training
    loss and the test loss and accuracy, logs them, and (if asked) writes a checkpoint.

    `config` describes the run (norm, init, lr, ...); it is stored in the checkpoint and a
    resume with a different config is refused, since it would not continue the same run.
    """

    def __init__(self, model: nn.Module, optimizer: Optimizer, loader: DataLoader,
                 test_data: tuple[np.ndarray, np.ndarray], config: dict) -> None:
        self.model = model
        self.optimizer = optimizer
        self.loader = loader
        self.test_data = test_data
        self.config = config
        self.epoch = 0
        self.step = 0
        self.history: dict[str, list[float]] = {"train_loss": [], "test_loss": [],
                                                "test_accuracy": []}

    def fit(self, epochs: int, checkpoint: Path | None = None, progress: bool = True,
            log: Callable[[str], None] = tqdm.write,
            on_step: Callable[[int], None] | None = None) -> dict:
        """Train until `epochs` epochs are done in total (so a resumed run finishes the rest).
        `on_step(step)` runs after every optimizer step, for experiments that watch training."""
        loss_fn = nn.CrossEntropyLoss()
        remaining = max(0, epochs - self.epoch) * len(self.loader)
        with tqdm(total=remaining, disable=not progress, unit="step", leave=False,
                  desc=self.config.get("name", "training")) as bar:
            while self.epoch < epochs:
                losses = []
                for x, y in self.loader:
                    self.optimizer.zero_grad()
                    loss = loss_fn(self.model(x), y)
                    loss.backward()
                    self.optimizer.step()
                    self.step += 1
                    losses.append(loss.item())
                    bar.update()
                    bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
                    if on_step is not None:
                        on_step(self.step)
                self.epoch += 1
                self._record(float(np.mean(losses)), log)
                if checkpoint is not None:
                    self.save(checkpoint)
        return self.history

    def _record(self, train_loss: float, log: Callable[[str], None]) -> None:
        test_loss, test_accuracy = evaluate(self.model, *self.test_data)
        self.history["train_loss"].append(train_loss)
        self.history["test_loss"].append(test_loss)
        self.history["test_accuracy"].append(test_accuracy)
        log(f"epoch {self.epoch:3d}  loss {train_loss:.4f}  test loss {test_loss:.4f}  "
            f"test accuracy {test_accuracy:.4f}")

    def save(self, path: Path) -> None:
        save({
            "config": self.config,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "loader_generator": generator_state(self.loader.generator),
            "global_generator": generator_state(generator()),
        }, path)

    def resume(self, path: Path) -> None:
        """Load a checkpoint written by `save` for the same config and continue from it."""
        if not Path(path).is_file():
            raise UsageError(f"cannot resume: {path} does not exist")
        try:
            state = load(path)
        except ValueError as err:  # a foreign or damaged file: load names the path
            raise UsageError(f"cannot resume: {err}") from err
        absent = {"config", "model", "optimizer", "epoch", "step", "history",
                  "loader_generator", "global_generator"} - set(state)
        if absent:
            raise UsageError(f"cannot resume from {path}: it is not a training checkpoint "
                             f"(no {', '.join(sorted(absent))}); it holds {sorted(state)}")
        changed = {k: (state["config"].get(k), v) for k, v in self.config.items()
                   if k != "epochs" and state["config"].get(k) != v}
        if changed:
            raise UsageError(f"{path} was written by a different run; (saved, now): {changed}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]
        self.step = state["step"]
        self.history = {k: list(v) for k, v in state["history"].items()}
        set_generator_state(self.loader.generator, state["loader_generator"])
        set_generator_state(generator(), state["global_generator"])
