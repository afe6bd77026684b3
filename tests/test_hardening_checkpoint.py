"""Checkpoints under faults: a save killed at a random moment leaves the previous checkpoint
whole; damaged, foreign and pickle-bearing files are refused with a ValueError and run no code.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import tinygrad_norm as tn

# Saves state number k = 1, 2, ... to argv[1] forever; every array of state k is filled with k,
# so a loaded file is whole if and only if all of its arrays hold one and the same k.
SAVER = r"""
import sys
import numpy as np
import tinygrad_norm as tn

path = sys.argv[1]
for k in range(1, 10**6):
    print(k, flush=True)
    tn.save({"weight": np.full((1024, 1024, 4), k, np.float32),
             "bias": np.full(4096, k, np.float64),
             "num_batches_tracked": np.array(k, np.int64)}, path)
"""


def _state_number(path) -> int:
    state = tn.load(path)
    assert sorted(state) == ["bias", "num_batches_tracked", "weight"]
    k = int(state["num_batches_tracked"])
    for key in ("weight", "bias"):
        assert (state[key] == k).all(), f"{key} is not from save number {k}: a torn file"
    return k


@pytest.mark.parametrize("delay_s", [0.0, 0.013, 0.031, 0.047, 0.089])
def test_save_killed_mid_write_leaves_a_whole_checkpoint(tmp_path, delay_s):
    path = tmp_path / "model.npz"
    tn.save({"weight": np.zeros((1024, 1024, 4), np.float32), "bias": np.zeros(4096),
             "num_batches_tracked": np.array(0, np.int64)}, path)
    saver = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE,
                             text=True)
    try:
        printed = [saver.stdout.readline() for _ in range(3)]  # two saves done, third on
        time.sleep(delay_s)
        saver.send_signal(signal.SIGKILL)
        printed += saver.stdout.readlines()  # whatever it printed before it died
    finally:
        saver.kill()
        saver.wait()
    in_progress = int(printed[-1])  # the save the kill interrupted (or had just finished)
    assert _state_number(path) in (in_progress - 1, in_progress)


def _valid_file(tmp_path):
    path = tmp_path / "valid.npz"
    tn.save({"weight": np.arange(1000.0), "step": np.array(3)}, path)
    return path


@pytest.mark.parametrize("keep", [0, 1, 21, 0.5, -1])
def test_truncated_checkpoint_is_refused_with_value_error(tmp_path, keep):
    data = _valid_file(tmp_path).read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path = tmp_path / "truncated.npz"
    path.write_bytes(data[:cut])
    with pytest.raises(ValueError, match="truncated.npz"):
        tn.load(path)


def _foreign_files(tmp_path) -> dict:
    files = {
        "random bytes": os.urandom(5000),
        "text": b"not a checkpoint\n" * 100,
        "empty zip": None,
        "zip of text": None,
        "single .npy array": None,
    }
    paths = {}
    for name, content in files.items():
        path = tmp_path / f"{name.replace(' ', '_')}.npz"
        if content is not None:
            path.write_bytes(content)
        paths[name] = path
    with zipfile.ZipFile(paths["empty zip"], "w"):
        pass
    with zipfile.ZipFile(paths["zip of text"], "w") as archive:
        archive.writestr("weight.npy", "this is no npy header")
    with open(paths["single .npy array"], "wb") as f:
        np.save(f, np.arange(4.0))
    return paths


@pytest.mark.parametrize("kind", ["random bytes", "text", "empty zip", "zip of text",
                                  "single .npy array"])
def test_foreign_file_is_refused_with_value_error(tmp_path, kind):
    path = _foreign_files(tmp_path)[kind]
    try:
        result = tn.load(path)
    except ValueError as err:
        assert str(path) in str(err)
        return
    # an empty zip is an empty .npz: the only acceptable non-error answer is "no arrays"
    assert kind == "empty zip" and result == {}, (kind, result)


class _Payload:
    """Unpickling this creates `marker`: the proof that loading ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_bearing_npz_is_refused_and_runs_no_code(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.npz"
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(marker)
    np.savez(path, weight=np.ones(3), evil=evil)  # numpy pickles object arrays
    with pytest.raises(ValueError, match="evil.npz"):
        tn.load(path)
    assert not marker.exists(), "loading the checkpoint executed code"


def test_raw_pickle_file_is_refused_and_runs_no_code(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"weight": _Payload(marker)}))
    with pytest.raises(ValueError, match="evil.pt"):
        tn.load(path)
    assert not marker.exists(), "loading the checkpoint executed code"


def test_damaged_structure_entry_is_refused_with_value_error(tmp_path):
    path = tmp_path / "nested.npz"
    tn.save({"state": {"0": {"momentum_buffer": np.ones(3)}}, "lr": 0.1}, path)
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    key = next(k for k in arrays if k.startswith("__"))
    arrays[key] = np.frombuffer(b'{"dict": [["a", {"array": "missing"}]]}', np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="nested.npz"):
        tn.load(path)
