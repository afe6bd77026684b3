"""The Numba CPU kernels against the float64 reference (kernels/reference.py), called directly:
every forward and backward, float32 and float64, odd sizes, with and without affine
parameters, on both the serial and the parallel path; bitwise determinism; and the thread
hygiene that keeps a small call in microseconds."""

import os
import statistics
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels.cpu as cpu
from kernels import reference
from kernels.cpu.stats import SERIAL_MAX_ELEMENTS

TOL = {np.float32: dict(rtol=2e-5, atol=5e-5), np.float64: dict(rtol=1e-10, atol=1e-11)}
EPS = 1e-5
# rows x cols for the row-wise norms: 1s, primes, and one shape above the parallel threshold
ROW_SHAPES = [(1, 1), (4, 1), (1, 7), (13, 17), (3, 256), (97, 1031)]
# (N, C, S) for the channel-wise norms, with a group count that divides C
NCS_SHAPES = [((1, 1, 2), 1), ((2, 3, 1), 3), ((5, 6, 7), 2), ((3, 4, 13), 4),
              ((64, 128, 1), 8), ((37, 12, 151), 3)]
assert max(r * c for r, c in ROW_SHAPES) > SERIAL_MAX_ELEMENTS
assert max(np.prod(s) for s, _ in NCS_SHAPES) > SERIAL_MAX_ELEMENTS


def _data(shape, dtype, seed=0, offset=0.5):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 1.5 + offset).astype(dtype)


def _params(size, dtype, affine, seed=1):
    if not affine:
        return None, None
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 1.5, size).astype(dtype), rng.standard_normal(size).astype(dtype))


