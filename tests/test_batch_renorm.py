"""Batch Renormalization (Ioffe 2017): the Numba kernels against the float64 reference, the
layer against the paper's Algorithm 1 written in PyTorch (r and d detached), gradcheck where
the clipping holds r and d constant, the rmax/dmax schedule, BatchNorm as the special case
rmax = 1, dmax = 0, and clear errors."""

import numpy as np
import pytest
import torch

import kernels.cpu as cpu
import tinygrad_norm as tn
from kernels import reference
from kernels.cpu.stats import SERIAL_MAX_ELEMENTS
from tinygrad_norm import nn
from tinygrad_norm.nn.batch_renorm import renorm_limits

TOL = {np.float32: dict(rtol=2e-5, atol=5e-5), np.float64: dict(rtol=1e-10, atol=1e-11)}
SHAPES = [(2, 3, 1), (5, 4, 7), (64, 4, 300)]  # S = 1, small, above the parallel threshold
assert np.prod(SHAPES[-1]) > SERIAL_MAX_ELEMENTS


def arrays(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    running_mean = rng.standard_normal(channels).astype(dtype)
    running_var = rng.uniform(0.3, 8, channels).astype(dtype)  # some r clip, some do not
    weight = rng.uniform(0.5, 1.5, channels).astype(dtype)
    bias = rng.standard_normal(channels).astype(dtype)
    return x, running_mean, running_var, weight, bias, rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_kernels_match_the_float64_reference(shape, dtype):
    x, rm, rv, w, b, dy = arrays(shape, dtype)
    ours = cpu.batch_renorm_forward_train(x, rm, rv, w, b, 1e-5, 1.5, 0.3)
    expected = reference.batch_renorm_forward_train(x, rm, rv, w, b, 1e-5, 1.5, 0.3)
    for i, (a, e) in enumerate(zip(ours, expected)):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, e, err_msg=f"forward output {i}", **TOL[dtype])
    _, mean, inv_std, _, r, d = ours
    grads = cpu.batch_renorm_backward(dy, x, mean, inv_std, r, d, w)
    expected = reference.batch_renorm_backward(dy, x, mean, inv_std, r, d, w)
    for i, (a, e) in enumerate(zip(grads, expected)):
        np.testing.assert_allclose(a, e, err_msg=f"backward output {i}", **TOL[dtype])


def test_rmax_one_dmax_zero_is_batch_norm():
    x, rm, rv, w, b, dy = arrays((5, 4, 7), np.float64)
    renorm = cpu.batch_renorm_forward_train(x, rm, rv, w, b, 1e-5, 1.0, 0.0)
    plain = cpu.batch_norm_forward_train(x, w, b, 1e-5)
    np.testing.assert_allclose(renorm[0], plain[0], **TOL[np.float64])
    np.testing.assert_array_equal(renorm[4], 1.0)
    np.testing.assert_array_equal(renorm[5], 0.0)


def torch_batch_renorm(x, running_mean, running_var, weight, bias, rmax, dmax, momentum, eps):
    """Ioffe (2017), Algorithm 1, for (N, C, H, W); updates the running buffers in place."""
    dims = (0, 2, 3)
    mean = x.mean(dims)
    var = x.var(dims, unbiased=False)
    sigma_batch = (var + eps).sqrt()
    sigma = (running_var + eps).sqrt()
    r = (sigma_batch / sigma).clamp(1 / rmax, rmax).detach()
    d = ((mean - running_mean) / sigma).clamp(-dmax, dmax).detach()
    shape = (1, -1, 1, 1)
    xhat = (x - mean.view(shape)) / sigma_batch.view(shape) * r.view(shape) + d.view(shape)
    n = x.numel() / x.shape[1]
    with torch.no_grad():
        running_mean += momentum * (mean - running_mean)
        running_var += momentum * (var * n / (n - 1) - running_var)
    return xhat * weight.view(shape) + bias.view(shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_matches_algorithm_1_in_pytorch_over_steps_and_in_eval(dtype):
    layer = nn.BatchRenorm2d(3, momentum=0.3, rmax=1.5, dmax=0.5).to(dtype)
    rng = np.random.default_rng(1)
    weight = torch.tensor(rng.uniform(0.5, 1.5, 3).astype(dtype), requires_grad=True)
    bias = torch.tensor(rng.standard_normal(3).astype(dtype), requires_grad=True)
    layer.weight.data[...] = weight.detach().numpy()
    layer.bias.data[...] = bias.detach().numpy()
    running_mean = torch.zeros(3, dtype=weight.dtype)
    running_var = torch.ones(3, dtype=weight.dtype)
    tol = TOL[dtype]
    for step in range(4):
        x = (rng.standard_normal((4, 3, 3, 2)) * (1 + step) + step).astype(dtype)
        ours_x, theirs_x = tn.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        ours = layer(ours_x)
        theirs = torch_batch_renorm(theirs_x, running_mean, running_var, weight, bias, 1.5, 0.5,
                                    0.3, 1e-5)
        np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), **tol)
        g = rng.standard_normal(x.shape).astype(dtype)
        layer.zero_grad()
        weight.grad = bias.grad = None
        ours.backward(g)
        theirs.backward(torch.from_numpy(g))
        np.testing.assert_allclose(ours_x.grad.numpy(), theirs_x.grad.numpy(), **tol)
        np.testing.assert_allclose(layer.weight.grad.numpy(), weight.grad.numpy(), **tol)
        np.testing.assert_allclose(layer.bias.grad.numpy(), bias.grad.numpy(), **tol)
        np.testing.assert_allclose(layer.running_mean.numpy(), running_mean.numpy(), **tol)
        np.testing.assert_allclose(layer.running_var.numpy(), running_var.numpy(), **tol)
    assert int(layer.num_batches_tracked.data) == 4
    layer.eval()
    x = rng.standard_normal((2, 3, 2, 2)).astype(dtype)
    expected = torch.nn.functional.batch_norm(torch.tensor(x), running_mean, running_var,
                                              weight.detach(), bias.detach(), False)
    np.testing.assert_allclose(layer(tn.Tensor(x)).detach().numpy(), expected.numpy(), **tol)


