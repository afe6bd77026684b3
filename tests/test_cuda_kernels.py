"""kernels.cuda against the float64 reference (kernels.reference), on small shapes.

Runs on a GPU (inputs as CuPy arrays) or under numba's CUDA simulator (NumPy stand-ins;
tests/conftest.py picks). The simulator runs one Python thread per CUDA thread, so shapes
are chosen to cover every code path in a few blocks: a warp per row and a block per row,
grid-stride loops, several blocks per BatchNorm channel (the Chan merge), spatial size 1,
affine=False, the large-offset case, float64.
"""

from __future__ import annotations

import numpy as np
import pytest

from kernels import reference
from tinygrad_norm import device

if device._cuda_unavailable_reason() is not None:
    pytest.skip(f"no CUDA device or simulator: {device._cuda_unavailable_reason()}",
                allow_module_level=True)

from kernels import cuda  # noqa: E402  (after the skip: importing compiles nothing, but needs numba.cuda)
from kernels.cuda import helpers  # noqa: E402

TOL = {np.float32: dict(atol=2e-5, rtol=1e-4), np.float64: dict(atol=1e-10, rtol=1e-8)}


def on_device(*arrays):
    return [None if a is None else device.to_device(a, "cuda") for a in arrays]


def on_host(*arrays):
    return [device.to_host(a) for a in arrays]


def assert_close(ours, expected, dtype, what):
    for i, (a, b) in enumerate(zip(on_host(*ours), expected)):
        assert a.dtype == dtype, f"{what} output {i} has dtype {a.dtype}"
        scale = max(1.0, float(np.abs(b).max())) if b.size else 1.0
        np.testing.assert_allclose(a, b, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale,
                                   err_msg=f"{what} output {i}")


def inputs(shape, dtype=np.float32, offset=0.0, seed=0, affine=True):
    rng = np.random.default_rng(seed)
    scale = 0.01 if offset else 1.0
    x = (offset + scale * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    features = shape[1] if len(shape) == 3 else shape[-1]
    weight = (1 + 0.5 * rng.standard_normal(features)).astype(dtype) if affine else None
    bias = rng.standard_normal(features).astype(dtype) if affine else None
    return x, dy, weight, bias


# (rows, cols): a warp per row with a tail lane group and grid-stride rows; a block per row
# (row cached in shared memory) with more rows than blocks.
ROW_SHAPES = [(11, 40), (5, helpers.WARP_ROW_MAX + 44)]


@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_layer_norm_matches_reference(shape):
    x, dy, weight, bias = inputs(shape)
    y, mean, inv_std = cuda.layer_norm_forward(*on_device(x, weight, bias), 1e-5)
    assert_close((y, mean, inv_std), reference.layer_norm_forward(x, weight, bias, 1e-5),
                 np.float32, "forward")
    grads = cuda.layer_norm_backward(*on_device(dy, x), mean, inv_std, *on_device(weight))
    expected = reference.layer_norm_backward(dy, x, *on_host(mean, inv_std), weight)
    assert_close(grads, expected, np.float32, "backward")


def test_layer_norm_without_affine_and_backward_is_deterministic():
    x, dy, _, _ = inputs((6, 33), affine=False)
    y, mean, inv_std = cuda.layer_norm_forward(*on_device(x), None, None, 1e-5)
    assert_close((y,), reference.layer_norm_forward(x, None, None, 1e-5)[:1], np.float32, "fwd")
    dy_d, x_d = on_device(dy, x)
    first = on_host(*cuda.layer_norm_backward(dy_d, x_d, mean, inv_std, None))
    second = on_host(*cuda.layer_norm_backward(dy_d, x_d, mean, inv_std, None))
    expected = reference.layer_norm_backward(dy, x, *on_host(mean, inv_std), None)
    assert_close(first, expected, np.float32, "backward")
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(11, 40), (3, helpers.WARP_ROW_MAX + 44)])
def test_rms_norm_matches_reference(shape):
    x, dy, weight, _ = inputs(shape, seed=1)
    y, inv_rms = cuda.rms_norm_forward(*on_device(x, weight), 1e-6)
    assert_close((y, inv_rms), reference.rms_norm_forward(x, weight, 1e-6), np.float32, "fwd")
    grads = cuda.rms_norm_backward(*on_device(dy, x), inv_rms, *on_device(weight))
    expected = reference.rms_norm_backward(dy, x, *on_host(inv_rms), weight)
    assert_close(grads, expected, np.float32, "backward")


