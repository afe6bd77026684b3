"""Small models trained for a few steps from PyTorch's initial weights: the loss curves must
match PyTorch's to 1e-6 relative (float64), which checks every forward, backward and optimizer
update along the way."""

import numpy as np
import pytest
import torch

import tinygrad_norm as tn


def build(lib, kind, norm):
    nn = lib.nn
    norms = {"none": lambda c, d: nn.Identity(),
             "batch": lambda c, d: nn.BatchNorm1d(c) if d == 1 else nn.BatchNorm2d(c),
             "layer": lambda c, d: nn.LayerNorm(c) if d == 1 else nn.GroupNorm(1, c),
             "group": lambda c, d: nn.GroupNorm(2, c),
             "instance": lambda c, d: nn.InstanceNorm2d(c, affine=True)}
    if kind == "mlp":
        return nn.Sequential(nn.Linear(64, 32), norms[norm](32, 1), nn.ReLU(),
                             nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 10))
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), norms[norm](4, 2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=1, padding=1, dilation=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 10))


def train(lib, model, optimizer, batches):
    losses = []
    loss_fn = lib.nn.CrossEntropyLoss()
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(lib.tensor(x)), lib.tensor(y))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("optimizer, options", [("SGD", dict(lr=0.1, momentum=0.9)),
                                                ("Adam", dict(lr=0.01))])
@pytest.mark.parametrize("kind, norm", [("mlp", "none"), ("mlp", "batch"), ("mlp", "layer"),
                                        ("cnn", "none"), ("cnn", "batch"), ("cnn", "group"),
                                        ("cnn", "instance")])
def test_loss_curve_matches_pytorch(kind, norm, optimizer, options):
    torch.manual_seed(0)
    theirs = build(torch, kind, norm).double()
    ours = build(tn, kind, norm).double()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(0)
    shape = (16, 64) if kind == "mlp" else (16, 1, 8, 8)
    projection = rng.standard_normal((64, 10))  # labels a fixed function of the input: learnable
    inputs = [rng.standard_normal(shape) for _ in range(8)]
    batches = [(x, (x.reshape(16, 64) @ projection).argmax(axis=1)) for x in inputs]
    loss_theirs = train(torch, theirs, getattr(torch.optim, optimizer)(theirs.parameters(),
                                                                       **options), batches)
    loss_ours = train(tn, ours, getattr(tn.optim, optimizer)(ours.parameters(), **options),
                      batches)
    np.testing.assert_allclose(loss_ours, loss_theirs, rtol=1e-6)
    assert loss_ours[-1] < loss_ours[0]  # it learned something
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-6, atol=1e-9,
                                   err_msg=key)
