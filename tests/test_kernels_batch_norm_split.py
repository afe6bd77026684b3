"""BatchNorm's split entry points (statistics, apply, gradient sums, input gradient: the
kernels SyncBatchNorm runs) against the float64 reference, on the serial and the parallel
path, float32 and float64; their composition against the fused training kernels; float32
accuracy at a large offset; and bad arguments refused before any kernel runs."""

import numpy as np
import pytest

import kernels.cpu as cpu
from kernels import reference
from kernels.cpu.stats import SERIAL_MAX_ELEMENTS

TOL = {np.float32: dict(rtol=2e-5, atol=5e-5), np.float64: dict(rtol=1e-11, atol=1e-12)}
# (N, C, S): one value per plane, odd sizes, and one above the parallel threshold
SHAPES = [(2, 3, 1), (5, 6, 7), (64, 128, 1), (37, 12, 151)]
assert max(np.prod(s) for s in SHAPES) > SERIAL_MAX_ELEMENTS


def _data(shape, dtype, seed=0, offset=0.5):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 1.5 + offset).astype(dtype)


def _affine(channels, dtype):
    rng = np.random.default_rng(1)
    return (rng.uniform(0.5, 1.5, channels).astype(dtype),
            rng.standard_normal(channels).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_split_batch_norm_kernels_match_reference(shape, dtype):
    x, dy = _data(shape, dtype), _data(shape, dtype, seed=2, offset=0)
    weight, bias = _affine(shape[1], dtype)
    tol = TOL[dtype]
    mean, var = cpu.batch_norm_statistics(x)
    assert mean.dtype == var.dtype == np.float64
    ref_mean, ref_var = reference.batch_norm_statistics(x)
    np.testing.assert_allclose(mean, ref_mean, **tol)
    np.testing.assert_allclose(var, ref_var, **tol)
    # from here on both sides get the same (reference) statistics
    inv_std = 1.0 / np.sqrt(ref_var + 1e-5)
    y = cpu.batch_norm_apply(x, ref_mean, inv_std, weight, bias)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, reference.batch_norm_apply(x, ref_mean, inv_std, weight, bias),
                               **tol)
    sums = cpu.batch_norm_gradient_sums(dy, x, ref_mean)
    ref_sums = reference.batch_norm_gradient_sums(dy, x, ref_mean)
    # sums of n terms of size ~1.5: the float32 rounding of the inputs alone is ~1e-7·sqrt(n)
    for ours, expected in zip(sums, ref_sums):
        assert ours.dtype == np.float64
        np.testing.assert_allclose(ours, expected, rtol=tol["rtol"], atol=tol["atol"] * 100)
    # global sums from a larger, made-up batch: the kernel must use them, not x's own
    count = 3 * shape[0] * shape[2]
    sum_dy, sum_dy_xmu = ref_sums[0] * 2.5 + 1.0, ref_sums[1] * 0.5 - 2.0
    dx = cpu.batch_norm_input_gradient(dy, x, ref_mean, inv_std, weight, sum_dy, sum_dy_xmu,
                                       count)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, reference.batch_norm_input_gradient(
        dy, x, ref_mean, inv_std, weight, sum_dy, sum_dy_xmu, count), **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_kernels_compose_to_the_fused_training_kernels(dtype):
    """statistics -> apply and gradient_sums -> input_gradient over x's own sums are the
    training forward and backward, so SyncBatchNorm with one process is BatchNorm."""
    shape, eps = (37, 12, 151), 1e-5
    x, dy = _data(shape, dtype), _data(shape, dtype, seed=2, offset=0)
    weight, bias = _affine(shape[1], dtype)
    y, mean, inv_std, var = cpu.batch_norm_forward_train(x, weight, bias, eps)
    dx, dweight, dbias = cpu.batch_norm_backward(dy, x, mean, inv_std, weight)
    split_mean, split_var = cpu.batch_norm_statistics(x)
    split_inv_std = 1.0 / np.sqrt(split_var + eps)
    tol = TOL[dtype]
    np.testing.assert_allclose(cpu.batch_norm_apply(x, split_mean, split_inv_std, weight, bias),
                               y, **tol)
    sum_dy, sum_dy_xmu = cpu.batch_norm_gradient_sums(dy, x, split_mean)
    np.testing.assert_allclose(sum_dy, dbias, rtol=tol["rtol"], atol=tol["atol"] * 100)
    np.testing.assert_allclose(sum_dy_xmu * split_inv_std, dweight, rtol=tol["rtol"],
                               atol=tol["atol"] * 100)
    split_dx = cpu.batch_norm_input_gradient(dy, x, split_mean, split_inv_std, weight, sum_dy,
                                             sum_dy_xmu, shape[0] * shape[2])
    np.testing.assert_allclose(split_dx, dx, **tol)