# (shape (N, C, S), num_groups, affine): GroupNorm, spatial size 1, InstanceNorm, no affine,
# and sets longer than a warp's registers (a block per set).
GROUP_CASES = [((3, 4, 10), 2, True), ((2, 6, 1), 3, True), ((2, 3, 7), 3, True),
               ((2, 4, 5), 2, False), ((2, 2, helpers.WARP_ROW_MAX), 1, True)]


@pytest.mark.parametrize("shape, num_groups, affine", GROUP_CASES)
def test_group_norm_matches_reference(shape, num_groups, affine):
    x, dy, weight, bias = inputs(shape, seed=2, affine=affine)
    y, mean, inv_std = cuda.group_norm_forward(*on_device(x), num_groups,
                                               *on_device(weight, bias), 1e-5)
    assert_close((y, mean, inv_std), reference.group_norm_forward(x, num_groups, weight, bias,
                                                                  1e-5), np.float32, "forward")
    grads = cuda.group_norm_backward(*on_device(dy, x), mean, inv_std, num_groups,
                                     *on_device(weight))
    expected = reference.group_norm_backward(dy, x, *on_host(mean, inv_std), num_groups,
                                             weight)
    assert_close(grads, expected, np.float32, "backward")


# (shape, affine): channels over several slices each; BatchNorm1d's (N, C) input (S = 1);
# one channel split over four blocks (Chan's merge across blocks); no affine.
BATCH_CASES = [((3, 4, 10), True), ((7, 3, 1), True), ((3, 1, 100), True), ((2, 2, 5), False)]


@pytest.mark.parametrize("shape, affine", BATCH_CASES)
def test_batch_norm_training_matches_reference(shape, affine):
    x, dy, weight, bias = inputs(shape, seed=3, affine=affine)
    outputs = cuda.batch_norm_forward_train(*on_device(x, weight, bias), 1e-5)
    assert_close(outputs, reference.batch_norm_forward_train(x, weight, bias, 1e-5),
                 np.float32, "forward")
    _, mean, inv_std, _ = outputs
    grads = cuda.batch_norm_backward(*on_device(dy, x), mean, inv_std, *on_device(weight))
    expected = reference.batch_norm_backward(dy, x, *on_host(mean, inv_std), weight)
    assert_close(grads, expected, np.float32, "backward")


@pytest.mark.parametrize("shape, affine", [((3, 4, 10), True), ((5, 2, 1), False)])
def test_batch_norm_eval_matches_reference(shape, affine):
    x, dy, weight, bias = inputs(shape, seed=4, affine=affine)
    rng = np.random.default_rng(5)
    running_mean = rng.standard_normal(shape[1]).astype(np.float32)
    running_var = (0.5 + rng.random(shape[1])).astype(np.float32)
    stats = (running_mean, running_var)
    y = cuda.batch_norm_forward_eval(*on_device(x, *stats, weight, bias), 1e-5)
    assert_close((y,), (reference.batch_norm_forward_eval(x, *stats, weight, bias, 1e-5),),
                 np.float32, "forward")
    grads = cuda.batch_norm_backward_eval(*on_device(dy, x, *stats, weight), 1e-5)
    assert_close(grads, reference.batch_norm_backward_eval(dy, x, *stats, weight, 1e-5),
                 np.float32, "backward")


def test_large_offset_float32_is_accurate_to_1e_4():
    """x = 1e4 + 0.01·N(0,1): shifted two-pass statistics keep the normalized output within
    1e-4 of the float64 reference (naive float32 statistics are off by ~0.1)."""
    x, dy, weight, bias = inputs((4, 64), offset=1e4, seed=6)
    y, mean, inv_std = cuda.layer_norm_forward(*on_device(x, weight, bias), 1e-5)
    y_ref, mean_ref, inv_std_ref = reference.layer_norm_forward(x, weight, bias, 1e-5)
    assert np.abs(on_host(y)[0] - y_ref).max() <= 1e-4
    dx, _, _ = cuda.layer_norm_backward(*on_device(dy, x), mean, inv_std, *on_device(weight))
    dx_ref = reference.layer_norm_backward(dy, x, mean_ref, inv_std_ref, weight)[0]
    assert np.abs(on_host(dx)[0] - dx_ref).max() <= 1e-4 * np.abs(dx_ref).max()

    x, dy, weight, bias = inputs((4, 3, 20), offset=1e4, seed=7)
    for forward, args in ((cuda.group_norm_forward, (3,)), (cuda.batch_norm_forward_train, ())):
        y = forward(*on_device(x), *args, *on_device(weight, bias), 1e-5)[0]
        y_ref = getattr(reference, forward.__name__)(x, *args, weight, bias, 1e-5)[0]
        assert np.abs(on_host(y)[0] - y_ref).max() <= 1e-4, forward.__name__


