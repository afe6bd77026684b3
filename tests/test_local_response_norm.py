"""LocalResponseNorm: the Numba kernels against the float64 reference, the reference against
PyTorch, F.local_response_norm and nn.LocalResponseNorm against PyTorch on random
configurations, gradcheck, and PyTorch's argument rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from parity import check_op

import tinygrad_norm as tn
from kernels import cpu, reference
from tinygrad_norm import nn
from tinygrad_norm.nn import functional as F

# (N, C, S), size: odd and even windows, a window wider than C, one channel; the last shape
# is above the serial threshold, so the parallel drivers run
CASES = [((2, 6, 5), 3), ((3, 5, 4), 2), ((1, 4, 3), 9), ((2, 1, 7), 1), ((4, 16, 2048), 5)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, size", CASES)
def test_kernels_match_the_float64_reference(shape, size, dtype):
    rng = np.random.default_rng(1)
    x = (2 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    args = (size, 0.3, 0.6, 1.5)
    y, scale = cpu.local_response_norm_forward(x, *args)
    y_ref, scale_ref = reference.local_response_norm_forward(x, *args)
    dx = cpu.local_response_norm_backward(dy, x, scale, *args[:3])
    dx_ref = reference.local_response_norm_backward(dy, x, scale_ref, *args[:3])
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    assert y.dtype == scale.dtype == dx.dtype == dtype
    np.testing.assert_allclose(scale, scale_ref, **tol)
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_allclose(dx, dx_ref, **tol)


def test_reference_matches_pytorch():
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((2, 7, 4)), rng.standard_normal((2, 7, 4))
    for size in (1, 2, 3, 4, 10):
        y, scale = reference.local_response_norm_forward(x, size, 0.5, 0.8, 0.7)
        dx = reference.local_response_norm_backward(dy, x, scale, size, 0.5, 0.8)
        tx = torch.tensor(x, requires_grad=True)
        ty = torch.nn.functional.local_response_norm(tx, size, 0.5, 0.8, 0.7)
        ty.backward(torch.tensor(dy))
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("seed", range(6))
def test_functional_matches_pytorch_on_random_configurations(seed):
    rng = np.random.default_rng(seed)
    ndim = int(rng.integers(3, 6))
    shape = tuple(int(v) for v in rng.integers(1, 5, ndim))
    size = int(rng.integers(1, 7))
    alpha, beta, k = float(rng.uniform(1e-4, 2)), float(rng.uniform(0.1, 1.5)), \
        float(rng.uniform(0.5, 2))
    dtype = np.float32 if seed % 2 else np.float64
    check_op([shape], lambda x: torch.nn.functional.local_response_norm(x, size, alpha, beta, k),
             lambda x: F.local_response_norm(x, size, alpha, beta, k), dtype=dtype)


def test_module_matches_pytorch_and_has_no_state():
    ours, theirs = nn.LocalResponseNorm(3, 1e-2, 0.5, 2.0), torch.nn.LocalResponseNorm(
        3, 1e-2, 0.5, 2.0)
    assert repr(ours) == repr(theirs)
    assert ours.state_dict() == {} and list(ours.parameters()) == []
    check_op([(2, 5, 3, 3)], theirs, ours)


def test_gradcheck():
    x = tn.randn(2, 5, 3, dtype=np.float64, requires_grad=True)
    assert tn.gradcheck(lambda x: F.local_response_norm(x, 3, alpha=0.7, beta=0.9, k=1.1), (x,))


def test_pytorchs_argument_rules():
    x = tn.randn(2, 4, 5)
    with pytest.raises(ValueError, match="3D or higher"):
        F.local_response_norm(tn.randn(4, 5), 2)
    with pytest.raises(RuntimeError, match="greater than zero"):
        F.local_response_norm(x, 0)
    for bad in (2.0, True, None):
        with pytest.raises(TypeError, match="size must be an int"):
            F.local_response_norm(x, bad)
    with pytest.raises(TypeError, match="alpha must be a real number"):
        F.local_response_norm(x, 2, alpha="a")
    empty = tn.randn(0, 4, 5)
    assert F.local_response_norm(empty, 0) is empty  # PyTorch returns the empty input itself
    # any real alpha/beta/k computes, numpy scalars and bools included, as in PyTorch
    x64 = np.random.default_rng(3).standard_normal((2, 4, 5))
    for kwargs in (dict(alpha=-1.0), dict(k=0.0), dict(k=np.float32(2)), dict(alpha=True)):
        y = F.local_response_norm(tn.Tensor(x64), 2, **kwargs)
        expected = torch.nn.functional.local_response_norm(torch.from_numpy(x64), 2, **kwargs)
        np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-10, equal_nan=True)
