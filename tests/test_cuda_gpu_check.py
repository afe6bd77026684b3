"""kernels.cuda.gpu_check's non-GPU parts: argument parsing, the JSON report written as it
goes, the reference comparison, and its environment and correctness sections at
simulator shapes (the streams, timings, host-overhead and registers sections need CuPy
and a GPU: they run only on a lent device)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinygrad_norm import device

if device._cuda_unavailable_reason() is not None:
    pytest.skip(f"no CUDA device or simulator: {device._cuda_unavailable_reason()}",
                allow_module_level=True)

from kernels.cuda import gpu_check  # noqa: E402


def test_compare_accepts_close_and_flags_wrong_shape_and_non_finite_results():
    expected = [np.linspace(-3, 3, 50)]
    close = gpu_check.compare([expected[0].astype(np.float32)], expected, "float32")
    assert close["ok"] and close["max_error_over_tolerance"] <= 1.0
    wrong = expected[0].copy()
    wrong[7] += 1e-2
    assert not gpu_check.compare([wrong], expected, "float32")["ok"]
    assert "shape" in gpu_check.compare([wrong[:-1]], expected, "float32")["error"]
    wrong[3] = np.nan
    assert not gpu_check.compare([wrong], expected, "float64")["ok"]


def test_unknown_section_is_refused(capsys):
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--sections", "environment,bogus"])
    assert "bogus" in capsys.readouterr().err


def test_report_is_on_disk_after_every_result_and_failures_propagate(tmp_path):
    report = gpu_check.Report(tmp_path / "r.json")
    report.add("correctness", "a", {"forward": {"ok": True}})
    assert json.loads((tmp_path / "r.json").read_text())["sections"]["correctness"]["a"]
    assert report.ok
    report.add("correctness", "b", {"forward": {"ok": False}})
    assert not report.ok
    assert not json.loads((tmp_path / "r.json").read_text())["sections"]["correctness"]["b"][
        "forward"]["ok"]


def test_environment_and_correctness_sections_pass_at_simulator_shapes(tmp_path):
    out = tmp_path / "gpu_check.json"
    status = gpu_check.main(["--out", str(out), "--sections", "environment,correctness",
                             "--tiny"])
    data = json.loads(out.read_text())["sections"]
    assert status == 0, data
    assert data["environment"]["trivial_kernel"]["ok"]
    cases = {k: v for k, v in data["correctness"].items() if k != "section_seconds"}
    assert len(cases) == len(gpu_check.correctness_cases(tiny=True))
    for name, result in cases.items():
        assert result["forward"]["ok"] and result["backward"]["ok"], name


def test_a_failing_section_is_recorded_and_fails_the_run(tmp_path, monkeypatch):
    def broken(report, args):
        raise RuntimeError("no device")

    monkeypatch.setitem(gpu_check.SECTIONS, "streams", broken)
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--out", str(out), "--sections", "streams"]) == 1
    assert "no device" in json.loads(out.read_text())["sections"]["streams"]["error"]
