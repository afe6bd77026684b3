"""The output-buffer pool (kernels/cpu/buffers.py) never lets one call observe what a caller did
to an earlier result: changed shape, dtype, strides or flags, or a weak reference to it."""

from __future__ import annotations

import weakref

import numpy as np
import pytest

from kernels import cpu, reference
from kernels.cases import CASES
from kernels.cpu import buffers

ROWS, COLS = 4, 131072  # 2 MiB of float32: pooled (MIN_BYTES is 1 MiB)


def _x(dtype=np.float32):
    return np.random.default_rng(0).standard_normal((ROWS, COLS)).astype(dtype)


def _tamper_shape(y):
    y.shape = (2, ROWS * COLS // 2)


def _tamper_dtype(y):
    y.dtype = np.int32


def _tamper_strides(y):
    y.strides = (0,) * (y.ndim - 1) + (y.itemsize,)


def _tamper_read_only(y):
    y.flags.writeable = False


TAMPERS = [_tamper_shape, _tamper_dtype, _tamper_strides, _tamper_read_only]


def _calls(x):
    """(name, call returning the pooled result) for every kernel output that is pooled: each
    case's y and dx (kernels/cases.py), on inputs of 2 MiB."""
    calls = []
    for case in CASES:
        shape = x.shape if case.layout == "rows" else (ROWS, 4, COLS // 4)
        inputs = case.inputs(shape, x.dtype, affine=False)
        saved = case.run_forward(cpu, inputs)
        calls += [(f"{case.forward} y", lambda case=case, inputs=inputs:
                   case.run_forward(cpu, inputs)["y"]),
                  (f"{case.backward} dx", lambda case=case, inputs=inputs, saved=saved:
                   case.run_backward(cpu, inputs, saved)[0])]
    return calls


@pytest.mark.parametrize("tamper", TAMPERS, ids=lambda f: f.__name__[8:])
def test_changing_a_results_metadata_does_not_reach_the_next_call(tamper):
    x = _x()
    for name, call in _calls(x):
        expected = np.array(call(), copy=True)
        y = call()
        tamper(y)
        del y
        again = call()
        assert again.shape == expected.shape and again.dtype == expected.dtype, name
        assert again.flags.writeable and again.flags.c_contiguous, name
        np.testing.assert_array_equal(again, expected, err_msg=name)


def test_a_result_reached_through_a_weak_reference_is_not_reused():
    x = _x()
    y = cpu.layer_norm_forward(x, None, None, 1e-5)[0]
    alias = weakref.ref(y)
    del y
    fresh = cpu.layer_norm_forward(x * 2 + 1, None, None, 1e-5)[0]
    assert alias() is None or alias() is not fresh


def test_results_are_correct_after_tampering_with_layer_norm():
    x = _x(np.float64)
    y = cpu.layer_norm_forward(x, None, None, 1e-5)[0]
    y.shape = (2, ROWS * COLS // 2)
    del y
    y = cpu.layer_norm_forward(x, None, None, 1e-5)[0]
    np.testing.assert_allclose(y, reference.layer_norm_forward(x, None, None, 1e-5)[0],
                               rtol=1e-10, atol=1e-12)


def test_discarded_buffers_leave_the_pools_byte_count():
    before = buffers._pool_bytes
    x = _x()
    for _ in range(20):
        y = cpu.layer_norm_forward(x, None, None, 1e-5)[0]
        y.shape = (2, ROWS * COLS // 2)
        del y
    assert buffers._pool_bytes <= max(before, 0) + 2 * x.nbytes
