"""Optimizer state survives a reload and a deepcopy: a resumed run equals an uninterrupted one,
0-d parameters included (their state was turned into Python floats and stopped updating)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import tinygrad_norm as tn

OPTIMIZERS = {
    "sgd_momentum": lambda p: tn.optim.SGD(p, lr=0.1, momentum=0.9),
    "sgd_nesterov": lambda p: tn.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda p: tn.optim.Adam(p, lr=0.1),
    "adam_amsgrad": lambda p: tn.optim.Adam(p, lr=0.1, amsgrad=True),
    "adamw": lambda p: tn.optim.AdamW(p, lr=0.1),
}


def _params():
    return [tn.Tensor(np.float32(1.5), requires_grad=True),  # 0-d
            tn.Tensor([1.0, -2.0], requires_grad=True)]


def _steps(params, optimizer, n):
    for _ in range(n):
        optimizer.zero_grad()
        loss = (params[0] * params[0] * 3 + (params[1] * params[1]).sum()) * 1.0
        loss.backward()
        optimizer.step()


def _values(params):
    return [p.detach().numpy().copy() for p in params]


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("route", ["state_dict", "checkpoint", "deepcopy"])
def test_resumed_run_equals_uninterrupted_run(name, route, tmp_path):
    straight = _params()
    _steps(straight, OPTIMIZERS[name](straight), 6)

    first = _params()
    optimizer = OPTIMIZERS[name](first)
    _steps(first, optimizer, 3)
    if route == "deepcopy":
        resumed, resumed_optimizer = copy.deepcopy((first, optimizer))
        assert resumed_optimizer.state, "deepcopy dropped the optimizer state"
    else:
        state = optimizer.state_dict()
        if route == "checkpoint":
            tn.save(state, tmp_path / "optim.npz")
            state = tn.load(tmp_path / "optim.npz")
        resumed = [tn.Tensor(v.copy(), requires_grad=True) for v in _values(first)]
        resumed_optimizer = OPTIMIZERS[name](resumed)
        resumed_optimizer.load_state_dict(state)
    _steps(resumed, resumed_optimizer, 3)
    for ours, expected in zip(_values(resumed), _values(straight)):
        np.testing.assert_array_equal(ours, expected)


def test_deepcopy_state_belongs_to_the_copied_parameters():
    params = _params()
    optimizer = tn.optim.SGD(params, lr=0.1, momentum=0.9)
    _steps(params, optimizer, 1)
    twin = copy.deepcopy(optimizer)
    twin_params = twin.param_groups[0]["params"]
    assert all(a is not b for a, b in zip(twin_params, params))
    assert len(twin.state_dict()["state"]) == 2
    buffer = twin.state_dict()["state"][1]["momentum_buffer"]
    np.testing.assert_array_equal(buffer, optimizer.state_dict()["state"][1]["momentum_buffer"])