@pytest.mark.parametrize("make, shape", [(lambda: nn.BatchRenorm1d(3, rmax=2, dmax=0.5), (6, 3)),
                                         (lambda: nn.BatchRenorm2d(2, rmax=2, dmax=0.5),
                                          (3, 2, 2, 2))])
def test_layer_passes_gradcheck_where_r_and_d_are_clipped(make, shape):
    """r and d are constants of the gradient; they are constants of the function too once both
    clip, so there the finite differences must agree with backward."""
    layer = make().double()
    layer.running_mean.data[...] = 20.0  # |mu_B - mu| / sigma ~ 20/10 > dmax: d clips
    layer.running_var.data[...] = 100.0  # sigma_B / sigma ~ 0.1 < 1/rmax: r clips
    layer.momentum = 1e-12  # the running statistics stay put between gradcheck's evaluations
    rng = np.random.default_rng(2)
    for p in layer.parameters():
        p.data[...] = rng.uniform(0.5, 1.5, p.shape)
    x = tn.Tensor(rng.uniform(-2, 2, shape), requires_grad=True)
    assert tn.gradcheck(lambda x, *params: layer(x), (x, *layer.parameters()))
    out = cpu.batch_renorm_forward_train(x.data.reshape(shape[0], shape[1], -1).copy(),
                                         layer.running_mean.data, layer.running_var.data,
                                         None, None, 1e-5, 2.0, 0.5)
    np.testing.assert_allclose(out[4], 0.5)  # r = 1/rmax
    np.testing.assert_allclose(out[5], -0.5)  # d = -dmax


def test_schedule_starts_as_batch_norm_and_ramps_linearly():
    kwargs = dict(rmax=3.0, dmax=5.0, warmup_steps=10, rmax_ramp_steps=40, dmax_ramp_steps=25)
    assert renorm_limits(0, **kwargs) == (1.0, 0.0)
    assert renorm_limits(9, **kwargs) == (1.0, 0.0)
    assert renorm_limits(30, **kwargs) == (2.0, 4.0)
    assert renorm_limits(1000, **kwargs) == (3.0, 5.0)
    layer = nn.BatchRenorm1d(2, warmup_steps=1, rmax_ramp_steps=2, dmax_ramp_steps=2)
    assert layer.current_limits() == (1.0, 0.0)
    layer(tn.randn(4, 2))
    assert layer.current_limits() == (1.0, 0.0)
    layer(tn.randn(4, 2))
    assert layer.current_limits() == (2.0, 2.5)


@pytest.mark.parametrize("call, error, message", [
    (lambda: nn.BatchRenorm1d(3)(tn.randn(1, 3)), ValueError, "more than 1 value"),
    (lambda: nn.BatchRenorm2d(3)(tn.randn(2, 4, 2, 2)), RuntimeError, "input has 4 channels"),
    (lambda: nn.BatchRenorm2d(3)(tn.randn(2, 3, 2)), ValueError, "4D"),
    (lambda: nn.BatchRenorm1d(3, rmax=0.5), ValueError, "rmax >= 1"),
    (lambda: nn.BatchRenorm1d(3, momentum=None), ValueError, "momentum"),
    (lambda: cpu.batch_renorm_forward_train(np.ones((2, 3, 1)), np.zeros(3), np.ones(2), None,
                                            None, 1e-5, 2.0, 1.0), ValueError, "running_var"),
    (lambda: cpu.batch_renorm_forward_train(np.ones((2, 3, 1), np.float32), np.zeros(3),
                                            np.ones(3), None, None, 1e-5, 2.0, 1.0), TypeError,
     "dtype of x"),
    (lambda: cpu.batch_renorm_forward_train(np.ones((2, 3, 1)), np.zeros(3), np.ones(3), None,
                                            None, 1e-5, 2.0, -1.0), ValueError, "dmax"),
])
def test_bad_input_raises_before_any_kernel(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_float32_large_offset_stays_accurate():
    """x = 1e4 + 0.01·N(0, 1): the statistics are shifted and kept in float64 between the
    passes, so the output is as accurate as the data allows (BatchNorm's guarantee)."""
    rng = np.random.default_rng(3)
    x = (1e4 + 0.01 * rng.standard_normal((16, 3, 25))).astype(np.float32)
    running_mean = np.full(3, 1e4, np.float32)
    running_var = np.full(3, 1e-4, np.float32)
    ours = cpu.batch_renorm_forward_train(x, running_mean, running_var, None, None, 1e-8, 2.0,
                                          1.0)[0]
    expected = reference.batch_renorm_forward_train(x, running_mean, running_var, None, None,
                                                    1e-8, 2.0, 1.0)[0]
    np.testing.assert_allclose(ours, expected, atol=2e-3)
