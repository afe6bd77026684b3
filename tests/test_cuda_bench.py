"""The CUDA benchmark's code paths at tiny shapes (its timings need a GPU)."""

from __future__ import annotations

import json

import pytest

from tinygrad_norm import device

if device._cuda_unavailable_reason() is not None:
    pytest.skip(f"no CUDA device or simulator: {device._cuda_unavailable_reason()}",
                allow_module_level=True)

from kernels import cuda_bench  # noqa: E402


def test_smoke_run_covers_every_normalization_and_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cuda_bench.main(["--smoke", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    ops = {(row["op"].split(" G=")[0], row["direction"]) for row in result["rows"]}
    names = ("LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm", "BatchNorm", "BatchNorm eval")
    assert ops == {(name, d) for name in names for d in ("forward", "backward")}
    for row in result["rows"]:
        assert row["ours_us"] > 0 and row["copy_gbps"] > 0
    assert "device copy" in capsys.readouterr().out


@pytest.mark.skipif(not device.simulator(), reason="a GPU can time kernels")
def test_timed_run_in_the_simulator_says_why_it_cannot_run(capsys):
    assert cuda_bench.main(["--sizes", "4"]) == 2
    assert "simulator cannot time kernels" in capsys.readouterr().err