def test_float32_statistics_and_apply_keep_precision_at_a_large_offset():
    """x = 1e4 + 0.01·N(0,1) in float32: the float64 statistics and the shifted apply stay
    within 1e-4 (normalized units) of the float64 reference on the same float32 input."""
    rng = np.random.default_rng(3)
    x = (1e4 + 0.01 * rng.standard_normal((16, 4, 300))).astype(np.float32)
    mean, var = cpu.batch_norm_statistics(x)
    ref_mean, ref_var = reference.batch_norm_statistics(x)
    np.testing.assert_allclose(var, ref_var, rtol=1e-6)
    inv_std = 1.0 / np.sqrt(var + 1e-5)
    y = cpu.batch_norm_apply(x, mean, inv_std, None, None)
    expected = reference.batch_norm_apply(x, ref_mean, 1.0 / np.sqrt(ref_var + 1e-5), None, None)
    assert np.abs(y - expected).max() < 1e-4


def test_empty_input_has_zero_statistics_and_sums():
    x = np.empty((0, 3, 5), np.float32)
    for arrays in (cpu.batch_norm_statistics(x), reference.batch_norm_statistics(x),
                   cpu.batch_norm_gradient_sums(x, x, np.zeros(3))):
        for array in arrays:
            np.testing.assert_array_equal(array, np.zeros(3))
    ones = np.ones(3)
    assert cpu.batch_norm_apply(x, ones, ones, None, None).shape == x.shape
    assert cpu.batch_norm_input_gradient(x, x, ones, ones, None, ones, ones, 7).shape == x.shape


def test_nan_stays_in_its_channel():
    x = _data((4, 3, 5), np.float64)
    x[1, 1, 2] = np.nan
    mean, var = cpu.batch_norm_statistics(x)
    assert np.isnan(mean[1]) and np.isfinite(mean[[0, 2]]).all()
    y = cpu.batch_norm_apply(x, mean, 1.0 / np.sqrt(var + 1e-5), None, None)
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2]]).all()


@pytest.mark.parametrize("call, message", [
    (lambda x, v: cpu.batch_norm_statistics(x[0]), "must be 3-D"),
    (lambda x, v: cpu.batch_norm_apply(x, v.astype(np.float32), v, None, None), "mean"),
    (lambda x, v: cpu.batch_norm_apply(x, v[:2], v, None, None), r"mean must have shape \(3,\)"),
    (lambda x, v: cpu.batch_norm_apply(x, v, v, np.ones(4), None), "weight"),
    (lambda x, v: cpu.batch_norm_gradient_sums(x[:1], x, v), "dy must have shape"),
    (lambda x, v: cpu.batch_norm_gradient_sums(x, x, v[:1]), "mean"),
    (lambda x, v: cpu.batch_norm_input_gradient(x, x, v, v, None, v, v[:2], 10), "sum_dy_xmu"),
    (lambda x, v: cpu.batch_norm_input_gradient(x, x, v, v, None, v, v, 0), "count must be"),
    (lambda x, v: cpu.batch_norm_input_gradient(x, x, v, v, None, v, v, 2.0), "count must be"),
])
def test_split_kernels_refuse_bad_arguments(call, message):
    x, v = _data((4, 3, 5), np.float64), np.ones(3)
    with pytest.raises((TypeError, ValueError), match=message):
        call(x, v)
