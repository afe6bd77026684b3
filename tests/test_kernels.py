"""Every kernel of kernels/api.py, on every backend, against the float64 reference
(kernels/reference.py), called through the case registry (kernels/cases.py): forward and
backward, float32 and float64, odd sizes, with and without affine parameters, with and without
parameter gradients; on the CPU both the serial and the parallel path (sizes above
SERIAL_MAX_ELEMENTS), on CUDA a warp per row and a block per row, several blocks per BatchNorm
channel (the Chan merge), spatial size 1. Then accuracy on hard float32 inputs, empty inputs
and bitwise determinism.

The CUDA simulator runs one Python thread per CUDA thread, so on "cuda" every shape runs in
float32 with affine parameters, and float64 and affine=False each run on a subset: the same
code paths, a fraction of the simulated launches.
"""

import numpy as np
import pytest
from backends import BACKENDS, kernels_for, on_device, on_host
from hypothesis import given, settings
from hypothesis import strategies as st
from parity import assert_close

from kernels import api, reference
from kernels.cases import BY_NAME, CASES
from kernels.cpu.stats import PREFETCH_MIN_BYTES, SERIAL_MAX_ELEMENTS

# rows x cols: 1s, primes, a row longer than the simulator's warp-row limit (128); CPU_ONLY
# shapes are above the parallel threshold, too slow for the simulator
ROW_SHAPES = [(1, 1), (4, 1), (1, 7), (13, 17), (11, 40), (5, 172)]
ROW_SHAPES_CPU_ONLY = [(3, 256), (97, 1031)]
# (N, C, S) with a GroupNorm group count that divides C; (3, 1, 100): one BatchNorm channel
# over several blocks; (2, 2, 128): a GroupNorm set longer than a simulated warp's registers
NCS_SHAPES = [((1, 1, 2), 1), ((2, 3, 1), 3), ((5, 6, 7), 2), ((3, 4, 13), 4), ((3, 1, 100), 1),
              ((2, 2, 128), 1)]
NCS_SHAPES_CPU_ONLY = [((64, 128, 1), 8), ((37, 12, 151), 3)]
assert max(r * c for r, c in ROW_SHAPES_CPU_ONLY) > SERIAL_MAX_ELEMENTS
assert max(np.prod(s) for s, _ in NCS_SHAPES_CPU_ONLY) > SERIAL_MAX_ELEMENTS


def _variants(backend: str, index: int):
    """(dtype, affine) pairs for the index-th shape: all four on the CPU, a subset on CUDA."""
    if backend == "cpu":
        return [(d, a) for d in (np.float32, np.float64) for a in (True, False)]
    variants = [(np.float32, index % 2 == 0)]
    return variants + ([(np.float64, True)] if index in (2, 3) else [])


def _shapes(case, backend: str) -> list:
    if case.layout == "rows":
        shapes = ROW_SHAPES + (ROW_SHAPES_CPU_ONLY if backend == "cpu" else [])
        return [(shape, None) for shape in shapes]
    shapes = NCS_SHAPES + (NCS_SHAPES_CPU_ONLY if backend == "cpu" else [])
    if case.name == "InstanceNorm":
        # GroupNorm's kernels with one channel per group: where GroupNorm's own count is
        # already C, its case made these very calls (same inputs and variants), so None
        return [None if groups == shape[1] else (shape, shape[1]) for shape, groups in shapes]
    return shapes if case.name == "GroupNorm" else [(shape, None) for shape, _ in shapes]


def _backward_atol_scale(forward: dict) -> float:
    """dx is a difference of terms of size inv_std·|dy|: a set with tiny variance (a plane of
    one or two elements) amplifies float32 rounding by max(inv_std), in any implementation."""
    inv_std = on_host(forward.get("inv_std", forward.get("inv_rms")))
    return max(1.0, float(np.nanmax(inv_std, initial=1.0))) if inv_std is not None else 1.0


def check_case(backend: str, case, shape: tuple, num_groups, dtype, affine: bool,
               check_mask: bool = True) -> None:
    kernels = kernels_for(backend)
    inputs = case.inputs(shape, dtype, affine=affine, num_groups=num_groups)
    device_inputs = on_device(backend, inputs)
    forward = case.run_forward(kernels, device_inputs)
    what = f"{case.name} {shape} {np.dtype(dtype).name} affine={affine}"
    expected = case.run_forward(reference, inputs)
    for name, value in forward.items():
        assert_close(on_host(value), expected[name], dtype, f"{what} forward {name}")
    # the reference's backward from our saved statistics: the kernels measure the rounding of
    # the saved mean, so the same statistics must go to both
    host_forward = {k: on_host(v) for k, v in forward.items()}
    expected = case.run_backward(reference, inputs, host_forward)
    grads = on_host(case.run_backward(kernels, device_inputs, forward))
    scale = _backward_atol_scale(forward)
    for name, ours, theirs in zip(api.BY_NAME[case.backward].returns, grads, expected):
        assert_close(ours, theirs, dtype, f"{what} backward {name}", atol_scale=scale)
    if not check_mask or "param_grads" not in api.BY_NAME[case.backward].arguments:
        return
    without = on_host(case.run_backward(kernels, device_inputs, forward, param_grads=False))
    assert all(g is None for g in without[1:]), f"{what}: param_grads=False returned sums"
    np.testing.assert_array_equal(without[0], grads[0], err_msg=f"{what}: dx with param_grads")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_kernels_match_reference(backend, case):
    if backend not in case.backends:
        pytest.skip(f"{case.name} has no {backend} kernels yet (kernels/api.py)")
    for index, shape_and_groups in enumerate(_shapes(case, backend)):
        if shape_and_groups is None:
            continue
        shape, num_groups = shape_and_groups
        for dtype, affine in _variants(backend, index):
            check_case(backend, case, shape, num_groups, dtype, affine,
                       check_mask=backend == "cpu" or index == 0)


