"""The benchmark harness's code paths at tiny shapes (--smoke), on both devices, with and
without PyTorch. Its timings are reported by running it, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from backends import BACKENDS

from kernels.cases import BY_NAME, CASES
from tinygrad_norm import cli, device


def expected_rows(backend: str) -> set:
    return {(case.name, direction) for case in CASES if backend in case.backends
            for direction in ("forward", "backward")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_smoke_run_covers_every_case_and_writes_json(backend, tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "--device", backend, "--smoke", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert {(row["op"], row["direction"]) for row in report["rows"]} == expected_rows(backend)
    for row in report["rows"]:
        assert row["ours_us"] > 0 and row["copy_gbps"] > 0 and row["mib"] >= 0
    assert report["meta"]["units"].startswith("MiB")
    if backend == "cpu":  # PyTorch's CPU twins ran beside ours (BatchRenorm has none)
        for row in report["rows"]:
            has_twin = BY_NAME[row["op"]].torch_twin is not None
            assert (row["torch_us"] is not None and row["torch_us"] > 0) == has_twin, row["op"]
    assert "% copy" in capsys.readouterr().out


def test_without_pytorch_our_columns_are_filled_and_a_note_says_why(tmp_path):
    path = tmp_path / "bench.json"
    code = ("import sys; sys.modules['torch'] = None; from tinygrad_norm import cli; "
            f"sys.exit(cli.main(['bench', '--smoke', '--json', {str(path)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PyTorch is not installed" in result.stdout
    rows = json.loads(path.read_text())["rows"]
    assert rows and all(r["torch_us"] is None and r["ours_us"] > 0 for r in rows)


def test_bench_help_lists_its_options(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["bench", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("--device", "--sizes", "--repeat", "--json", "--smoke", "--crossover",
                   "--latency", "--startup", "--accuracy", "--no-layers"):
        assert option in out


def test_bad_bench_arguments_are_one_line_errors(capsys):
    for argv in (["bench", "--repeat", "0"], ["bench", "--device=gpu"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == 2
    with pytest.raises(SystemExit, match="--sizes takes"):
        cli.main(["bench", "--sizes", "huge"])


@pytest.mark.skipif(not device.simulator(), reason="a GPU can time kernels")
def test_timed_cuda_run_in_the_simulator_says_why_it_cannot_run():
    with pytest.raises(SystemExit, match="simulator cannot time kernels"):
        cli.main(["bench", "--device=cuda", "--sizes", "4"])


def test_latency_report_measures_the_small_calls(capsys):
    from kernels import bench

    results = bench.latency(repeat=3)
    assert set(results) == {"small (64x64)", "just parallel", "parallel then small"}
    assert all(us > 0 for us in results.values())
