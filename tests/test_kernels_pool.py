"""2-d max and average pooling: the Numba kernels against the float64 reference and PyTorch
(forward, indices, backward) over a grid of every kernel/stride/padding/dilation/ceil_mode
combination, ties, NaN, -inf, the parallel drivers, PyTorch's argument rules; the framework's
F.max_pool2d/F.avg_pool2d (non-contiguous inputs, return_indices, gradcheck, the cuda device)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from backends import CUDA_REASON

import tinygrad_norm as tn
from kernels import cpu, reference
from tinygrad_norm.nn import functional as F

DTYPES = (np.float32, np.float64)
KERNELS = (1, 2, 3, (2, 3))
STRIDES = (1, 2, 3)
PADDINGS = (0, 1)
PLANES = ((5, 7), (1, 1), (4, 11), (2, 3))  # odd, prime and one-element planes


def _inputs(seed: int, plane: tuple) -> list:
    """Normal data, and small integers (ties in every window) with a NaN and -inf values."""
    rng = np.random.default_rng(seed)
    shape = (2, 3) + plane
    ties = rng.integers(0, 3, shape).astype(np.float64)
    ties.reshape(-1)[rng.integers(0, ties.size, 3)] = -np.inf
    ties.reshape(-1)[rng.integers(0, ties.size)] = np.nan
    return [rng.standard_normal(shape), ties]


def _torch_refuses(function, *args) -> bool:
    try:
        function(*args)
    except RuntimeError:
        return True
    return False


def _tolerance(dtype) -> dict:
    return dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_max_pool_matches_reference_and_pytorch(kernel, stride, padding, dilation, ceil_mode):
    args = (kernel, stride, padding, dilation, ceil_mode)
    for seed, plane in enumerate(PLANES):
        for x64 in _inputs(seed, plane):
            tx = torch.tensor(x64, requires_grad=True)
            if _torch_refuses(torch.nn.functional.max_pool2d, tx, *args):
                with pytest.raises(ValueError):
                    cpu.max_pool2d_forward(x64, *args)
                continue
            ty, t_indices = torch.nn.functional.max_pool2d(tx, *args, return_indices=True)
            dy = np.random.default_rng(seed).standard_normal(tuple(ty.shape))
            y_ref, i_ref = reference.max_pool2d_forward(x64, *args)
            # windows of padding only: PyTorch's index is off the plane, and its backward
            # writes there (heap corruption, so it is not run: ours skips index -1)
            empty = i_ref == -1
            assert np.all(ty.detach().numpy()[empty] == -np.inf)
            np.testing.assert_array_equal(i_ref[~empty], t_indices.numpy()[~empty])
            np.testing.assert_array_equal(y_ref, ty.detach().numpy())
            dx_ref = reference.max_pool2d_backward(dy, i_ref, plane)
            if not empty.any():
                ty.backward(torch.tensor(dy))
                np.testing.assert_allclose(dx_ref, tx.grad.numpy(), rtol=1e-13, atol=1e-13)
            for dtype in DTYPES:
                y, indices = cpu.max_pool2d_forward(x64.astype(dtype), *args)
                assert y.dtype == dtype and indices.dtype == np.int64
                np.testing.assert_array_equal(indices, i_ref)
                np.testing.assert_array_equal(y, y_ref.astype(dtype))
                dx = cpu.max_pool2d_backward(dy.astype(dtype), indices, plane)
                assert dx.dtype == dtype
                np.testing.assert_allclose(dx, dx_ref, **_tolerance(dtype))


AVG_DIVISORS = ((True, None), (False, None), (True, 3), (False, -2))  # count_include_pad, override


@pytest.mark.parametrize("count_include_pad, divisor_override", AVG_DIVISORS)
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_avg_pool_matches_reference_and_pytorch(kernel, stride, padding, ceil_mode,
                                                count_include_pad, divisor_override):
    args = (kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    for seed, plane in enumerate(PLANES):
        x64 = _inputs(seed, plane)[0]
        tx = torch.tensor(x64, requires_grad=True)
        if _torch_refuses(torch.nn.functional.avg_pool2d, tx, *args):
            with pytest.raises(ValueError):
                cpu.avg_pool2d_forward(x64, *args)
            continue
        ty = torch.nn.functional.avg_pool2d(tx, *args)
        dy = np.random.default_rng(seed).standard_normal(tuple(ty.shape))
        ty.backward(torch.tensor(dy))
        y_ref = reference.avg_pool2d_forward(x64, *args)
        dx_ref = reference.avg_pool2d_backward(dy, plane, *args)
        np.testing.assert_allclose(y_ref, ty.detach().numpy(), rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(dx_ref, tx.grad.numpy(), rtol=1e-13, atol=1e-14)
        for dtype in DTYPES:
            y = cpu.avg_pool2d_forward(x64.astype(dtype), *args)
            dx = cpu.avg_pool2d_backward(dy.astype(dtype), plane, *args)
            assert y.dtype == dx.dtype == dtype
            np.testing.assert_allclose(y, y_ref, **_tolerance(dtype))
            np.testing.assert_allclose(dx, dx_ref, **_tolerance(dtype))


def test_nan_and_tie_rules_are_pytorchs():
    """Among equal values the first in window order wins; a NaN always wins, the last one."""
    nan = np.nan
    x = np.array([[[[3.0, 3.0, 1.0, 3.0], [nan, 1.0, nan, 2.0], [-np.inf] * 4]]])
    y, indices = cpu.max_pool2d_forward(x, (1, 2), 1, 0, 1, False)
    _, t_indices = torch.nn.functional.max_pool2d(torch.tensor(x), (1, 2), 1,
                                                  return_indices=True)
    np.testing.assert_array_equal(indices, t_indices.numpy())
    np.testing.assert_array_equal(indices[0, 0], [[0, 1, 3], [4, 6, 6], [8, 9, 10]])
    row = np.ascontiguousarray(x[:, :, 1:2])  # [nan, 1, nan, 2]
    _, indices = cpu.max_pool2d_forward(row, (1, 4), 1, 0, 1, False)
    _, t_indices = torch.nn.functional.max_pool2d(torch.tensor(row), (1, 4), return_indices=True)
    assert indices[0, 0, 0, 0] == t_indices[0, 0, 0, 0] == 2  # the last NaN


@pytest.mark.parametrize("dtype", DTYPES)
def test_parallel_drivers_match_the_reference(dtype):
    """(4, 8, 48, 48) is above SERIAL_MAX_ELEMENTS: the prange drivers run."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 8, 48, 48)).astype(dtype)
    y, indices = cpu.max_pool2d_forward(x, 3, 2, 1, 1, True)
    y_ref, i_ref = reference.max_pool2d_forward(x, 3, 2, 1, 1, True)
    np.testing.assert_array_equal(indices, i_ref)
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(cpu.max_pool2d_backward(dy, indices, (48, 48)),
                               reference.max_pool2d_backward(dy, i_ref, (48, 48)),
                               **_tolerance(dtype))
    args = (3, 2, 1, True, False, None)
    np.testing.assert_allclose(cpu.avg_pool2d_forward(x, *args),
                               reference.avg_pool2d_forward(x, *args), **_tolerance(dtype))
    np.testing.assert_allclose(cpu.avg_pool2d_backward(dy, (48, 48), *args),
                               reference.avg_pool2d_backward(dy, (48, 48), *args),
                               **_tolerance(dtype))