@pytest.mark.parametrize("name", ["LayerNorm", "RMSNorm"])
def test_row_backward_with_prefetching_matches_reference(name):
    """From PREFETCH_MIN_BYTES on, the CPU backward's second pass runs in blocks that prefetch
    the next row; 1031 columns leave a partial block at the end of every row."""
    for dtype, affine in ((np.float32, True), (np.float64, False)):
        rows = -(-PREFETCH_MIN_BYTES // (1031 * np.dtype(dtype).itemsize))
        check_case("cpu", BY_NAME[name], (rows, 1031), None, dtype, affine)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["LayerNorm", "GroupNorm", "BatchNorm", "InstanceNorm"])
def test_float32_large_offset_stays_within_1e_4_of_float64(backend, name):
    """x = 1e4 + 0.01·N(0,1): shifted two-pass statistics keep the normalized output within
    1e-4 (normalized units) of the float64 reference; a plain float32 two-pass is ~0.1 off."""
    case = BY_NAME[name]
    shape = (4, 64) if case.layout == "rows" else (4, 3, 20)
    if backend == "cpu":
        shape = (32, 16 * 256) if case.layout == "rows" else (32, 16, 256)
    inputs = case.inputs(shape, np.float32, seed=6,
                         values=lambda rng, shape: 1e4 + 0.01 * rng.standard_normal(shape),
                         num_groups=3 if name == "GroupNorm" and backend != "cpu" else None)
    kernels = kernels_for(backend)
    forward = case.run_forward(kernels, on_device(backend, inputs))
    exact = case.run_forward(reference, inputs)
    assert np.abs(on_host(forward["y"]) - exact["y"]).max() <= 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_inputs_give_nan_statistics_and_zero_gradients(backend):
    kernels = kernels_for(backend)
    y, mean, inv_std = on_host(kernels.layer_norm_forward(
        *on_device(backend, {"x": np.ones((2, 0), np.float32)}).values(), None, None, 1e-5))
    assert y.shape == (2, 0) and np.isnan(mean).all() and np.isnan(inv_std).all()
    for name in ("BatchNorm", "GroupNorm"):
        case = BY_NAME[name]
        inputs = on_device(backend, case.inputs((0, 3, 4), np.float32, num_groups=3))
        forward = case.run_forward(kernels, inputs)
        assert np.isnan(on_host(forward["mean"])).all(), name
        assert np.isnan(on_host(forward["var"])).all(), name
        dx, dweight, dbias = on_host(case.run_backward(kernels, inputs, forward))
        assert dx.shape == (0, 3, 4) and (dweight == 0).all() and (dbias == 0).all(), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_kernel_is_bitwise_deterministic(backend):
    shapes = {"cpu": [(4, 6, 5), (96, 32, 40)], "cuda": [(3, 4, 10)]}[backend]
    kernels = kernels_for(backend)
    for shape in shapes:  # on the CPU: the serial and the parallel path
        for case in (c for c in CASES if backend in c.backends):
            rows = (shape[0], shape[1] * shape[2])
            inputs = on_device(backend, case.inputs(shape if case.layout == "ncs" else rows,
                                                    np.float32))
            first, second = case.run(kernels, inputs), case.run(kernels, inputs)
            for a, b in zip(sum(first, ()), sum(second, ())):
                np.testing.assert_array_equal(on_host(a), on_host(b), err_msg=case.name)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(0, 6), groups=st.integers(1, 4), per_group=st.integers(1, 4),
       spatial=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_cpu_kernels_match_reference_on_random_shapes(batch, groups, per_group, spatial, seed):
    """float64, so any disagreement is a bug, not rounding (CPU only: hypothesis draws too
    many shapes for the simulator)."""
    import kernels.cpu as cpu

    shape = (batch, groups * per_group, spatial)
    for case in CASES:
        if case.name == "LocalResponseNorm" and not np.prod(shape):
            continue  # the framework returns an empty input before any kernel
        if not np.prod(shape) and case.name in ("BatchNorm", "BatchNorm eval"):
            continue  # an empty BatchNorm batch: test_empty_inputs_give_nan_statistics...
        case_shape = shape if case.layout == "ncs" else (batch, shape[1] * spatial)
        inputs = case.inputs(case_shape, np.float64, seed,
                             num_groups=groups if case.name == "GroupNorm" else None)
        forward = case.run_forward(cpu, inputs)
        expected = case.run_forward(reference, inputs)
        for name, value in forward.items():
            assert_close(value, expected[name], np.float64, f"{case.name} {shape} {name}")
        grads = case.run_backward(cpu, inputs, forward)
        for ours, theirs in zip(grads, case.run_backward(reference, inputs, forward)):
            assert_close(ours, theirs, np.float64, f"{case.name} {shape} backward")
