"""GPU tensors end to end: the device model of Tensor and Module, and the normalization
layers on "cuda" tensors against the same layers on the CPU.

Runs on a GPU (CuPy arrays) or under numba's CUDA simulator (NumPy stand-ins, the same
dispatch path; tests/conftest.py picks).
"""

from __future__ import annotations

import numpy as np
import pytest
from norm_configs import CONFIGS, IDS
from parity import assert_close

import tinygrad_norm as tn
from tinygrad_norm import device, nn

if device._cuda_unavailable_reason() is not None:
    pytest.skip(f"no CUDA device or simulator: {device._cuda_unavailable_reason()}",
                allow_module_level=True)

def run_layer(layer, x_np, upstream, device_name):
    x = tn.Tensor(x_np, requires_grad=True).to(device_name)
    y = layer(x)
    y.backward(tn.Tensor(upstream, device=device_name))
    return y


@pytest.mark.parametrize("name, args, kwargs, shape", CONFIGS, ids=IDS)
def test_layer_on_cuda_matches_cpu_forward_backward_and_buffers(name, args, kwargs, shape):
    """The same configuration table as the PyTorch parity tests, on the cuda device: a
    training step (running statistics move) and an eval step."""
    rng = np.random.default_rng(0)
    cpu_layer = getattr(nn, name)(*args, **kwargs)
    for param in cpu_layer.parameters():
        param.data[...] = rng.uniform(0.5, 1.5, param.shape)
    gpu_layer = getattr(nn, name)(*args, **kwargs)
    gpu_layer.load_state_dict(cpu_layer.state_dict())
    gpu_layer.to("cuda")
    assert all(p.device == "cuda" for p in gpu_layer.parameters())
    for mode in ("train", "eval"):
        cpu_layer.train(mode == "train")
        gpu_layer.train(mode == "train")
        x_np = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
        upstream = rng.standard_normal(shape).astype(np.float32)
        for layer in (cpu_layer, gpu_layer):
            for param in layer.parameters():
                param.grad = None
        y_cpu = run_layer(cpu_layer, x_np, upstream, "cpu")
        y_gpu = run_layer(gpu_layer, x_np, upstream, "cuda")
        assert y_gpu.device == "cuda"
        assert_close(y_gpu.detach().cpu().numpy(), y_cpu.detach().numpy(), np.float32,
                     f"{mode} output", against="torch", atol_scale=2)
        for (key, ours), theirs in zip(gpu_layer.state_dict().items(),
                                       cpu_layer.state_dict().values()):
            if np.asarray(theirs).dtype == np.int64:  # num_batches_tracked
                np.testing.assert_array_equal(ours, theirs, err_msg=key)
            else:
                assert_close(ours, theirs, np.float32, f"{mode} {key}", against="torch")
        for ours, theirs in zip(gpu_layer.parameters(), cpu_layer.parameters()):
            assert ours.grad.device == "cuda"
            assert_close(ours.grad.cpu().numpy(), theirs.grad.numpy(), np.float32,
                         f"{mode} parameter gradient", against="torch", atol_scale=10)


def test_eval_mode_batch_norm_on_cuda_matches_cpu():
    rng = np.random.default_rng(1)
    x_np = rng.standard_normal((4, 3, 5)).astype(np.float32)
    upstream = rng.standard_normal((4, 3, 5)).astype(np.float32)
    cpu_layer = nn.BatchNorm1d(3)
    cpu_layer.running_mean.data[...] = [0.5, -1.0, 2.0]
    cpu_layer.eval()
    gpu_layer = nn.BatchNorm1d(3)
    gpu_layer.load_state_dict(cpu_layer.state_dict())
    gpu_layer.cuda().eval()
    y_cpu = run_layer(cpu_layer, x_np, upstream, "cpu")
    y_gpu = run_layer(gpu_layer, x_np, upstream, "cuda")
    np.testing.assert_allclose(y_gpu.detach().cpu().numpy(), y_cpu.detach().numpy(), atol=2e-6)
    np.testing.assert_allclose(gpu_layer.weight.grad.cpu().numpy(),
                               cpu_layer.weight.grad.numpy(), atol=1e-5)


