"""The elementwise activation kernels (ReLU and sigmoid both ways, tanh backward): against the
float64 spec (kernels/reference.py), against PyTorch through the framework ops, by finite
differences, and PyTorch's NaN rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kernels.cpu as cpu
import tinygrad_norm as tn
from kernels import reference

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-6, atol=1e-7), np.float64: dict(rtol=1e-14, atol=1e-15)}
SIZES = [1, 7, 97, 70001]  # 70001 > 65536: the parallel drivers
OPS = ["relu", "sigmoid", "tanh"]


def _values(size, dtype, seed=0):
    return np.asarray(4 * np.random.default_rng(seed).standard_normal(size), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_kernels_match_the_reference(size, dtype):
    x, dy = _values(size, dtype), _values(size, dtype, seed=1)
    y = cpu.sigmoid_forward(x)
    np.testing.assert_allclose(y, reference.sigmoid_forward(x), **TOL[dtype])
    np.testing.assert_allclose(cpu.sigmoid_backward(dy, y), reference.sigmoid_backward(dy, y),
                               **TOL[dtype])
    t = np.tanh(x)
    np.testing.assert_allclose(cpu.tanh_backward(dy, t), reference.tanh_backward(dy, t),
                               **TOL[dtype])
    r = cpu.relu_forward(x)
    np.testing.assert_array_equal(r, reference.relu_forward(x))
    np.testing.assert_array_equal(cpu.relu_backward(dy, r), reference.relu_backward(dy, r))


def test_sigmoid_keeps_relative_precision_far_out():
    x = np.array([-80.0, -30.0, 30.0, 80.0, np.inf, -np.inf, np.nan], np.float32)
    y = cpu.sigmoid_forward(x)
    np.testing.assert_allclose(y, reference.sigmoid_forward(x), rtol=1e-6)
    np.testing.assert_allclose(y, torch.sigmoid(torch.from_numpy(x)).numpy(), rtol=1e-6)
    assert y[0] > 0  # exp(-80) = 1.8e-35 is a normal float32 number, not a rounded-away 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(1,), (3, 5, 7), (2, 3, 4, 5)])
def test_framework_ops_match_torch(op, shape, dtype):
    x = _values(shape, dtype)
    x.reshape(-1)[0] = 0.0  # ReLU's kink: gradient 0, as PyTorch
    upstream = _values(shape, dtype, seed=2)
    ours = tn.Tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    out, want = getattr(ours, op)(), getattr(torch, op)(theirs)
    out.backward(tn.Tensor(upstream))
    want.backward(torch.from_numpy(upstream))
    np.testing.assert_allclose(out.detach().numpy(), want.detach().numpy(), **TOL[dtype])
    # near saturation 1 - y^2 amplifies a 1-ulp difference between np.tanh and torch.tanh
    # to |dy|·2·ulp(1) absolute: ~1e-6 in float32, relative 1e-13 in float64
    grad_tol = dict(rtol=2e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), **grad_tol)


@pytest.mark.parametrize("op", OPS)
def test_non_contiguous_input_and_broadcast_gradient(op):
    x = _values((4, 6), np.float64).T  # a transposed view
    ours, theirs = tn.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    getattr(ours, op)().sum().backward()  # the gradient arrives broadcast (zero strides)
    getattr(torch, op)(theirs).sum().backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_nan_and_signed_zero_rules_are_pytorch_s(dtype):
    """relu passes NaN and -0.0 on (np.maximum(-0.0, 0) is +0.0); threshold_backward: a NaN
    input passes its gradient, a NaN gradient at a negative input gives 0."""
    x = np.array([np.nan, -1.0, 2.0, 0.0, -0.0], dtype)
    upstream = np.array([5.0, np.nan, 7.0, 3.0, 4.0], dtype)
    ours, theirs = tn.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, want = ours.relu(), torch.relu(theirs)
    np.testing.assert_array_equal(out.detach().numpy(), want.detach().numpy())
    np.testing.assert_array_equal(np.signbit(out.detach().numpy()),
                                  np.signbit(want.detach().numpy()))
    out.backward(tn.Tensor(upstream))
    want.backward(torch.from_numpy(upstream))
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())


@pytest.mark.parametrize("op", OPS)
def test_gradcheck(op):
    x = tn.Tensor(_values((3, 4), np.float64) + 0.01, requires_grad=True)  # away from 0
    assert tn.gradcheck(lambda t: getattr(t, op)(), (x,))


@pytest.mark.parametrize("name", ["relu_backward", "sigmoid_backward", "tanh_backward"])
def test_bad_arguments_name_the_argument(name):
    y = _values(5, np.float32)
    kernel = getattr(cpu, name)
    with pytest.raises(ValueError, match="y must be 1-D"):
        kernel(y.reshape(1, 5), y.reshape(1, 5))
    with pytest.raises(ValueError, match="dy must have shape"):
        kernel(y[:4].copy(), y)
    with pytest.raises(TypeError, match="dy must have the dtype of x"):
        kernel(y.astype(np.float64), y)
    for forward in (cpu.sigmoid_forward, cpu.relu_forward):
        with pytest.raises(ValueError, match="x must be C-contiguous"):
            forward(np.repeat(y, 2)[::2])
        with pytest.raises(ValueError, match="x must be 1-D"):
            forward(y.reshape(1, 5))
