"""ICS part (e), LayerNorm for variable-length sequences (Ba et al. 2016), against BatchNorm in
the recurrence with per-time-step statistics (Cooijmans et al. 2016, "Recurrent Batch
Normalization") and against no normalization.

Task: the adding problem with variable lengths within a batch. Each step reads (value, marker);
values are U(0, 1), two steps are marked (one in each half of the sequence's own length), and
the target is the sum of the two marked values (predicting its mean gives MSE 1/6). The
batch is padded to its longest sequence and the state of a finished sequence is held by a mask
(lengths + masking); the plain LSTM runs as nn.LSTM on a pack_padded_sequence batch, which
computes the same thing.

BatchNorm's statistics here are per time step t over the batch rows at t: the padded rows of
finished sequences are in them, steps beyond the longest training sequence have none (we reuse
the last step's, as Cooijmans et al. do), and one sequence alone cannot be normalized in
training mode. LayerNorm's statistics are per sample and per step, so none of this applies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import nn, optim
from ..autograd import no_grad
from ..nn.rnn import lstm_cell_update
from ..random import manual_seed
from ..tensor import Tensor, zeros
from .results import figure, format_table, save_figure

NORMS = {"none": "no norm (nn.LSTM, packed)", "batch": "BatchNorm per step",
         "layer": "LayerNorm (Ba et al.)"}


def adding_problem(rng: np.random.Generator, count: int, low: int,
                   high: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x (count, T, 2) zero-padded, lengths (count,), targets (count, 1))."""
    lengths = rng.integers(low, high + 1, count)
    x = np.zeros((count, lengths.max(), 2), np.float32)
    targets = np.zeros((count, 1), np.float32)
    for i, length in enumerate(lengths):
        x[i, :length, 0] = rng.uniform(0, 1, length)
        marks = rng.integers(0, length // 2), rng.integers(length // 2, length)
        x[i, marks, 1] = 1
        targets[i, 0] = x[i, marks, 0].sum()
    return x, lengths, targets


class BatchNormLSTMCell(nn.LSTMCell):
    """Cooijmans et al. (2016): gates = BN_t(W_ih x) + BN_t(W_hh h), h' = o tanh(BN_t(c')),
    one BatchNorm1d per time step t < max_steps (later steps reuse the last), gains of the
    two gate norms initialized to 0.1 as they recommend; the norms' shifts are the bias."""

    def __init__(self, input_size: int, hidden_size: int, max_steps: int) -> None:
        super().__init__(input_size, hidden_size, bias=False)
        rows = 4 * hidden_size
        self.bn_ih = nn.ModuleList([nn.BatchNorm1d(rows) for _ in range(max_steps)])
        self.bn_hh = nn.ModuleList([nn.BatchNorm1d(rows) for _ in range(max_steps)])
        self.bn_c = nn.ModuleList([nn.BatchNorm1d(hidden_size) for _ in range(max_steps)])
        for norm in [*self.bn_ih, *self.bn_hh]:
            norm.weight.data[...] = 0.1
        self.time = 0

    def _norm(self, norms: nn.ModuleList) -> nn.Module:
        return norms[min(self.time, len(norms) - 1)]

    def _gates(self, input: Tensor, h: Tensor) -> Tensor:
        return (self._norm(self.bn_ih)(nn.functional.linear(input, self.weight_ih))
                + self._norm(self.bn_hh)(nn.functional.linear(h, self.weight_hh)))

    def _update(self, gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        return lstm_cell_update(gates, c, self._norm(self.bn_c))


class Regressor(nn.Module):
    """A recurrent layer read at each sequence's last step, then Linear(hidden, 1)."""

    def __init__(self, norm: str, hidden: int, max_steps: int) -> None:
        super().__init__()
        self.norm = norm
        if norm == "none":
            self.rnn = nn.LSTM(2, hidden, batch_first=True)
        elif norm == "batch":
            self.rnn = BatchNormLSTMCell(2, hidden, max_steps)
        else:
            self.rnn = nn.LayerNormLSTMCell(2, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: Tensor, lengths: np.ndarray) -> Tensor:
        if self.norm == "none":
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                       enforce_sorted=False)
            return self.head(self.rnn(packed)[1][0][0])
        batch, steps = x.shape[:2]
        h = c = zeros(batch, self.rnn.hidden_size)
        for t in range(steps):
            self.rnn.time = t
            keep = Tensor((lengths > t).astype(np.float32)[:, None])  # 0 once a sequence ended
            h_new, c_new = self.rnn(x[:, t], (h, c))
            h, c = h_new * keep + h * (1 - keep), c_new * keep + c * (1 - keep)
        return self.head(h)


def mse(model: Regressor, data: tuple, train_mode: bool = False) -> float:
    x, lengths, targets = data
    model.train(train_mode)
    with no_grad():
        error = float(((model(Tensor(x), lengths).numpy() - targets) ** 2).mean())
    model.train()
    return error


def batch_dependence(model: Regressor, rng: np.random.Generator, probes: int = 8) -> float:
    """Training-mode output of `probes` sequences of length 12, batched once with 24 of length
    20 and once with 24 of length 3: mean |difference|. Only the batch-mates (and in the second
    batch, the padding that follows them) differ; a per-sample computation gives 0."""
    x, lengths, _ = adding_problem(rng, probes, 12, 12)
    outputs = []
    for other_length in (20, 3):
        others, other_lengths, _ = adding_problem(rng, 24, other_length, other_length)
        batch = np.zeros((probes + 24, 20, 2), np.float32)
        batch[:probes, :12], batch[probes:, :other_length] = x, others
        model.train()
        with no_grad():
            out = model(Tensor(batch), np.concatenate([lengths, other_lengths])).numpy()
        outputs.append(out[:probes, 0])
    return float(np.abs(outputs[0] - outputs[1]).mean())


def batch_of_one(model: Regressor, data: tuple) -> dict:
    """Each of 4 test sequences alone in training mode, against the same sequence in its batch:
    max |difference|, or the error that a batch of one raises."""
    x, lengths, _ = data
    model.train()
    with no_grad():
        together = model(Tensor(x[:4]), lengths[:4]).numpy()
        try:
            alone = np.concatenate([model(Tensor(x[i:i + 1, :lengths[i]]), lengths[i:i + 1])
                                    .numpy() for i in range(4)])
        except ValueError as err:
            return {"works": False, "error": str(err)}
    return {"works": True, "max_difference": float(np.abs(alone - together).max())}


def train(norm: str, steps: int, hidden: int, lengths: tuple[int, int], eval_every: int,
          test: dict, seed: int, progress: bool) -> dict:
    manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Regressor(norm, hidden, lengths[1])
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    trace = {"step": [], "test_mse": [], "train_loss": []}
    for step in tqdm(range(1, steps + 1), disable=not progress, leave=False,
                     desc=f"LSTM {norm}"):
        x, batch_lengths, targets = adding_problem(rng, 32, *lengths)
        optimizer.zero_grad()
        loss = ((model(Tensor(x), batch_lengths) - Tensor(targets)) ** 2).mean()
        loss.backward()
        optimizer.step()
        trace["train_loss"].append(loss.item())
        if step % eval_every == 0 or step == steps:
            trace["step"].append(step)
            trace["test_mse"].append(mse(model, test["in_range"]))
    result = {"trace": trace, **{f"mse_{name}": mse(model, data) for name, data in test.items()},
              "batch_dependence": batch_dependence(model, np.random.default_rng(seed + 1)),
              "batch_of_one": batch_of_one(model, test["in_range"])}
    if norm == "batch":  # Cooijmans' train-mode statistics at test time: the batch's own
        result["mse_in_range_train_mode"] = mse(model, test["in_range"], train_mode=True)
    return result


def run(out: Path, steps: int = 200, hidden: int = 24, lengths: tuple[int, int] = (4, 16),
        long_lengths: tuple[int, int] = (24, 32), eval_every: int = 25, seed: int = 0,
        progress: bool = True) -> dict:
    print(f"\n(e) Ba et al.: LSTM on the adding problem, lengths {lengths[0]}-{lengths[1]} "
          f"in each batch of 32, {steps} Adam steps, hidden {hidden}; tested also on lengths "
          f"{long_lengths[0]}-{long_lengths[1]} (longer than any in training)")
    rng = np.random.default_rng(1000 + seed)
    test = {"in_range": adding_problem(rng, 256, *lengths),
            "longer": adding_problem(rng, 256, *long_lengths)}
    results = {norm: train(norm, steps, hidden, lengths, eval_every, test, seed, progress)
               for norm in NORMS}

    def one(r: dict) -> str:
        b = r["batch_of_one"]
        return f"max diff {b['max_difference']:.2g}" if b["works"] else "ValueError"

    print(format_table(["", *NORMS.values()], [
        ["test MSE, training lengths", *(r["mse_in_range"] for r in results.values())],
        ["test MSE, longer sequences", *(r["mse_longer"] for r in results.values())],
        ["output change with other batch-mates", *(r["batch_dependence"]
                                                   for r in results.values())],
        ["batch of one (training mode)", *(one(r) for r in results.values())],
    ]))
    print(f"    (predicting the mean gives MSE {1 / 6:.4g}; BatchNorm in training mode on "
          f"the test batch: MSE {results['batch']['mse_in_range_train_mode']:.4g})")
    if not results["batch"]["batch_of_one"]["works"]:
        print(f"    BatchNorm on one sequence: {results['batch']['batch_of_one']['error']}")

    fig, axes = figure(1, 3, width=3.8, height=3.2)
    for norm, label in NORMS.items():
        trace = results[norm]["trace"]
        axes[0, 0].plot(trace["step"], trace["test_mse"], "o-", ms=3, label=label)
    axes[0, 0].axhline(1 / 6, color="gray", ls=":", label="predict the mean")
    axes[0, 0].set(xlabel="Adam step", ylabel="test MSE", yscale="log",
                   title="(1) convergence")
    axes[0, 0].legend(fontsize=7)
    positions = np.arange(len(NORMS))
    for k, (key, label) in enumerate((("mse_in_range", f"lengths {lengths[0]}-{lengths[1]}"),
                                      ("mse_longer", f"{long_lengths[0]}-{long_lengths[1]}"))):
        axes[0, 1].bar(positions + 0.4 * k, [r[key] for r in results.values()], 0.4,
                       label=label)
    axes[0, 1].axhline(1 / 6, color="gray", ls=":")
    axes[0, 1].set(ylabel="test MSE", yscale="log", title="(2) longer test sequences")
    axes[0, 1].legend(fontsize=7)
    axes[0, 2].bar(positions, [max(r["batch_dependence"], 1e-9) for r in results.values()])
    axes[0, 2].set(ylabel="mean |output change|", yscale="log",
                   title="(3) dependence on batch-mates")
    for ax in axes[0, 1:]:
        ax.set_xticks(positions + (0.2 if ax is axes[0, 1] else 0), ["none", "BN", "LN"])
    save_figure(fig, out / "sequence.png")
    return {"steps": steps, "hidden": hidden, "lengths": list(lengths),
            "long_lengths": list(long_lengths), "mean_predictor_mse": 1 / 6, "norms": results}
