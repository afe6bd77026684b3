"""Type promotion of Tensor arithmetic against PyTorch's: every dtype pair (dimensioned and 0-d
tensors), and tensors with Python and NumPy scalars of every type; values too, not only dtypes."""

from __future__ import annotations

import itertools
import operator

import numpy as np
import pytest
import torch

import tinygrad_norm as tn

DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]
OPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}
SCALARS = [True, False, 0, 3, -2, 0.5, -2.5, 1e10, float("inf"), np.float64(0.25),
           np.float32(1.5), np.int32(7), np.int64(-3), np.bool_(True), np.float16(2.0)]


def _values(dtype: str, shape: tuple) -> np.ndarray:
    base = np.array([1, 2, 3, 0, 5, 7])[: int(np.prod(shape))].reshape(shape)
    return (base % 2).astype(bool) if dtype == "bool" else base.astype(dtype)


def _both(op, a, b):
    """(our result, PyTorch's result or the exception class it raised)."""
    def to_torch(v):
        return torch.from_numpy(np.array(v.numpy())) if isinstance(v, tn.Tensor) else v
    try:
        expected = op(to_torch(a), to_torch(b))
    except RuntimeError:
        with pytest.raises((RuntimeError, TypeError)):
            op(a, b)
        return None, None
    return op(a, b), expected


def _check(ours, theirs, what):
    assert ours.dtype == np.dtype(str(theirs.dtype).replace("torch.", "")), what
    np.testing.assert_allclose(ours.numpy().astype(np.float64),
                               theirs.numpy().astype(np.float64), rtol=1e-3, err_msg=what)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shapes", [((3,), (3,)), ((3,), ()), ((), (3,)), ((), ())],
                         ids=["dim-dim", "dim-0d", "0d-dim", "0d-0d"])
def test_tensor_with_tensor_follows_torch_for_every_dtype_pair(op, shapes):
    for left, right in itertools.product(DTYPES, DTYPES):
        a = tn.Tensor(_values(left, shapes[0]))
        b = tn.Tensor(_values(right, shapes[1]) + (right != "bool"))  # no division by zero
        ours, theirs = _both(OPS[op], a, b)
        if ours is not None:
            _check(ours, theirs, f"{left} {op} {right} {shapes}")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("scalar_first", [False, True], ids=["tensor-scalar", "scalar-tensor"])
def test_tensor_with_python_and_numpy_scalars_follows_torch(op, scalar_first):
    for dtype, scalar in itertools.product(DTYPES, SCALARS):
        t = tn.Tensor(_values(dtype, (3,)) + (dtype != "bool"))
        pair = (scalar, t) if scalar_first else (t, scalar)
        with np.errstate(all="ignore"):
            ours, theirs = _both(OPS[op], *pair)
        if ours is not None:
            _check(ours, theirs, f"{pair[0]!r} {op} {pair[1]!r}")


@pytest.mark.parametrize("case", [
    (lambda: tn.Tensor([1, 2, 3]) * 0.5, [0.5, 1.0, 1.5], np.float32),
    (lambda: tn.arange(5) * 0.1, [0.0, 0.1, 0.2, 0.3, 0.4], np.float32),
    (lambda: tn.Tensor([1, 2, 3]) / 2.5, [0.4, 0.8, 1.2], np.float32),
    (lambda: tn.Tensor([True, False]) + 0.5, [1.5, 0.5], np.float32),
    (lambda: tn.Tensor([1, 2]) + tn.Tensor([0.5, 0.5]), [1.5, 2.5], np.float32),
    (lambda: tn.Tensor([3, 4]) / tn.Tensor([2, 8]), [1.5, 0.5], np.float32),
    (lambda: tn.Tensor([1.0, 2.0], dtype=np.float16) * 1e3, [1e3, 2e3], np.float16),
    (lambda: tn.Tensor([1, 2]) ** 0.5, [1.0, 2 ** 0.5], np.float32),
    (lambda: 2.5 ** tn.Tensor([1, 2]), [2.5, 6.25], np.float32),
    (lambda: tn.Tensor([1, 2], dtype=np.int8) + 1000, [-23, -22], np.int8),
    (lambda: tn.Tensor([1.0, 2.0]).maximum(tn.Tensor([1.5, 0.0], dtype=np.float64)),
     [1.5, 2.0], np.float64),
], ids=["int*0.5", "arange*0.1", "int/2.5", "bool+0.5", "int64+float32", "int/int",
        "half*1e3", "int**0.5", "2.5**int", "int8 wraps", "maximum"])
def test_the_reported_cases(case):
    make, values, dtype = case
    result = make()
    assert result.dtype == dtype
    np.testing.assert_allclose(result.numpy().astype(np.float64), values, rtol=1e-3)


def test_promoted_operands_still_get_gradients_in_their_own_dtype():
    x = tn.Tensor([1.0, 2.0], requires_grad=True)  # float32
    w = tn.Tensor([3.0, 4.0], dtype=np.float64, requires_grad=True)
    out = (x * w).sum()
    assert out.dtype == np.float64
    out.backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 2.0])


def test_complex_and_oversized_scalars_are_refused_clearly():
    t = tn.Tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="complex"):
        t * (1 + 2j)
    with pytest.raises(RuntimeError, match="overflow"):
        tn.Tensor([1, 2]) + 2**64
