"""SGD, Adam and AdamW steps against PyTorch's, and optimizer state_dict round trips."""

import numpy as np
import pytest
import torch

import tinygrad_norm as tn

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, weight_decay=0.3, amsgrad=True)),
]


def _run(optimizer_name, options, dtype, steps=5):
    """The same quadratic-ish loss optimized by both libraries; returns both parameter lists."""
    rng = np.random.default_rng(0)
    init = [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(4).astype(dtype)]
    targets = [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(4).astype(dtype)]
    ours = [tn.Tensor(a.copy(), requires_grad=True) for a in init]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt_ours = getattr(tn.optim, optimizer_name)(ours, **options)
    opt_theirs = getattr(torch.optim, optimizer_name)(theirs, **options)
    for _ in range(steps):
        for params, opt, lib in ((ours, opt_ours, tn), (theirs, opt_theirs, torch)):
            opt.zero_grad()
            loss = sum((((p - lib.tensor(t)) ** 2) * (p.tanh() + 2)).sum()
                       for p, t in zip(params, targets))
            loss.backward()
            opt.step()
    return ours, theirs, opt_ours, opt_theirs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, options", CONFIGS)
def test_steps_match_pytorch(name, options, dtype):
    ours, theirs, _, _ = _run(name, options, dtype)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for a, b in zip(ours, theirs):
        assert a.dtype == dtype
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), **tol)


@pytest.mark.parametrize("name, options", [CONFIGS[1], CONFIGS[6]])
def test_state_dict_matches_pytorch_layout_and_resumes_identically(name, options, tmp_path):
    ours, theirs, opt_ours, opt_theirs = _run(name, options, np.float64)
    ours_sd, theirs_sd = opt_ours.state_dict(), opt_theirs.state_dict()
    assert set(ours_sd["state"]) == set(theirs_sd["state"])
    for index, state in theirs_sd["state"].items():
        assert set(ours_sd["state"][index]) == set(state)
        for key, value in state.items():
            np.testing.assert_allclose(np.asarray(ours_sd["state"][index][key]),
                                       value.numpy() if torch.is_tensor(value) else value)
    assert ours_sd["param_groups"][0]["params"] == theirs_sd["param_groups"][0]["params"]

    # saved to disk, loaded into a fresh optimizer, one more step equals an uninterrupted step
    tn.save(ours_sd, tmp_path / "opt.npz")
    clones = [tn.Tensor(p.detach().numpy().copy(), requires_grad=True) for p in ours]
    resumed = getattr(tn.optim, name)(clones, **options)
    resumed.load_state_dict(tn.load(tmp_path / "opt.npz"))
    for params, opt in ((ours, opt_ours), (clones, resumed)):
        opt.zero_grad()
        sum((p * p).sum() for p in params).backward()
        opt.step()
    for a, b in zip(ours, clones):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_param_groups_with_their_own_learning_rates():
    a, b = tn.ones(2, requires_grad=True), tn.ones(2, requires_grad=True)
    opt = tn.optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    (a.sum() + b.sum()).backward()
    opt.step()
    assert a.tolist() == pytest.approx([0.9, 0.9]) and b.tolist() == [0.0, 0.0]


def test_zero_grad_and_parameters_without_grad_are_skipped():
    a, b = tn.ones(2, requires_grad=True), tn.ones(2, requires_grad=True)
    opt = tn.optim.Adam([a, b], lr=0.1)
    a.sum().backward()
    opt.step()
    assert b.tolist() == [1.0, 1.0] and a.tolist() != [1.0, 1.0]
    opt.zero_grad()
    assert a.grad is None


def test_bad_options_are_clear_errors():
    p = [tn.ones(1, requires_grad=True)]
    with pytest.raises(ValueError, match="lr"):
        tn.optim.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        tn.optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        tn.optim.Adam(p, betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="require grad"):
        tn.optim.SGD([tn.ones(1)], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        tn.optim.SGD([], lr=0.1)
