"""A small, complete training loop on the digits data: the CLI's `train` command.

Builds an MLP (Linear -> [norm] -> ReLU, twice, then Linear), trains it with SGD + momentum and
reports loss and test accuracy per epoch.
"""

from __future__ import annotations

import numpy as np

from . import nn, optim
from .autograd import no_grad
from .data import DataLoader, TensorDataset, load_digits
from .random import manual_seed
from .tensor import Tensor

NORMS = {
    "none": lambda width: nn.Identity(),
    "batch": lambda width: nn.BatchNorm1d(width),
    "layer": lambda width: nn.LayerNorm(width),
    "rms": lambda width: nn.RMSNorm(width),
}


def make_mlp(norm: str = "batch", width: int = 64, depth: int = 2, in_features: int = 64,
             classes: int = 10) -> nn.Sequential:
    layers, features = [], in_features
    for _ in range(depth):
        layers += [nn.Linear(features, width), NORMS[norm](width), nn.ReLU()]
        features = width
    return nn.Sequential(*layers, nn.Linear(features, classes))


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with no_grad():
        predicted = model(Tensor(x)).numpy().argmax(axis=1)
    model.train()
    return float((predicted == y).mean())


def train_mlp(norm: str = "batch", epochs: int = 5, batch_size: int = 64, lr: float = 0.1,
              seed: int = 0, log=print) -> dict:
    """Train on digits; returns {"loss": [per epoch], "test_accuracy": [per epoch]}."""
    manual_seed(seed)
    x_train, y_train, x_test, y_test = load_digits(seed=seed)
    model = make_mlp(norm)
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size, shuffle=True, seed=seed)
    loss_fn = nn.CrossEntropyLoss()
    history = {"loss": [], "test_accuracy": []}
    for epoch in range(1, epochs + 1):
        losses = []
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        history["loss"].append(float(np.mean(losses)))
        history["test_accuracy"].append(accuracy(model, x_test, y_test))
        log(f"epoch {epoch:3d}  loss {history['loss'][-1]:.4f}  "
            f"test accuracy {history['test_accuracy'][-1]:.3f}")
    return history
