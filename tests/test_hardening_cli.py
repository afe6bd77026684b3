"""The CLI refuses bad requests with one line on stderr and exit code 2, never a traceback, and
never claims to have done what it did not do."""

from __future__ import annotations

import numpy as np
import pytest

import tinygrad_norm as tn
from tinygrad_norm.cli import main


def _refused(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        code = main(argv)
        raise SystemExit(code)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert "Traceback" not in err and err.strip(), err
    return err


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", "-1"],
    ["train", "--epochs", "0"],
    ["train", "--lr", "nan"],
    ["train", "--lr", "inf"],
    ["ics", "b", "--sigmoid-eval-every", "0"],
    ["ics", "d", "--shift-every", "0"],
    ["ics", "a", "--stack-depth", "0"],
    ["bench", "--repeat", "0"],
    ["bench", "--repeat", "-3"],
])
def test_bad_numbers_are_one_line_errors(capsys, argv):
    _refused(capsys, argv)


def test_out_pointing_at_a_file_is_refused(capsys, tmp_path):
    existing = tmp_path / "file.txt"
    existing.write_text("x")
    assert "not a folder" in _refused(capsys, ["train", "--out", str(existing)])


def test_resume_from_a_model_only_checkpoint_is_refused(capsys, tmp_path):
    tn.save({"0.weight": np.zeros((2, 2), np.float32)}, tmp_path / "checkpoint.npz")
    err = _refused(capsys, ["train", "--out", str(tmp_path), "--resume", "--epochs", "1",
                            "--no-progress"])
    assert "checkpoint" in err
