"""The CLI refuses bad arguments with a one-line error and exit status 2, never a traceback,
and never claims to have written what it did not write."""

from __future__ import annotations

import json

import numpy as np
import pytest

import kernels.bench
import tinygrad_norm as tn
import tinygrad_norm.train_bench
from tinygrad_norm.cli import main


def _refused(argv: list[str], capsys) -> str:
    """Run the CLI, expecting exit status 2; return its stderr, which must be one error line."""
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's parser.error
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err and "error:" in err.splitlines()[-1]
    return err


@pytest.mark.parametrize("argv, says", [
    (["train", "--epochs", "-1"], "--epochs: must be an integer >= 1, got -1"),
    (["train", "--epochs", "0"], "--epochs: must be an integer >= 1"),
    (["train", "--lr", "nan"], "--lr: must be a finite number > 0, got nan"),
    (["train", "--lr", "inf"], "--lr: must be a finite number > 0, got inf"),
    (["train", "--lr", "-0.1"], "--lr: must be a finite number > 0"),
    (["train-cnn", "--batch-size", "0"], "--batch-size: must be an integer >= 1"),
    (["ics", "b", "--sigmoid-eval-every", "0"], "--sigmoid-eval-every: must be an integer"),
    (["ics", "d", "--shift-every", "0"], "--shift-every: must be an integer >= 1"),
    (["ics", "a", "--stack-depth", "0"], "--stack-depth: must be an integer >= 1"),
    (["ics", "c", "--batch-sizes", "4", "0"], "--batch-sizes: must be an integer >= 1"),
    (["train", "--depth", "-1"], "--depth: must be an integer >= 0, got -1"),
    (["train", "--seed", "-1"], "--seed: must be an integer from 0 to 2**32 - 1, got -1"),
    (["train-cnn", "--seed", str(2**32)], "--seed: must be an integer from 0 to 2**32 - 1"),
    (["ics", "--seed", "-5"], "--seed: must be an integer from 0 to 2**32 - 1"),
    (["gradcheck", "--seed", "-1"], "--seed: must be an integer from 0 to 2**32 - 1"),
    (["bench", "--repeat", "0"], "--repeat: must be an integer >= 1, got 0"),
    (["bench", "--repeat", "-3"], "--repeat: must be an integer >= 1, got -3"),
])
def test_bad_numbers_are_one_line_errors(argv, says, capsys):
    assert says in _refused(argv, capsys)


@pytest.mark.parametrize("command", ["train", "train-cnn", "ics"])
def test_an_out_that_is_a_file_is_refused(command, tmp_path, capsys):
    path = tmp_path / "taken"
    path.write_text("not a folder")
    assert "exists and is not a folder" in _refused([command, "--out", str(path)], capsys)
    assert path.read_text() == "not a folder"


def test_resuming_from_a_model_only_checkpoint_is_refused(tmp_path, capsys):
    tn.save({"model": {"weight": np.ones(3)}}, tmp_path / "checkpoint.npz")
    err = _refused(["train", "--resume", "--out", str(tmp_path), "--no-progress"], capsys)
    assert "not a training checkpoint" in err and "config" in err


def test_resuming_without_a_checkpoint_is_refused(tmp_path, capsys):
    err = _refused(["train", "--resume", "--out", str(tmp_path), "--no-progress"], capsys)
    assert "does not exist" in err


def test_resuming_from_a_foreign_file_is_refused(tmp_path, capsys):
    (tmp_path / "checkpoint.npz").write_bytes(b"not a zip")
    err = _refused(["train", "--resume", "--out", str(tmp_path), "--no-progress"], capsys)
    assert "checkpoint.npz" in err


@pytest.mark.parametrize("form", [["--json", "{path}"], ["--json={path}"]])
def test_bench_json_equals_path_writes_the_layer_rows_too(form, tmp_path, monkeypatch):
    path = tmp_path / "bench.json"

    def kernel_table(args):  # stands in for the kernel benchmark, which takes minutes
        assert args.json == str(path)
        return {"rows": []}

    monkeypatch.setattr(kernels.bench, "run", kernel_table)
    monkeypatch.setattr(tinygrad_norm.train_bench, "layer_table",
                        lambda rounds, table: [{"layer": "LayerNorm"}])
    assert main(["bench", *(a.format(path=path) for a in form)]) == 0
    assert json.loads(path.read_text()) == {"rows": [], "layers": [{"layer": "LayerNorm"}]}
