"""Determinism: one seed, one machine, one thread count gives bitwise identical training runs and
bitwise identical kernel results, the parallel (> 65536 elements) kernels included: every
cross-thread reduction writes one partial per thread chunk and merges them in chunk order."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from kernels import cpu
from kernels.cases import BY_NAME, CASES

# A short training run in a fresh process: per-step losses as exact hex floats, and a digest
# of every final parameter and buffer. BatchNorm sees 80·16·8·8 = 81,920 elements per batch
# (the parallel kernels); GroupNorm and LayerNorm run too.
TRAINING_RUN = r"""
import hashlib, json
import numpy as np
import tinygrad_norm as tn

tn.manual_seed(1234)
model = tn.nn.Sequential(
    tn.nn.Conv2d(1, 16, 3, padding=1), tn.nn.BatchNorm2d(16), tn.nn.ReLU(),
    tn.nn.Conv2d(16, 8, 3, padding=1), tn.nn.GroupNorm(4, 8), tn.nn.ReLU(),
    tn.nn.MaxPool2d(2), tn.nn.Flatten(), tn.nn.LayerNorm(128), tn.nn.Linear(128, 10))
optimizer = tn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
loss_fn = tn.nn.CrossEntropyLoss()
data = np.random.default_rng(99)
images = data.standard_normal((3, 80, 1, 8, 8)).astype(np.float32)
labels = data.integers(0, 10, (3, 80))
losses = []
for step in range(12):
    optimizer.zero_grad()
    loss = loss_fn(model(tn.Tensor(images[step % 3])), tn.Tensor(labels[step % 3]))
    loss.backward()
    optimizer.step()
    losses.append(float(loss.item()).hex())
digest = hashlib.sha256()
for key, value in model.state_dict().items():
    digest.update(key.encode() + np.ascontiguousarray(value).tobytes())
print(json.dumps({"losses": losses, "state": digest.hexdigest()}))
"""


def test_same_seed_gives_bitwise_identical_training_runs_in_fresh_processes():
    runs = [subprocess.Popen([sys.executable, "-c", TRAINING_RUN], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    reports = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr[-3000:]
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    first, second = reports
    assert len(set(first["losses"])) > 1, "the run should train (losses change)"
    assert first["losses"] == second["losses"]
    assert first["state"] == second["state"]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_kernels_are_bitwise_reproducible_call_to_call_on_the_parallel_path(case):
    """131,968 elements (above the parallel threshold), offset by 100."""
    shape = (16, 8, 1031) if case.layout == "ncs" else (128, 1031)
    inputs = case.inputs(shape, np.float32, seed=5,
                         values=lambda rng, shape: rng.standard_normal(shape) + 100)
    first = sum(case.run(cpu, inputs), ())
    for _ in range(4):
        for i, (a, b) in enumerate(zip(first, sum(case.run(cpu, inputs), ()))):
            assert a.tobytes() == b.tobytes(), f"{case.name} output {i} changed between calls"


def test_split_batch_norm_kernels_are_bitwise_reproducible_on_the_parallel_path():
    """SyncBatchNorm's passes (statistics, apply, gradient sums, input gradient)."""
    inputs = BY_NAME["BatchNorm"].inputs((16, 8, 1031), np.float32, seed=5,
                                         values=lambda rng, shape: rng.standard_normal(shape) + 100)
    x, dy, weight, bias = (inputs[k] for k in ("x", "dy", "weight", "bias"))

    def passes():
        mean, var = cpu.batch_norm_statistics(x)
        inv_std = 1.0 / np.sqrt(var + 1e-5)
        sums = cpu.batch_norm_gradient_sums(dy, x, mean)
        return (mean, var, cpu.batch_norm_apply(x, mean, inv_std, weight, bias), *sums,
                cpu.batch_norm_input_gradient(dy, x, mean, inv_std, weight, *sums, 16 * 1031))

    first = passes()
    for _ in range(4):
        for i, (a, b) in enumerate(zip(first, passes())):
            assert a.tobytes() == b.tobytes(), f"split pass output {i} changed between calls"