def _assert_close(ours, expected, dtype, what, inv_std=None):
    """Outputs agree to TOL; a backward's absolute tolerance grows with max(inv_std): dx is a
    difference of terms of size inv_std·|dy|, so a set with tiny variance (a plane of one or
    two elements) amplifies float32 rounding by that factor, in any implementation."""
    tol = dict(TOL[dtype])
    if inv_std is not None:
        tol["atol"] *= max(1.0, float(np.nanmax(inv_std, initial=1.0)))
    for i, (a, b) in enumerate(zip(ours, expected)):
        if a is None:
            continue
        assert a.dtype == dtype, f"{what} output {i} has dtype {a.dtype}"
        np.testing.assert_allclose(a, b, err_msg=f"{what} output {i}", **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
def test_layer_norm_matches_reference(shape, affine, dtype):
    x, dy = _data(shape, dtype), _data(shape, dtype, seed=2, offset=0)
    weight, bias = _params(shape[1], dtype, affine)
    ours = cpu.layer_norm_forward(x, weight, bias, EPS)
    _assert_close(ours, reference.layer_norm_forward(x, weight, bias, EPS), dtype, "forward")
    _, mean, inv_std = ours
    _assert_close(cpu.layer_norm_backward(dy, x, mean, inv_std, weight),
                  reference.layer_norm_backward(dy, x, mean, inv_std, weight), dtype, "backward",
                  inv_std)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
def test_rms_norm_matches_reference(shape, affine, dtype):
    x, dy = _data(shape, dtype), _data(shape, dtype, seed=2, offset=0)
    weight, _ = _params(shape[1], dtype, affine)
    ours = cpu.rms_norm_forward(x, weight, EPS)
    _assert_close(ours, reference.rms_norm_forward(x, weight, EPS), dtype, "forward")
    _assert_close(cpu.rms_norm_backward(dy, x, ours[1], weight),
                  reference.rms_norm_backward(dy, x, ours[1], weight), dtype, "backward",
                  ours[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("instance", [False, True], ids=["group", "instance"])
@pytest.mark.parametrize("shape, num_groups", NCS_SHAPES, ids=str)
def test_group_norm_matches_reference(shape, num_groups, instance, affine, dtype):
    num_groups = shape[1] if instance else num_groups
    x, dy = _data(shape, dtype), _data(shape, dtype, seed=2, offset=0)
    weight, bias = _params(shape[1], dtype, affine)
    ours = cpu.group_norm_forward(x, num_groups, weight, bias, EPS)
    expected = reference.group_norm_forward(x, num_groups, weight, bias, EPS)
    _assert_close(ours, expected, dtype, "forward")
    _, mean, inv_std = ours
    _assert_close(cpu.group_norm_backward(dy, x, mean, inv_std, num_groups, weight),
                  reference.group_norm_backward(dy, x, mean, inv_std, num_groups, weight),
                  dtype, "backward", inv_std)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [s for s, _ in NCS_SHAPES], ids=str)
def test_batch_norm_matches_reference(shape, affine, dtype):
    x, dy = _data(shape, dtype), _data(shape, dtype, seed=2, offset=0)
    weight, bias = _params(shape[1], dtype, affine)
    ours = cpu.batch_norm_forward_train(x, weight, bias, EPS)
    _assert_close(ours, reference.batch_norm_forward_train(x, weight, bias, EPS), dtype,
                  "train forward")
    _, mean, inv_std, _ = ours
    _assert_close(cpu.batch_norm_backward(dy, x, mean, inv_std, weight),
                  reference.batch_norm_backward(dy, x, mean, inv_std, weight), dtype,
                  "train backward", inv_std)
    rng = np.random.default_rng(3)
    running_mean = rng.standard_normal(shape[1]).astype(dtype)
    running_var = rng.uniform(0.5, 2.0, shape[1]).astype(dtype)
    args = (running_mean, running_var, weight)
    _assert_close([cpu.batch_norm_forward_eval(x, *args, bias, EPS)],
                  [reference.batch_norm_forward_eval(x, *args, bias, EPS)], dtype,
                  "eval forward")
    _assert_close(cpu.batch_norm_backward_eval(dy, x, *args, EPS),
                  reference.batch_norm_backward_eval(dy, x, *args, EPS), dtype, "eval backward")


def _all_kernel_outputs(x3, dy3):
    """Every kernel's outputs on one (N, C, S) input, as a flat list of arrays."""
    x2, dy2 = x3.reshape(x3.shape[0], -1), dy3.reshape(dy3.shape[0], -1)
    w2, w3 = np.linspace(0.5, 1.5, x2.shape[1], dtype=x3.dtype), np.ones(x3.shape[1], x3.dtype)
    outputs = []
    y, mean, inv_std = cpu.layer_norm_forward(x2, w2, w2, EPS)
    outputs += [y, mean, inv_std, *cpu.layer_norm_backward(dy2, x2, mean, inv_std, w2)]
    y, inv_rms = cpu.rms_norm_forward(x2, w2, EPS)
    outputs += [y, inv_rms, *cpu.rms_norm_backward(dy2, x2, inv_rms, w2)]
    y, mean, inv_std = cpu.group_norm_forward(x3, 2, w3, w3, EPS)
    outputs += [y, *cpu.group_norm_backward(dy3, x3, mean, inv_std, 2, w3)]
    y, mean, inv_std, var = cpu.batch_norm_forward_train(x3, w3, w3, EPS)
    outputs += [y, var, *cpu.batch_norm_backward(dy3, x3, mean, inv_std, w3)]
    outputs += [cpu.batch_norm_forward_eval(x3, mean, var, w3, w3, EPS),
                *cpu.batch_norm_backward_eval(dy3, x3, mean, var, w3, EPS)]
    return outputs


@pytest.mark.parametrize("shape", [(4, 6, 5), (96, 32, 40)], ids=["serial", "parallel"])
def test_every_kernel_is_bitwise_deterministic(shape):
    x, dy = _data(shape, np.float32), _data(shape, np.float32, seed=2)
    first = _all_kernel_outputs(x, dy)
    for _ in range(3):
        for a, b in zip(first, _all_kernel_outputs(x, dy)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make", [
    lambda x: cpu.layer_norm_forward(x.reshape(-1, 256), None, None, EPS),
    lambda x: cpu.group_norm_forward(x, 4, None, None, EPS),
    lambda x: cpu.batch_norm_forward_train(x, None, None, EPS),
], ids=["layer", "group", "batch"])
def test_float32_large_offset_stays_accurate(make):
    """x = 1e4 + 0.01·N(0,1): within 1e-4 (normalized units) of float64 on the same input."""
    x = (1e4 + 0.01 * np.random.default_rng(4).standard_normal((32, 16, 256))).astype(np.float32)
    ours = make(x)[0]
    exact = make(x.astype(np.float64))[0]
    assert np.abs(ours - exact).max() <= 1e-4


def test_threading_defaults_are_set_before_numba_starts_openmp():
    assert os.environ["OMP_WAIT_POLICY"].lower() == "passive"
    import numba

    assert numba.config.THREADING_LAYER != "workqueue"  # not thread-safe


def _median_call_seconds(fn, calls=50):
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_small_and_just_parallel_calls_take_microseconds_not_milliseconds():
    """Guards against a millisecond floor under each call, such as the 1.5-8 ms that
    OpenMP's active wait policy cost per parallel region on a busy 2-core machine
    (KERNELS.md); a healthy call here takes 5-50 us. The bounds are loose on purpose:
    this catches a stall, the benchmark measures speed."""
    small = _data((64, 64), np.float32)
    assert _median_call_seconds(lambda: cpu.layer_norm_forward(small, None, None, EPS)) < 5e-4
    just_parallel = _data((SERIAL_MAX_ELEMENTS // 256 + 4, 256), np.float32)
    parallel_call = lambda: cpu.layer_norm_forward(just_parallel, None, None, EPS)  # noqa: E731
    small_call = lambda: cpu.layer_norm_forward(small, None, None, EPS)  # noqa: E731
    assert _median_call_seconds(parallel_call) < 1e-3
    # a serial call right after a parallel region must not wait on spinning OpenMP threads
    assert _median_call_seconds(lambda: (parallel_call(), small_call())) < 1.5e-3


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(0, 6), groups=st.integers(1, 4), per_group=st.integers(1, 4),
       spatial=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_every_kernel_matches_reference_on_random_shapes(batch, groups, per_group, spatial,
                                                         seed):
    """float64, so any disagreement is a bug, not rounding."""
    shape = (batch, groups * per_group, spatial)
    x, dy = _data(shape, np.float64, seed), _data(shape, np.float64, seed + 1, offset=0)
    weight, bias = _params(shape[1], np.float64, True, seed + 2)
    for name, args in [
        ("group_norm_forward", (x, groups, weight, bias, EPS)),
        ("batch_norm_forward_eval", (x, bias, weight * weight, weight, bias, EPS)),
        ("batch_norm_backward_eval", (dy, x, bias, weight * weight, weight, EPS)),
    ] + ([("batch_norm_forward_train", (x, weight, bias, EPS))] if x.size else []):
        _assert_close(getattr(cpu, name)(*args), getattr(reference, name)(*args), np.float64,
                      name)
    rows, row_dy = x.reshape(batch, shape[1] * spatial), dy.reshape(batch, shape[1] * spatial)
    row_weight = _params(rows.shape[1], np.float64, True, seed + 3)[0]
    _, mean, inv_std = cpu.layer_norm_forward(rows, row_weight, None, EPS)
    _assert_close(cpu.layer_norm_backward(row_dy, rows, mean, inv_std, row_weight),
                  reference.layer_norm_backward(row_dy, rows, mean, inv_std, row_weight),
                  np.float64, "layer_norm_backward")
    _, inv_rms = cpu.rms_norm_forward(rows, row_weight, EPS)
    _assert_close(cpu.rms_norm_backward(row_dy, rows, inv_rms, row_weight),
                  reference.rms_norm_backward(row_dy, rows, inv_rms, row_weight), np.float64,
                  "rms_norm_backward")
    if x.size:
        _, mean, inv_std = cpu.group_norm_forward(x, groups, weight, bias, EPS)
        _assert_close(cpu.group_norm_backward(dy, x, mean, inv_std, groups, weight),
                      reference.group_norm_backward(dy, x, mean, inv_std, groups, weight),
                      np.float64, "group_norm_backward")
        _, mean, inv_std, _ = cpu.batch_norm_forward_train(x, weight, bias, EPS)
        _assert_close(cpu.batch_norm_backward(dy, x, mean, inv_std, weight),
                      reference.batch_norm_backward(dy, x, mean, inv_std, weight), np.float64,
                      "batch_norm_backward")


def test_openmp_loaded_before_the_kernels_is_reported():
    """libgomp reads OMP_WAIT_POLICY when loaded; importing torch first makes our default
    too late, which cost 8 ms per parallel call here under load: say so."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import torch, warnings; warnings.simplefilter('error'); import kernels"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True)
    assert result.returncode != 0 and "OMP_WAIT_POLICY=passive" in result.stderr
    env["OMP_WAIT_POLICY"] = "passive"
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


def test_output_buffers_are_reused_only_after_every_reference_is_gone():
    from kernels.cpu import buffers

    x = np.zeros((512, 1024), np.float32)  # 2 MB: pooled
    first = buffers.empty_like(x)
    first_address = first.__array_interface__["data"][0]
    assert buffers.empty_like(x) is not first  # still referenced: never handed out twice
    view = first[::2]
    del first
    held = buffers.empty_like(x)
    assert not np.shares_memory(held, view)  # a view keeps its base busy
    del view, held
    again = buffers.empty_like(x)
    assert again.__array_interface__["data"][0] == first_address  # released: recycled
    assert buffers.empty_like(np.zeros(10)).base is None  # small arrays are not pooled
    assert buffers._pool_bytes <= buffers.MAX_POOL_BYTES


def test_kernel_outputs_held_by_the_caller_are_never_overwritten():
    x = _data((300, 1024), np.float32)  # 1.2 MB: pooled outputs
    y1 = cpu.layer_norm_forward(x, None, None, EPS)[0]
    expected = y1.copy()
    for _ in range(3):
        cpu.layer_norm_forward(-x, None, None, EPS)
    np.testing.assert_array_equal(y1, expected)
