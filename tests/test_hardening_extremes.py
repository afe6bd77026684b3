"""float32 sets that span nearly the whole range (values near ±FLT_MAX together): every kernel
widens to float64 before subtracting, so outputs and gradients are finite and match the float64
reference, where a float32 difference overflows to ±inf and then NaN (PyTorch gives NaN)."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import cpu, reference

ROW = np.array([3e38, -3e38, 1.0, 2.0, -3.4e38, 3.4e38, 0.5, -1.0])


def _x(parallel: bool) -> np.ndarray:
    """(rows, 8) float32 with the extreme row repeated; > 65536 elements when parallel."""
    rows = 8193 if parallel else 4
    x = np.tile(ROW, (rows, 1))
    x[1::2] = -x[1::2, ::-1]  # other signs and orders, and the mean away from zero
    return x.astype(np.float32)


def _compare(ours, expected, x_scale_results=()):
    """Each result within float32 tolerance of the reference; the means listed in
    `x_scale_results` relative to the inputs' magnitude (~3e38: the mean of such a set is only
    defined to ~1e-16 of it, and the reference's 0.3125 is the luck of its summation order)."""
    for i, (a, b) in enumerate(zip(ours, expected)):
        too_large = np.abs(b) > np.finfo(np.float32).max  # BatchNorm's var: ~4.5e76
        assert np.isfinite(a[~too_large]).all(), f"result {i} is not finite"
        assert (a[too_large] == np.sign(b[too_large]) * np.inf).all(), f"result {i}"
        a, b = np.where(too_large, 0, a), np.where(too_large, 0, b)
        largest = float(np.abs(ROW).max()) / 10 if i in x_scale_results else np.abs(b).max()
        scale = max(1.0, float(largest))
        np.testing.assert_allclose(a.astype(np.float64), b, rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=f"result {i}")


def _call(name, *args):
    ours = getattr(cpu, name)(*args)
    expected = getattr(reference, name)(*[a.astype(np.float64) if isinstance(a, np.ndarray)
                                           else a for a in args])
    ours = ours if isinstance(ours, tuple) else (ours,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    return ours, expected


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_layer_norm(parallel):
    x = _x(parallel)
    w = np.linspace(0.5, 2, 8).astype(np.float32)
    ours, expected = _call("layer_norm_forward", x, w, w, 1e-5)
    _compare(ours, expected, x_scale_results=(1,))
    dy = np.ones_like(x) + x / np.float32(3.4e38)
    _compare(*_call("layer_norm_backward", dy, x, expected[1].astype(np.float32),
                    expected[2].astype(np.float32), w))


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_group_norm(parallel):
    x = _x(parallel).reshape(-1, 4, 2)
    w = np.array([0.5, 1, 1.5, 2], np.float32)
    ours, expected = _call("group_norm_forward", x, 2, w, w, 1e-5)
    _compare(ours, expected, x_scale_results=(1,))
    dy = np.ones_like(x) + x / np.float32(3.4e38)
    _compare(*_call("group_norm_backward", dy, x, expected[1].astype(np.float32),
                    expected[2].astype(np.float32), 2, w))


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_batch_norm(parallel):
    x = np.ascontiguousarray(_x(parallel).reshape(-1, 2, 4).transpose(0, 1, 2))
    w = np.array([0.5, 2], np.float32)
    ours, expected = _call("batch_norm_forward_train", x, w, w, 1e-5)
    _compare(ours, expected, x_scale_results=(1,))
    dy = np.ones_like(x) + x / np.float32(3.4e38)
    _compare(*_call("batch_norm_backward", dy, x, expected[1].astype(np.float32),
                    expected[2].astype(np.float32), w))
    mean, var = expected[1].astype(np.float32), expected[3].astype(np.float32)
    _compare(*_call("batch_norm_forward_eval", x, mean, var, w, w, 1e-5))


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_rms_norm(parallel):
    x = _x(parallel) / np.float32(2**64)  # squares stay finite in float64 only
    w = np.linspace(0.5, 2, 8).astype(np.float32)
    ours, expected = _call("rms_norm_forward", x, w, 1e-5)
    _compare(ours, expected)
    _compare(*_call("rms_norm_backward", np.ones_like(x), x,
                    expected[1].astype(np.float32), w))