def test_to_cuda_copies_and_gradients_flow_back_to_the_source_device():
    x = tn.Tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    on_gpu = x.to("cuda")
    assert on_gpu.device == "cuda" and on_gpu.is_cuda and x.device == "cpu"
    assert x.cuda().device == "cuda" and on_gpu.to("cuda") is on_gpu
    (on_gpu * on_gpu).sum().backward()
    assert x.grad.device == "cpu"
    np.testing.assert_array_equal(x.grad.numpy(), 2 * x.detach().numpy())
    back = on_gpu.detach().cpu()
    back.data[0, 0] = 100.0  # a device move is a copy: the source is untouched
    assert x.detach().numpy()[0, 0] == 0.0


def test_constructors_take_device_and_tensors_keep_theirs():
    for t in (tn.zeros(2, 3, device="cuda"), tn.randn(4, device="cuda"),
              tn.tensor([1.0, 2.0], device="cuda"), tn.ones_like(tn.ones(2, device="cuda"))):
        assert t.device == "cuda"
    parameter = nn.Parameter(tn.ones(3, device="cuda"))
    assert parameter.device == "cuda"
    assert "device='cuda'" in repr(tn.ones(2, device="cuda"))
    assert tn.Tensor(tn.ones(2, device="cuda"), device="cpu").device == "cpu"


def test_mixing_devices_in_one_op_is_an_error():
    a, b = tn.ones(2, 3, device="cuda"), tn.ones(2, 3)
    for op in (lambda: a + b, lambda: b * a, lambda: a @ b.T, lambda: tn.cat([a, b])):
        with pytest.raises(RuntimeError, match="same device"):
            op()
    layer = nn.LayerNorm(3)
    with pytest.raises(RuntimeError, match="same device"):
        layer(a)
    assert (a + 1.5).device == "cuda"  # Python numbers are fine, as in PyTorch


def test_implicit_host_conversions_of_cuda_tensors_are_errors():
    t = tn.ones(2, device="cuda")
    with pytest.raises(TypeError, match="cpu()"):
        t.numpy()
    with pytest.raises(TypeError, match="cpu()"):
        np.asarray(t)
    assert t.tolist() == [1.0, 1.0] and t.sum().item() == 2.0  # explicit, like PyTorch


def test_module_to_cuda_and_back_keeps_parameter_identity():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    weight = model[0].weight
    model.to("cuda")
    assert model[0].weight is weight and weight.device == "cuda"
    assert model[1].running_mean.device == "cuda"
    model.cpu()
    assert weight.device == "cpu" and isinstance(weight.data, np.ndarray)


def test_unknown_and_second_gpu_devices_raise():
    with pytest.raises(ValueError, match="unknown device"):
        tn.ones(2, device="tpu")
    with pytest.raises(ValueError, match="one GPU"):
        tn.ones(2, device="cuda:1")


def test_cuda_unavailable_says_what_to_install(monkeypatch):
    """Without the simulator and without a GPU stack, to("cuda") names the `cuda` extra."""
    try:
        import cupy  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("CuPy is installed here: the missing-package message cannot be shown")
    monkeypatch.setattr(device, "simulator", lambda: False)
    device._cuda_unavailable_reason.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"tinygrad_norm\[cuda\]"):
            tn.ones(2).to("cuda")
    finally:
        monkeypatch.undo()
        device._cuda_unavailable_reason.cache_clear()


def test_training_step_on_cuda_matches_cpu():
    """Linear -> BatchNorm1d -> ReLU -> Linear, cross-entropy, one SGD step: the same
    parameters afterwards on both devices."""
    rng = np.random.default_rng(2)
    x_np = rng.standard_normal((8, 5)).astype(np.float32)
    labels = tn.Tensor(rng.integers(0, 3, 8))
    results = []
    for device_name in ("cpu", "cuda"):
        tn.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
        model.to(device_name)
        optimizer = tn.optim.SGD(model.parameters(), lr=0.1)
        loss = nn.CrossEntropyLoss()(model(tn.Tensor(x_np, device=device_name)),
                                     labels.to(device_name))
        loss.backward()
        optimizer.step()
        results.append([p.detach().cpu().numpy() for p in model.parameters()])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=1e-5)


def test_layer_constructors_put_parameters_on_the_device():
    for layer in (nn.Linear(3, 2, device="cuda"), nn.Conv2d(1, 2, 3, device="cuda"),
                  nn.BatchNorm2d(2, device="cuda"), nn.LayerNorm(4, device="cuda")):
        assert {t.device for t in [*layer.parameters(), *layer.buffers()]} == {"cuda"}
