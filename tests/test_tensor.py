"""Tensor construction, dtypes, conversion and the clear errors PyTorch users expect."""

import numpy as np
import pytest
import torch

import tinygrad_norm as tn


def test_float_array_is_wrapped_without_copy():
    array = np.ones((2, 3), dtype=np.float64)
    t = tn.Tensor(array)
    assert np.shares_memory(t.data, array) and t.dtype == np.float64


def test_python_lists_get_torch_default_dtypes():
    assert tn.Tensor([1.0, 2.0]).dtype == np.float32
    assert tn.Tensor([1, 2]).dtype == np.int64
    assert tn.tensor([1.5]).dtype == torch.tensor([1.5]).numpy().dtype


def test_tensor_function_copies():
    array = np.ones(3, dtype=np.float32)
    t = tn.tensor(array)
    t.data[0] = 5
    assert array[0] == 1


def test_attributes():
    t = tn.zeros(2, 3, 4)
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.device == "cpu"
    assert t.dtype == np.float32 and t.numel() == 24 and t.size(1) == 3 and len(t) == 2


def test_constructors_accept_shape_tuples_and_dtypes():
    assert tn.ones((2, 3), dtype=np.float64).dtype == np.float64
    assert tn.randn(4, 5).shape == (4, 5)
    r = tn.rand(1000)
    assert 0 <= r.numpy().min() and r.numpy().max() < 1
    assert tn.arange(5).dtype == np.int64 and tn.arange(0.0, 1.0, 0.25).shape == (4,)
    assert tn.full((2,), 7.0).tolist() == [7.0, 7.0]


def test_manual_seed_repeats_random_draws():
    tn.manual_seed(3)
    a = tn.randn(5).numpy().copy()
    tn.manual_seed(3)
    assert np.array_equal(a, tn.randn(5).numpy())


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(RuntimeError, match="floating point"):
        tn.Tensor([1, 2], requires_grad=True)


def test_item_and_numpy_rules():
    assert tn.Tensor([3.5]).item() == 3.5
    with pytest.raises(RuntimeError, match="2 elements"):
        tn.Tensor([1.0, 2.0]).item()
    with pytest.raises(RuntimeError, match="detach"):
        tn.ones(2, requires_grad=True).numpy()


def test_to_dtype_is_differentiable_and_double_float():
    x = tn.ones(3, requires_grad=True)
    y = x.double()
    assert y.dtype == np.float64 and y.float().dtype == np.float32
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.tolist() == [2.0, 2.0, 2.0]
    assert x.to("cpu") is x and x.to(dtype=np.float32) is x


def test_unknown_and_unavailable_devices_raise():
    with pytest.raises(ValueError, match="unknown device"):
        tn.ones(2).to("tpu")
    with pytest.raises(ValueError, match="one GPU"):  # "cuda" itself: tests/test_cuda_device.py
        tn.ones(2, device="cuda:1")


def test_bad_reshape_and_dims_raise_clear_errors():
    x = tn.ones(2, 3)
    with pytest.raises(RuntimeError, match=r"shape \[4, 2\] is invalid for input of size 6"):
        x.reshape(4, 2)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.sum(dim=2)
    with pytest.raises(RuntimeError, match="size 5 at dim 1"):
        x.expand(2, 5)
    with pytest.raises(ValueError, match="exactly once"):
        x.permute(0, 0)


def test_comparisons_give_bool_tensors_outside_the_graph():
    x = tn.Tensor([1.0, 2.0, 3.0], requires_grad=True)
    mask = x > 1.5
    assert mask.dtype == np.bool_ and not mask.requires_grad
    assert (x.argmax() == 2).item()


def test_setitem_under_no_grad_and_refused_on_graph_leaf():
    x = tn.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        x[0] = 1.0
    with tn.no_grad():
        x[0] = 1.0
    assert x.tolist() == [1.0, 0.0, 0.0]


def test_numpy_array_on_the_left_defers_to_tensor():
    out = np.ones(3, dtype=np.float32) + tn.ones(3, requires_grad=True)
    assert isinstance(out, tn.Tensor) and out.requires_grad