def test_an_empty_batch_gives_empty_results():
    x = np.zeros((0, 3, 4, 4), np.float32)
    y, indices = cpu.max_pool2d_forward(x, 2, None, 0, 1, False)
    assert y.shape == indices.shape == (0, 3, 2, 2)
    assert cpu.max_pool2d_backward(y, indices, (4, 4)).shape == x.shape
    assert cpu.avg_pool2d_backward(y, (4, 4), 2, None, 0, False, True, None).shape == x.shape


X = np.zeros((1, 2, 5, 5), np.float32)
BAD_MAX = [  # (arguments after x, the argument the error must name)
    ((0, 1, 0, 1, False), "kernel_size"),
    (((2, 2, 2), 1, 0, 1, False), "kernel_size"),
    ((2.0, 1, 0, 1, False), "kernel_size"),
    ((True, 1, 0, 1, False), "kernel_size"),
    ((2, 0, 0, 1, False), "stride"),
    ((2, (1, -1), 0, 1, False), "stride"),
    ((2, 1, -1, 1, False), "padding"),
    ((3, 1, 2, 1, False), "padding"),  # more than half the kernel
    ((3, 1, 2, 2, False), "padding"),  # ... even when dilated (PyTorch 2.13's rule)
    ((2, 1, 0, 0, False), "dilation"),
    ((2, 1, 0, 1, 1), "ceil_mode"),
    ((6, 1, 0, 1, False), "kernel_size"),  # output size 0
    ((3, 1, 0, 3, False), "dilation"),  # the dilated kernel does not fit
]


