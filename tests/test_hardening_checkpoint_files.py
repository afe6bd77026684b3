"""tn.save writes like np.savez and torch.save do (umask, symlinks, every key round-trips) and
cleans up after killed saves; tn.load refuses every foreign or damaged file with a ValueError
naming the path, and never allocates what the file does not hold (declared shapes, zip bombs,
deep nesting)."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile

import numpy as np
import pytest

import tinygrad_norm as tn
from tinygrad_norm import checkpoint

STATE = {"weight": np.arange(6, dtype=np.float32).reshape(2, 3)}


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_files_respect_the_umask_and_overwrites_keep_the_mode(tmp_path):
    old = os.umask(0o022)
    try:
        tn.save(STATE, tmp_path / "a.npz")
        np.savez(tmp_path / "b.npz", **STATE)
        assert _mode(tmp_path / "a.npz") == _mode(tmp_path / "b.npz") == 0o644
        os.chmod(tmp_path / "a.npz", 0o640)
        tn.save(STATE, tmp_path / "a.npz")
        assert _mode(tmp_path / "a.npz") == 0o640
    finally:
        os.umask(old)


def test_saving_to_a_symlink_writes_through_to_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "model.npz"
    tn.save(STATE, target)
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    tn.save({"weight": STATE["weight"] * 2}, link)
    assert link.is_symlink()
    np.testing.assert_array_equal(tn.load(target)["weight"], STATE["weight"] * 2)


def test_temporary_files_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    dead_pid = 2**22 + 12345  # above pid_max's default: no such process
    for i in range(3):
        (tmp_path / f".model.npz.{dead_pid}.{i}.tmp").write_bytes(b"x" * 1000)
    (tmp_path / ".other.npz.1.tmp").write_bytes(b"not ours")
    tn.save(STATE, tmp_path / "model.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.1.tmp", "model.npz"]


@pytest.mark.parametrize("key", ["allow_pickle", "file", "args", "kwds", "", "a/b", "x.npy",
                                 "ключ", "k" * 300])
def test_every_key_round_trips(tmp_path, key):
    state = {key: np.array([1.0, 2.0]), "other": np.array(3)}
    tn.save(state, tmp_path / "c.npz")
    loaded = tn.load(tmp_path / "c.npz")
    assert sorted(loaded) == sorted(state)
    np.testing.assert_array_equal(loaded[key], state[key])


@pytest.mark.parametrize("key", ["a\0b", "k" * 70000])
def test_keys_a_zip_cannot_hold_are_refused_clearly(tmp_path, key):
    with pytest.raises(ValueError, match="key"):
        tn.save({key: np.zeros(2)}, tmp_path / "d.npz")
    assert not list(tmp_path.iterdir())


def _zip(path, members: dict, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _npy_header(shape, dtype="<f8") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_a_declared_shape_larger_than_the_file_is_refused(tmp_path):
    path = tmp_path / "huge.npz"
    _zip(path, {"a.npy": _npy_header((2**40,))})
    with pytest.raises(ValueError, match=str(path)):
        tn.load(path)


def test_a_member_that_would_inflate_past_available_memory_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, a=np.zeros(16 << 20))  # 128 MiB of zeros in ~130 kB
    assert path.stat().st_size < 1 << 20
    monkeypatch.setattr(checkpoint, "_available_memory", lambda: 64 << 20)
    with pytest.raises(ValueError, match=str(path)):
        tn.load(path)
    monkeypatch.setattr(checkpoint, "_available_memory", lambda: 1 << 30)
    assert tn.load(path)["a"].shape == (16 << 20,)


def _structured(path, structure) -> None:
    raw = json.dumps(structure) if not isinstance(structure, str) else structure
    _zip(path, {checkpoint._STRUCTURE_KEY + ".npy": _npy(np.frombuffer(raw.encode(), np.uint8))})


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_deeply_nested_structures_are_refused_with_value_error(tmp_path):
    path = tmp_path / "deep.npz"
    _structured(path, '{"list": [' * 100000 + "]}" * 100000)
    with pytest.raises(ValueError, match=str(path)):
        tn.load(path)


@pytest.mark.parametrize("structure", [{"list": [{"value": 1}]}, {"value": 3}])
def test_a_structure_that_is_not_a_dict_is_refused(tmp_path, structure):
    path = tmp_path / "list.npz"
    _structured(path, structure)
    with pytest.raises(ValueError, match=str(path)):
        tn.load(path)
