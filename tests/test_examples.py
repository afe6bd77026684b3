"""The examples in tiny configurations: they run, write their files, and report sane numbers;
and a resumed training run continues bit for bit as if it had never stopped."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the examples' digits data comes with scikit-learn")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

import tinygrad_norm as tn  # noqa: E402  (after the skips)
from tinygrad_norm.cli import main as cli  # noqa: E402
from tinygrad_norm.experiments import ics_demo, train_cnn, train_mlp  # noqa: E402
from tinygrad_norm.experiments.models import make_mlp  # noqa: E402
from tinygrad_norm.ics import ActivationRecorder, covariate_shift  # noqa: E402

TINY_MLP = ["--width", "16", "--depth", "2", "--no-progress"]


def read_results(folder) -> dict:
    for name in ("results.json", "training.png", "checkpoint.npz"):
        assert (folder / name).stat().st_size > 0, name
    return json.loads((folder / "results.json").read_text())


def check_history(results: dict, epochs: int) -> None:
    assert results["epochs_done"] == epochs
    for key in ("train_loss", "test_loss", "test_accuracy"):
        assert len(results[key]) == epochs
    assert all(math.isfinite(v) and v > 0 for v in results["train_loss"] + results["test_loss"])
    assert all(0 <= v <= 1 for v in results["test_accuracy"])


def test_train_mlp_writes_results_plot_and_checkpoint(tmp_path):
    train_mlp.main(["--norm", "layer", "--epochs", "2", "--out", str(tmp_path), *TINY_MLP])
    results = read_results(tmp_path)
    check_history(results, 2)
    assert results["config"]["norm"] == "layer"
    assert results["test_accuracy"][-1] > 0.3  # 10 classes: chance is 0.1


def test_train_cnn_from_the_cli_in_another_folder_writes_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(["train-cnn", "--norm", "group", "--epochs", "1", "--channels", "4",
                "--batch-size", "64", "--no-progress"]) == 0
    results = read_results(tmp_path / "runs" / "cnn-group-b64")
    check_history(results, 1)


TINY_RUNS = {
    "mlp": (train_mlp.main, TINY_MLP),
    "cnn": (train_cnn.main, ["--channels", "4", "--batch-size", "64", "--no-progress"]),
}


def train_run(model: str, folder, epochs: int, resume: bool = False) -> None:
    main, flags = TINY_RUNS[model]
    flags = ["--norm", "batch", "--epochs", str(epochs), "--out", str(folder), *flags]
    main(flags + (["--resume"] if resume else []))


@pytest.mark.parametrize("model", TINY_RUNS)
def test_resumed_training_matches_uninterrupted_training_bitwise(tmp_path, model):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_run(model, straight, 4)
    train_run(model, resumed, 2)
    train_run(model, resumed, 4, resume=True)
    a, b = read_results(straight), read_results(resumed)
    for key in ("train_loss", "test_loss", "test_accuracy"):
        assert a[key] == b[key], key  # exact float equality, not approximate
    weights_a = tn.load(straight / "checkpoint.npz")["model"]
    weights_b = tn.load(resumed / "checkpoint.npz")["model"]
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        assert weights_a[key].tobytes() == weights_b[key].tobytes(), key


def test_resume_refuses_a_checkpoint_of_a_different_run(tmp_path):
    train_run("mlp", tmp_path, 1)
    with pytest.raises(ValueError, match="different run"):
        train_mlp.main(["--norm", "batch", "--lr", "0.5", "--epochs", "2", "--out",
                        str(tmp_path), "--resume", *TINY_MLP])


def test_ics_demo_parts_write_tables_json_and_plots(tmp_path, capsys):
    ics_demo.main([
        "a", "b", "c", "d", "e", "f", "--out", str(tmp_path), "--no-progress",
        "--stack-depth", "40", "--normal-init-epochs", "1",
        "--sigmoid-steps", "40", "--sigmoid-eval-every", "20",
        "--batch-sizes", "2", "8", "--batch-size-epochs", "1", "--batch-size-seeds", "2",
        "--batch-size-images", "48", "--batch-size-channels", "4",
        "--shift-epochs", "1", "--shift-every", "10",
        "--sequence-steps", "4", "--sequence-hidden", "4", "--sequence-eval-every", "2",
        "--style-steps", "5", "--style-channels", "4",
    ])
    for name in ("scale", "sigmoid", "batch_size", "shift", "sequence", "style"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0, name
        assert json.loads((tmp_path / f"{name}.json").read_text())["cpu_seconds"] > 0, name
    out = capsys.readouterr().out
    assert "overflow float32 at layer" in out and str(tmp_path.resolve()) in out

    scale = json.loads((tmp_path / "scale.json").read_text())
    assert 35 <= scale["overflow_layer"] <= 40  # sqrt(100)^k passes 3.4e38 at k = 38.5
    for norm in ("batch", "layer"):
        assert np.allclose(scale["measured_std"][norm], 1, atol=0.01)
    growth = np.array(scale["measured_std"]["none"][:30]) / np.array(scale["predicted_std"][:30])
    assert np.all((growth > 0.5) & (growth < 2))
    normal_init = scale["normal_init_training"]
    assert normal_init["batch"]["test_accuracy"][-1] > normal_init["none"]["test_accuracy"][-1]

    sigmoid = json.loads((tmp_path / "sigmoid.json").read_text())
    for trace in sigmoid["traces"].values():
        assert trace["step"] == [0, 20, 40]
        assert all(0 <= a <= 1 for a in trace["test_accuracy"])
        assert all(p15 <= p50 <= p85 for p15, p50, p85 in zip(trace["p15"], trace["p50"],
                                                              trace["p85"]))

    batch_size = json.loads((tmp_path / "batch_size.json").read_text())
    assert batch_size["batch_sizes"] == [2, 8]
    assert set(batch_size["test_error"]) == {"batch", "group", "renorm"}
    for norm, errors in batch_size["test_error"].items():
        assert set(errors) == ({"eval"} if norm == "group" else {"eval", "train_mode"})
        for per_batch_size in errors.values():
            assert len(per_batch_size) == 2 and all(len(seeds) == 2 for seeds in per_batch_size)
            assert all(0 <= e <= 1 for seeds in per_batch_size for e in seeds)
    noise = batch_size["statistics_noise"]
    assert len(noise["mean"]) == len(noise["var"]) == 3  # one row per BatchNorm layer
    for rows in noise.values():
        # a batch of 2 estimates the statistics worse than a batch of 8 (~2x: 1/sqrt(batch))
        assert all(row[0] > row[1] > 0 for row in rows)

    shift = json.loads((tmp_path / "shift.json").read_text())
    assert shift["layers"] == ["Linear 2", "Linear 3", "Linear 4"]
    for means in shift["mean"].values():
        assert all(math.isfinite(v) and v >= 0 for m in means.values() for v in m)
    for smoothness in shift["smoothness"].values():
        assert all(math.isfinite(v) and v > 0 for v in smoothness.values())

    sequence = json.loads((tmp_path / "sequence.json").read_text())["norms"]
    for result in sequence.values():
        assert result["trace"]["step"] == [2, 4]
        assert all(0 < result[k] < 10 for k in ("mse_in_range", "mse_longer"))
    # per-sample computations do not see the batch; per-step BatchNorm does
    assert sequence["none"]["batch_dependence"] < 1e-5
    assert sequence["layer"]["batch_dependence"] < 1e-5
    assert sequence["batch"]["batch_dependence"] > 1e-3
    assert not sequence["batch"]["batch_of_one"]["works"]
    assert "more than 1 value" in sequence["batch"]["batch_of_one"]["error"]
    assert sequence["layer"]["batch_of_one"]["max_difference"] < 1e-5

    style = json.loads((tmp_path / "style.json").read_text())
    batch_norm, instance_norm = style["norms"]["batch"], style["norms"]["instance"]
    assert max(instance_norm["output_change"]["brightness"]) < 1e-4  # removed exactly
    assert instance_norm["batch_dependence"] < 1e-6 < batch_norm["batch_dependence"]
    for kind in ("contrast", "brightness"):
        assert sum(instance_norm["output_change"][kind]) < sum(batch_norm["output_change"][kind])
    adain = style["adain"]
    assert adain["feature_mean_error"] < 1e-4
    np.testing.assert_allclose(adain["pixel_mean_std"], adain["style_mean_std"], rtol=1e-3)


def test_activation_recorder_records_a_units_percentiles_and_unhooks():
    layer = tn.nn.Identity()
    values = np.arange(200, dtype=np.float32).reshape(100, 2)
    with ActivationRecorder({"identity": layer}, where="input", unit=1,
                            percentiles=(15, 50, 85)) as recorder:
        layer(tn.Tensor(values))
    layer(tn.Tensor(values))  # after the with block the hook is gone
    (stats,) = recorder.records["identity"]
    column = values[:, 1].astype(np.float64)
    assert stats["mean"] == column.mean() and stats["std"] == column.std()
    assert stats["p50"] == np.percentile(column, 50) and stats["max_abs"] == 199


def test_covariate_shift_measures_every_layer_and_leaves_the_model_as_it_was():
    tn.manual_seed(0)
    model = make_mlp("batch", width=8, depth=2)
    x, y = tn.randn(16, 64), tn.tensor(np.arange(16) % 10)
    before = model.state_dict()
    shifts = covariate_shift(model, tn.nn.CrossEntropyLoss(), x, y, lr=0.1)
    assert [s["layer"] for s in shifts] == [0, 3, 6]
    assert shifts[0]["input_shift"] == 0 and shifts[0]["grad_change"] == 0  # nothing before it
    assert all(s["grad_change"] > 0 and -1 <= s["grad_cosine"] <= 1 for s in shifts[1:])
    after = model.state_dict()
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)
