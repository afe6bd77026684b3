"""Tools to watch internal covariate shift (ICS): what a layer sees, and how fast that moves.

- `ActivationRecorder` puts forward hooks on chosen modules and records statistics (mean, std,
  largest magnitude, percentiles; of all values or of one unit) of their input or output on
  every call, so a training loop needs no changes to be observed.
- `covariate_shift` measures ICS itself at one training step, after Santurkar et al. (2018,
  "How does batch normalization help optimization?"): for each layer, how much its gradient and
  its input distribution change when only the layers before it take their gradient step. A
  layer whose input keeps its distribution sees the same problem after its predecessors move.
- `loss_landscape` measures the smoothness Santurkar et al. credit instead (their Fig. 4): along
  the gradient, how much the loss and the gradient change over a range of step sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import nn
from .autograd import no_grad
from .tensor import Tensor


def activation_stats(values: np.ndarray, unit: int | None = None,
                     percentiles: Sequence[float] = ()) -> dict:
    """mean, std, max_abs and the asked percentiles ("p15", ...) of `values` (N, features...),
    over everything or over the column `unit` only. float64, so that the statistics of float32
    activations near overflow stay finite."""
    values = np.asarray(values, dtype=np.float64)
    if unit is not None:
        values = values.reshape(len(values), -1)[:, unit]
    stats = {"mean": float(values.mean()), "std": float(values.std()),
             "max_abs": float(np.abs(values).max())}
    for q, value in zip(percentiles, np.percentile(values, list(percentiles))):
        stats[f"p{q:g}"] = float(value)
    return stats


class ActivationRecorder:
    """Records `activation_stats` of each named module's input (or output) at every forward call.

        with ActivationRecorder({"fc3": model[6]}, where="input", unit=0, percentiles=(15, 50, 85))
            as recorder:
            model(x)
        recorder.records["fc3"][-1]["p50"]
    """

    def __init__(self, modules: dict[str, nn.Module], where: str = "output",
                 unit: int | None = None, percentiles: Sequence[float] = ()) -> None:
        if where not in ("input", "output"):
            raise ValueError(
                f"ActivationRecorder: where must be 'input' or 'output', got {where!r}")
        self.where = where
        self.unit = unit
        self.percentiles = tuple(percentiles)
        self.records: dict[str, list[dict]] = {name: [] for name in modules}
        self.handles = [module.register_forward_hook(self._hook(name))
                        for name, module in modules.items()]

    def _hook(self, name: str) -> Callable:
        def record(module, args, output):
            tensor = args[0] if self.where == "input" else output
            self.records[name].append(
                activation_stats(tensor.detach().data, self.unit, self.percentiles))
        return record

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def __enter__(self) -> ActivationRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _layer_gradients(model: nn.Sequential, layers: list[int], loss_fn: Callable, x: Tensor,
                     y: Tensor) -> tuple[list[np.ndarray], dict[int, np.ndarray], float]:
    """Gradients of every parameter, the input each measured layer saw, and the loss, for one
    batch."""
    inputs: dict[int, np.ndarray] = {}
    handles = [model[i].register_forward_hook(
        lambda module, args, output, i=i: inputs.__setitem__(i, args[0].detach().data.copy()))
        for i in layers]
    model.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    for handle in handles:
        handle.remove()
    grads = [np.zeros_like(p.data) if p.grad is None else p.grad.data.copy()
             for p in model.parameters()]
    return grads, inputs, loss.item()


def _input_shift(before: np.ndarray, after: np.ndarray) -> float:
    """How far a layer's input distribution moved, relative to its spread: per input unit the
    2-Wasserstein distance between Gaussians with its batch mean and std before and after,
    sqrt(dmean^2 + dstd^2), as a root mean square over units, divided by the root mean square
    std before. Dead units (std 0) add nothing instead of dividing by zero."""
    before = before.reshape(len(before), -1).astype(np.float64)
    after = after.reshape(len(after), -1).astype(np.float64)
    moved = (after.mean(axis=0) - before.mean(axis=0)) ** 2 + (after.std(axis=0)
                                                              - before.std(axis=0)) ** 2
    spread = np.sqrt(np.mean(before.var(axis=0)))
    return float(np.sqrt(np.mean(moved)) / spread) if spread > 0 else 0.0


def covariate_shift(model: nn.Sequential, loss_fn: Callable, x: Tensor, y: Tensor,
                    lr: float, layer_types: tuple = (nn.Linear, nn.Conv2d)) -> list[dict]:
    """ICS of each Linear/Conv2d layer of `model` at its current parameters, for batch (x, y).

    For layer i: G = its weight gradient now; then every parameter of the modules before it
    takes one SGD step (p -= lr * grad) and G' = its gradient again on the same batch. Returns,
    per layer, {"layer", "grad_change": ||G' - G|| / ||G||, "grad_cosine": cos(G, G'),
    "input_shift": `_input_shift` of its input}. The model (parameters and running
    statistics) is left exactly as it was.
    """
    layers = [i for i, module in enumerate(model) if isinstance(module, layer_types)]
    saved = model.state_dict()
    params = list(model.parameters())
    owner = {id(p): i for i, module in enumerate(model) for p in module.parameters()}
    grads, inputs, _ = _layer_gradients(model, layers, loss_fn, x, y)
    results = []
    for i in layers:
        weight_index = next(k for k, p in enumerate(params) if p is model[i].weight)
        with no_grad():
            for p, g in zip(params, grads):
                if owner[id(p)] < i:
                    p.data -= lr * g
        new_grads, new_inputs, _ = _layer_gradients(model, [i], loss_fn, x, y)
        model.load_state_dict(saved)
        before, after = grads[weight_index].ravel(), new_grads[weight_index].ravel()
        norm_product = np.linalg.norm(before) * np.linalg.norm(after)
        results.append({
            "layer": i,
            "grad_change": float(np.linalg.norm(after - before) / (np.linalg.norm(before) + 1e-30)),
            "grad_cosine": float(before @ after / norm_product) if norm_product else 0.0,
            "input_shift": _input_shift(inputs[i], new_inputs[i]),
        })
    model.load_state_dict(saved)
    model.zero_grad()
    return results


def loss_landscape(model: nn.Module, loss_fn: Callable, x: Tensor, y: Tensor,
                   step_sizes: Sequence[float]) -> dict:
    """Santurkar et al. (2018), Fig. 4, at the model's current parameters w and batch (x, y):
    with g = grad L(w), for every step size eta the loss L(w - eta g) and the gradient
    grad L(w - eta g). Returns {"losses": [...], "loss_range": max - min of the losses
    (eta = 0 included; their "loss landscape"), "gradient_change": max over eta of
    ||grad L(w - eta g) - g|| (their "gradient predictiveness": small is predictive),
    "beta": max over eta of that change / ||eta g|| (their "effective beta-smoothness")}.
    The model (parameters and running statistics) is left exactly as it was."""
    saved = model.state_dict()
    params = list(model.parameters())
    grads, _, loss = _layer_gradients(model, [], loss_fn, x, y)
    flat = np.concatenate([g.ravel() for g in grads]).astype(np.float64)
    losses, changes, betas = [loss], [], []
    for eta in step_sizes:
        model.load_state_dict(saved)
        with no_grad():
            for p, g in zip(params, grads):
                p.data -= eta * g
        new_grads, _, new_loss = _layer_gradients(model, [], loss_fn, x, y)
        change = np.linalg.norm(np.concatenate([g.ravel() for g in new_grads]) - flat)
        losses.append(new_loss)
        changes.append(float(change))
        betas.append(float(change / (eta * np.linalg.norm(flat) + 1e-30)))
    model.load_state_dict(saved)
    model.zero_grad()
    return {"losses": losses, "loss_range": float(max(losses) - min(losses)),
            "gradient_change": max(changes), "beta": max(betas)}
