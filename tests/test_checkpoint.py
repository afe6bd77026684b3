"""save/load: round trips, atomic replacement, refusing pickles, truncated and foreign files."""

import os
import pickle

import numpy as np
import pytest
import torch

import tinygrad_norm as tn


def test_flat_state_dict_round_trip_keeps_keys_dtypes_values(tmp_path):
    state = {"0.weight": np.random.rand(3, 2).astype(np.float32),
             "1.num_batches_tracked": np.array(4, dtype=np.int64)}
    tn.save(state, tmp_path / "ckpt.npz")
    loaded = tn.load(tmp_path / "ckpt.npz")
    assert list(loaded) == list(state)
    for key in state:
        assert loaded[key].dtype == state[key].dtype
        np.testing.assert_array_equal(loaded[key], state[key])


def test_flat_file_is_plain_npz_readable_by_numpy(tmp_path):
    tn.save({"w": np.arange(3.0)}, tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz", allow_pickle=False) as f:
        assert f.files == ["w"]


def test_nested_optimizer_like_state_round_trips(tmp_path):
    state = {"state": {0: {"step": 3.0, "exp_avg": np.ones(2)}},
             "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0], "x": None}]}
    tn.save(state, tmp_path / "o.npz")
    loaded = tn.load(tmp_path / "o.npz")
    assert loaded["param_groups"] == state["param_groups"]
    assert loaded["state"][0]["step"] == 3.0
    np.testing.assert_array_equal(loaded["state"][0]["exp_avg"], np.ones(2))


def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "c.npz"
    tn.save({"w": np.zeros(2)}, path)
    tn.save({"w": np.ones(2)}, path)
    assert os.listdir(tmp_path) == ["c.npz"]
    np.testing.assert_array_equal(tn.load(path)["w"], np.ones(2))


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "c.npz"
    tn.save({"w": np.ones(2)}, path)
    with pytest.raises(TypeError, match="cannot store"):
        tn.save({"w": np.ones(2), "bad": [object()]}, path)
    np.testing.assert_array_equal(tn.load(path)["w"], np.ones(2))
    assert os.listdir(tmp_path) == ["c.npz"]


def test_pickle_bearing_file_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.npz"
    np.savez(path, payload=np.array([Exploit()], dtype=object))
    with pytest.raises(ValueError, match="evil.npz"):
        tn.load(path)
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ValueError, match="raw.npz"):
        tn.load(raw)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_foreign_or_truncated_file_is_a_clear_value_error(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bad.npz"):
        tn.load(path)


def test_truncated_real_checkpoint_is_refused(tmp_path):
    path = tmp_path / "c.npz"
    tn.save({"w": np.random.rand(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="c.npz"):
        tn.load(path)


def test_state_dict_moves_to_pytorch_and_back(tmp_path):
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    tn.save({k: v.numpy() for k, v in theirs.state_dict().items()}, tmp_path / "t.npz")
    loaded = tn.load(tmp_path / "t.npz")
    assert list(loaded) == list(theirs.state_dict())
    back = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    back.load_state_dict({k: torch.from_numpy(v) for k, v in loaded.items()})
    for key, value in theirs.state_dict().items():
        assert torch.equal(back.state_dict()[key], value)