def test_float64_inputs_match_reference_tightly():
    x, dy, weight, bias = inputs((3, 40), dtype=np.float64, seed=8)
    y, mean, inv_std = cuda.layer_norm_forward(*on_device(x, weight, bias), 1e-5)
    assert_close((y, mean, inv_std), reference.layer_norm_forward(x, weight, bias, 1e-5),
                 np.float64, "forward")
    grads = cuda.layer_norm_backward(*on_device(dy, x), mean, inv_std, *on_device(weight))
    assert_close(grads, reference.layer_norm_backward(dy, x, *on_host(mean, inv_std), weight),
                 np.float64, "backward")
    x, dy, weight, bias = inputs((2, 3, 5), dtype=np.float64, seed=9)
    outputs = cuda.batch_norm_forward_train(*on_device(x, weight, bias), 1e-5)
    assert_close(outputs, reference.batch_norm_forward_train(x, weight, bias, 1e-5),
                 np.float64, "batch norm forward")


def test_empty_inputs_give_nan_statistics_and_zero_gradients():
    y, mean, inv_std = on_host(*cuda.layer_norm_forward(*on_device(np.ones((2, 0), np.float32)),
                                                        None, None, 1e-5))
    assert y.shape == (2, 0) and np.isnan(mean).all() and np.isnan(inv_std).all()
    x = np.ones((0, 3, 4), np.float32)
    _, mean, inv_std, var = on_host(*cuda.batch_norm_forward_train(*on_device(x), None, None,
                                                                    1e-5))
    assert mean.shape == (3,) and np.isnan(mean).all() and np.isnan(var).all()
    _, dweight, dbias = on_host(*cuda.batch_norm_backward(*on_device(x, x, mean, inv_std),
                                                          None))
    assert (dweight == 0).all() and (dbias == 0).all()


def test_bad_arguments_raise_before_any_kernel_runs():
    x, dy, weight, _ = on_device(*inputs((4, 6)))
    with pytest.raises(ValueError, match=r"weight must have shape \(6,\)"):
        cuda.layer_norm_forward(x, on_device(np.ones(5, np.float32))[0], None, 1e-5)
    with pytest.raises(TypeError, match="dtype of x"):
        cuda.layer_norm_forward(x, on_device(np.ones(6, np.float64))[0], None, 1e-5)
    with pytest.raises(ValueError, match="2-D"):
        cuda.rms_norm_forward(on_device(np.ones((2, 3, 4), np.float32))[0], None, 1e-5)
    with pytest.raises(ValueError, match="C-contiguous"):
        cuda.layer_norm_forward(on_device(np.ones((6, 4), np.float32))[0].T, None, None, 1e-5)
    with pytest.raises(ValueError, match="eps"):
        cuda.layer_norm_forward(x, None, None, -1.0)
    with pytest.raises(TypeError, match="mean must be an array"):
        cuda.layer_norm_backward(dy, x, None, None, weight)
    with pytest.raises(ValueError, match="num_groups must divide"):
        cuda.group_norm_forward(on_device(np.ones((2, 6, 3), np.float32))[0], 4, None, None,
                                1e-5)
    with pytest.raises(TypeError, match="float32 or float64"):
        cuda.batch_norm_forward_train(on_device(np.ones((2, 3, 1), np.int32))[0], None, None,
                                      1e-5)


@pytest.mark.skipif(helpers.SIMULATOR, reason="NumPy arrays are the device arrays in the simulator")
def test_host_arrays_are_refused_on_a_gpu():
    with pytest.raises(TypeError, match="CUDA device array"):
        cuda.layer_norm_forward(np.ones((2, 3), np.float32), None, None, 1e-5)