@pytest.mark.parametrize("args, name", BAD_MAX)
def test_bad_pooling_arguments_are_refused_naming_the_argument(args, name):
    with pytest.raises((TypeError, ValueError), match=name):
        cpu.max_pool2d_forward(X, *args)
    with pytest.raises((TypeError, ValueError), match=name):
        reference.max_pool2d_forward(X, *args)
    if args[3] == 1 and name != "dilation":
        avg = (*args[:3], args[4], True, None)
        with pytest.raises((TypeError, ValueError), match=name):
            cpu.avg_pool2d_forward(X, *avg)


def test_bad_avg_and_backward_arguments_are_refused():
    with pytest.raises(ValueError, match="divisor_override"):
        cpu.avg_pool2d_forward(X, 2, 1, 0, False, True, 0)
    with pytest.raises(TypeError, match="count_include_pad"):
        cpu.avg_pool2d_forward(X, 2, 1, 0, False, None, None)
    with pytest.raises(ValueError, match="dy"):  # dy is not the output of input_size's pooling
        cpu.avg_pool2d_backward(np.zeros((1, 2, 3, 3), np.float32), (5, 5), 2, 2, 0, False,
                                True, None)
    y, indices = cpu.max_pool2d_forward(X, 2, 2, 0, 1, False)
    with pytest.raises(TypeError, match="input_size"):
        cpu.max_pool2d_backward(y, indices, 5)
    with pytest.raises(ValueError, match="input_size"):
        cpu.max_pool2d_backward(y, indices, (0, 5))
    with pytest.raises(TypeError, match="indices"):
        cpu.max_pool2d_backward(y, indices.astype(np.int32), (5, 5))
    for bad in (25, -2):  # outside the plane: refused, nothing written outside dx
        wrong = indices.copy()
        wrong[0, 1, 1, 0] = bad
        with pytest.raises(ValueError, match="indices"):
            cpu.max_pool2d_backward(y, wrong, (5, 5))


# ---------------------------------------------------------------- the framework


def _strided(shape: tuple, seed: int) -> np.ndarray:
    """A non-contiguous float64 view: every other column of a wider array."""
    wide = np.random.default_rng(seed).standard_normal(shape[:-1] + (2 * shape[-1],))
    return wide[..., ::2]


@pytest.mark.parametrize("dtype", DTYPES)
def test_framework_pools_noncontiguous_inputs_as_pytorch(dtype):
    data = _strided((2, 3, 7, 6), 3).astype(dtype)[:, :, ::-1]  # negative strides too
    assert not data.flags.c_contiguous
    cases = [
        (lambda f, x: f.max_pool2d(x, 3, 2, 1, ceil_mode=True)),
        (lambda f, x: f.max_pool2d(x, (2, 3), (1, 2), (1, 0), (2, 1))),
        (lambda f, x: f.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)),
        (lambda f, x: f.avg_pool2d(x, 2, 1, 1, divisor_override=3)),
    ]
    for pool in cases:
        x = tn.Tensor(data, requires_grad=True)
        y = pool(F, x)
        tx = torch.tensor(data.copy(), requires_grad=True)
        ty = pool(torch.nn.functional, tx)
        upstream = np.random.default_rng(0).standard_normal(tuple(ty.shape)).astype(dtype)
        y.backward(tn.Tensor(upstream))
        ty.backward(torch.tensor(upstream))
        np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), **_tolerance(dtype))
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), **_tolerance(dtype))


