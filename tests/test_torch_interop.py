"""Moving models and checkpoints between torch.nn and ours: from_torch / to_torch, and
.safetensors files that each side writes and the other loads with no conversion code."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

safetensors_torch = pytest.importorskip("safetensors.torch")

import tinygrad_norm as tn  # noqa: E402
from tinygrad_norm import nn  # noqa: E402


def _torch_model(lib, dtype=None):
    """The same CNN in either library: every normalization layer and the layers around them."""
    model = lib.Sequential(
        lib.Conv2d(3, 8, 3, padding=1), lib.BatchNorm2d(8), lib.ReLU(),
        lib.GroupNorm(2, 8, bias=False), lib.InstanceNorm2d(8, affine=True,
                                                            track_running_stats=True),
        lib.LocalResponseNorm(3), lib.MaxPool2d(2), lib.Flatten(),
        lib.Linear(8 * 4 * 4, 16), lib.LayerNorm(16), lib.RMSNorm(16), lib.Tanh(),
        lib.BatchNorm1d(16, affine=False), lib.Dropout(0.0), lib.Linear(16, 4),
        lib.LogSoftmax(dim=1),
    )
    return model if dtype is None else model.to(dtype)


def _randomize_torch(model):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=gen, dtype=value.dtype) + 0.5)


def _outputs_match(ours, theirs, x: np.ndarray, atol=1e-5):
    y = ours(tn.Tensor(x)).detach().numpy()
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=atol)


@pytest.mark.parametrize("training", [True, False])
def test_from_torch_and_back(training):
    theirs = _torch_model(torch.nn)
    _randomize_torch(theirs)
    theirs.train(training)
    ours = tn.from_torch(theirs)
    assert type(ours) is nn.Sequential and ours.training == training
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in theirs]
    assert ours[3].bias is None and ours[12].weight is None
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    _outputs_match(ours, theirs, x)
    back = tn.to_torch(ours)
    assert type(back) is torch.nn.Sequential and back.training == training
    for (key, a), (key_b, b) in zip(back.state_dict().items(), theirs.state_dict().items()):
        assert key == key_b and a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_float64_and_mixed_modes_are_kept():
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double()
    theirs[1].eval()
    ours = tn.from_torch(theirs)
    assert ours[0].weight.dtype == ours[1].running_mean.dtype == np.float64
    assert ours.training and not ours[1].training
    _outputs_match(ours, theirs, np.random.default_rng(1).standard_normal((5, 3)), atol=1e-12)


def test_unsupported_layers_are_named():
    class Custom(torch.nn.Linear):  # a subclass may have its own forward
        pass

    with pytest.raises(TypeError, match=r"model\.1 is a torch\.nn\.modules\.activation\.GELU"):
        tn.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.GELU()))
    with pytest.raises(TypeError, match=r"model\.0 is a .*Custom"):
        tn.from_torch(torch.nn.Sequential(Custom(2, 2)))
    with pytest.raises(TypeError, match=r"model is a .*LazyBatchNorm1d"):
        tn.to_torch(nn.LazyBatchNorm1d())


# -------------------------------------------------------------------------- .safetensors


def test_pytorch_loads_our_safetensors_file_into_the_equivalent_model(tmp_path):
    ours = _torch_model(nn)
    x = np.random.default_rng(2).standard_normal((4, 3, 8, 8)).astype(np.float32)
    ours(tn.Tensor(x))  # running statistics move away from their initial values
    path = tmp_path / "model.safetensors"
    tn.save(ours.state_dict(), path)
    theirs = _torch_model(torch.nn)
    theirs.load_state_dict(safetensors_torch.load_file(path))  # strict: every key, every shape
    theirs.eval()
    ours.eval()
    _outputs_match(ours, theirs, x)
    assert theirs[1].num_batches_tracked.item() == 1


def test_we_load_a_safetensors_file_that_pytorch_wrote(tmp_path):
    theirs = _torch_model(torch.nn, torch.float64)
    _randomize_torch(theirs)
    path = tmp_path / "torch.safetensors"
    safetensors_torch.save_file(theirs.state_dict(), path)
    ours = _torch_model(nn).double()
    state = tn.load(path)
    assert state["1.num_batches_tracked"].dtype == np.int64
    ours.load_state_dict(state)
    ours.eval()
    theirs.eval()
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8))
    _outputs_match(ours, theirs, x, atol=1e-10)


def test_the_header_says_pytorch_format_as_hugging_face_expects(tmp_path):
    from safetensors import safe_open

    path = tmp_path / "m.safetensors"
    tn.save(nn.LayerNorm(3).state_dict(), path)
    with safe_open(path, framework="np") as f:
        assert f.metadata() == {"format": "pt"}
        assert sorted(f.keys()) == ["bias", "weight"]


def test_truncated_or_foreign_files_are_clear_errors_naming_the_path(tmp_path):
    path = tmp_path / "m.safetensors"
    tn.save(nn.BatchNorm1d(3).state_dict(), path)
    data = path.read_bytes()
    cases = {"truncated": data[:-3], "header only": data[:8], "empty": b"",
             "foreign": b"PK\x03\x04 this is a zip file, not safetensors"}
    for what, content in cases.items():
        bad = tmp_path / f"{what.replace(' ', '_')}.safetensors"
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=f"{bad}.*not a readable .safetensors"):
            tn.load(bad)
    with pytest.raises(FileNotFoundError):
        tn.load(tmp_path / "missing.safetensors")


def test_save_is_atomic_and_refuses_what_safetensors_cannot_hold(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    tn.save({"w": np.ones(3)}, path)
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        tn.save({"w": np.zeros(5)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temporary file left behind
    with pytest.raises(TypeError, match="flat dict of named arrays.*npz"):
        tn.save({"state": {"step": 1}}, path)
    with pytest.raises(TypeError):
        tn.save({"names": np.array(["a"])}, path)
    assert path.read_bytes() == before
