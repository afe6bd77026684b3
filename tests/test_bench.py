"""The benchmark harness's code paths at tiny shapes (--smoke), on both devices, with and
without PyTorch. Its timings are reported by running it, never asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from backends import BACKENDS

import tinygrad_norm as tn
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
                   "--latency", "--startup", "--accuracy", "--no-layers", "--train",
                   "--rounds"):
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


def test_train_smoke_run_times_both_frameworks_in_their_own_processes(tmp_path, capsys):
    path = tmp_path / "train.json"
    assert cli.main(["bench", "--train", "--smoke", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    (row,) = report["steps"]
    assert row["model"] == "digits_cnn" and row["ours_ms"] > 0 and row["torch_ms"] > 0
    assert row["speed_ratio"] == pytest.approx(row["torch_ms"] / row["ours_ms"])
    assert report["autograd"]["apply_us"] > 0 and report["autograd"]["backward_node_us"] > 0
    # the BLAS our products ran on, and the variables that can force its kernels, are recorded
    assert report["blas"]["internal_api"] == "openblas" and report["blas"]["num_threads"] >= 1
    assert report["blas"]["environment"] == {
        k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    out = capsys.readouterr().out
    assert "ours/torch speed" in out and f"{report['blas']['architecture']} kernels" in out
    # and the CPU, whose vendor and vector width decide the BLAS kernels
    assert f"CPU: {report['cpu']}" in out and f"{os.cpu_count()} logical CPUs" in report["cpu"]


def test_cpu_description_names_the_first_cpu_its_family_and_vector_width(tmp_path):
    from kernels.bench import cpu_description

    block = ("processor\t: {0}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
             "model name\t: AMD EPYC {0}\nflags\t\t: fpu sse2 {1}\n\n")
    info = tmp_path / "cpuinfo"
    info.write_text(block.format(0, "avx2 fma") + block.format(1, "avx2 avx512f"))
    assert cpu_description(str(info)) == (
        f"AMD EPYC 0 (family 25, model 1), {os.cpu_count()} logical CPUs, AVX2")
    info.write_text(block.format(0, "avx2 avx512f avx512bw"))
    assert cpu_description(str(info)).endswith("logical CPUs, AVX-512")
    info.write_text(block.format(0, "sse4_2"))
    assert cpu_description(str(info)).endswith(f"{os.cpu_count()} logical CPUs")
    # no /proc/cpuinfo (not Linux): the platform's own name, never an exception
    assert f"{os.cpu_count()} logical CPUs" in cpu_description(str(tmp_path / "missing"))


@pytest.mark.parametrize("model", ["digits_cnn", "mnist_cnn", "cifar_cnn", "mlp_batchnorm",
                                   "mlp_layernorm"])
def test_train_bench_builds_the_same_model_in_both_frameworks(model):
    """The same layers and parameter shapes from torch.nn and tinygrad_norm.nn, so the two
    step times are of one model."""
    import torch

    from tinygrad_norm import nn
    from tinygrad_norm.train_bench import MODELS

    build = MODELS[model][3]
    ours, theirs = build(nn), build(torch.nn)
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in theirs]
    assert ([tuple(p.shape) for p in ours.parameters()]
            == [tuple(p.shape) for p in theirs.parameters()])
    x = np.zeros((2, *MODELS[model][2]), np.float32)
    assert ours(tn.Tensor(x)).shape == tuple(theirs(torch.from_numpy(x)).shape) == (2, 10)


def test_train_bench_runs_pytorch_without_tinygrad_norm_or_its_defaults():
    """PyTorch's worker never imports tinygrad_norm (whose thread defaults PyTorch would
    inherit) and gets the user's environment; ours imports it, as a user's script does."""
    import kernels
    from tinygrad_norm import train_bench

    torch_run = train_bench._run_worker("torch", "digits_cnn", warmup=0, seconds=0)
    ours_run = train_bench._run_worker("ours", "digits_cnn", warmup=0, seconds=0)
    assert torch_run["tinygrad_norm_imported"] is False and torch_run["steps"] >= 5
    assert ours_run["tinygrad_norm_imported"] is True and ours_run["median_s"] > 0
    environment = kernels.user_environment()
    for name in kernels.APPLIED_DEFAULTS:
        assert name not in environment


def test_train_bench_products_row_times_both_libraries_outside_the_geomean(capsys):
    """The MLP's matrix products alone, NumPy's and torch's, each in its own process: shown
    under the models, left out of their geomean."""
    from tinygrad_norm import train_bench

    report = train_bench.run(rounds=1, models=["digits_cnn", train_bench.PRODUCTS], warmup=0,
                             seconds=0, layers=False)
    rows = {row["model"]: row for row in report["steps"]}
    assert rows[train_bench.PRODUCTS]["ours_ms"] > 0 and rows[train_bench.PRODUCTS]["torch_ms"] > 0
    assert report["geomean_speed_ratio"] == pytest.approx(rows["digits_cnn"]["speed_ratio"])
    assert "8 matrix products" in capsys.readouterr().out


def test_train_bench_layer_table_times_every_layer_in_each_framework_alone(capsys):
    """The 16 MB layer table comes from one worker process per framework and round (started
    as the step workers are), every layer of LAYERS_16MB in it, in the report and printed."""
    from tinygrad_norm import train_bench

    rows = train_bench.layer_table(1, train_bench.TABLE_16MB, ["ours", "torch"])
    assert [row["layer"] for row in rows] == [name for name, _, _ in train_bench.LAYERS_16MB]
    assert all(row["ours_us"] > 0 and row["torch_us"] > 0 for row in rows)
    assert "InstanceNorm2d" in capsys.readouterr().out


def test_cpu_kernel_table_times_each_framework_in_its_own_process():
    """On the CPU our kernels and PyTorch's twins never share a process: ours without torch
    loaded, PyTorch's with torch loaded before this package (whose import sets the OpenMP wait
    policy that a runtime reads when it loads), both in the user's environment; the table
    keeps the order of kernels/cases.py and takes the copy from our process."""
    from kernels import bench

    ours = bench._run_worker("ours", ["smoke"], 1)
    theirs = bench._run_worker("torch", ["smoke"], 1)
    assert not ours["torch_loaded"]
    assert theirs["torch_loaded"] and theirs["torch_before_kernels"]
    assert all(t["copy_gbps"] > 0 for t in ours["times"])
    assert all(t["copy_gbps"] is None for t in theirs["times"])
    twins = {(t["op"], t["direction"]) for t in theirs["times"]}
    assert twins == {key for key in expected_rows("cpu") if BY_NAME[key[0]].torch_twin}
    rows = bench.own_process_table(["smoke"], 1, 2, has_torch=True)
    order = [case.name for case in CASES if "cpu" in case.backends]
    assert [r["op"] for r in rows[::2]] == order
    assert all((r["torch_us"] is not None) == bool(BY_NAME[r["op"]].torch_twin) for r in rows)


def test_small_layer_table_times_the_examples_shapes_in_own_processes(capsys):
    """`tinygrad-norm bench`'s layer table: LAYERS_SMALL through the same workers as the 16 MB
    table, both frameworks filled."""
    from tinygrad_norm import train_bench

    rows = train_bench.layer_table(1, train_bench.TABLE_SMALL, ["ours", "torch"])
    assert [(r["layer"], tuple(r["shape"])) for r in rows] == [
        (name, shape) for name, _, shape in train_bench.LAYERS_SMALL]
    assert all(r["ours_us"] > 0 and r["torch_us"] > 0 for r in rows)
    assert "64x16x8x8" in capsys.readouterr().out


def test_train_bench_worker_refuses_to_run_alone():
    result = subprocess.run([sys.executable, "-m", "tinygrad_norm.train_bench"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "bench --train" in result.stderr