def test_framework_return_indices_and_unbatched_inputs_as_pytorch():
    data = _inputs(4, (7, 5))[1][0]  # (3, 7, 5), unbatched, with ties, NaN and -inf
    y, indices = F.max_pool2d(tn.Tensor(data), 2, 1, 1, return_indices=True)
    ty, t_indices = torch.nn.functional.max_pool2d(torch.tensor(data), 2, 1, 1,
                                                   return_indices=True)
    np.testing.assert_array_equal(indices.numpy(), t_indices.numpy())
    np.testing.assert_array_equal(y.numpy(), ty.numpy())
    layer_y, layer_indices = tn.nn.MaxPool2d(2, 1, 1, return_indices=True)(tn.Tensor(data))
    np.testing.assert_array_equal(layer_indices.numpy(), t_indices.numpy())


def test_framework_uses_the_kernels_on_the_cpu_device(monkeypatch):
    calls = []

    def spy(name: str, kernel):
        def record(*args):
            calls.append(name)
            return kernel(*args)
        return record

    for name in ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
                 "avg_pool2d_backward"):
        monkeypatch.setattr(cpu, name, spy(name, getattr(cpu, name)))
    x = tn.Tensor(np.ones((1, 1, 4, 4), np.float32), requires_grad=True)
    (tn.nn.MaxPool2d(2)(x).sum() + tn.nn.AvgPool2d(2)(x).sum()).backward()
    assert sorted(calls) == ["avg_pool2d_backward", "avg_pool2d_forward",
                             "max_pool2d_backward", "max_pool2d_forward"]


GRADCHECK = [
    (lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True)),
    (lambda x: F.max_pool2d(x, 2, 1, 0, dilation=(2, 1))),  # overlapping windows
    (lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)),
    (lambda x: F.avg_pool2d(x, (2, 3), 1, (1, 1), divisor_override=2)),
]


@pytest.mark.parametrize("pool", GRADCHECK)
def test_gradcheck(pool):
    # distinct values far apart: no finite-difference step changes which element is the max
    data = np.random.default_rng(7).permutation(2 * 3 * 6 * 5).reshape(2, 3, 6, 5) * 0.1
    assert tn.gradcheck(pool, (tn.Tensor(data, requires_grad=True),))


def test_framework_refuses_what_pytorch_refuses():
    x = tn.Tensor(np.zeros((1, 1, 6, 6)))
    with pytest.raises(ValueError, match="pad"):  # dilation does not widen PyTorch's limit
        F.max_pool2d(x, 3, 1, 2, dilation=2)
    assert _torch_refuses(torch.nn.functional.max_pool2d, torch.zeros(1, 1, 6, 6), 3, 1, 2, 2)


@pytest.mark.skipif(CUDA_REASON is not None, reason=f"no CUDA device or simulator: {CUDA_REASON}")
def test_cuda_device_keeps_its_path_and_agrees_with_the_kernels():
    data = _inputs(2, (6, 7))[0]
    for pool in GRADCHECK:
        on_cpu = pool(tn.Tensor(data)).numpy()
        on_cuda = pool(tn.Tensor(data).to("cuda"))
        assert on_cuda.device == "cuda"
        np.testing.assert_allclose(on_cuda.to("cpu").numpy(), on_cpu, rtol=1e-12, atol=1e-13)
    indices = [F.max_pool2d(tn.Tensor(data).to(device), 2, 1, 1, return_indices=True)[1]
               for device in ("cpu", "cuda")]
    np.testing.assert_array_equal(*(np.asarray(i.to("cpu").numpy()) for i in indices))
