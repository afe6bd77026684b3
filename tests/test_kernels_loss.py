"""The fused log_softmax and cross_entropy CPU kernels: against the float64 spec
(kernels/reference.py), against PyTorch through the framework ops, and by finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import kernels.cpu as cpu
import tinygrad_norm as tn
from kernels import reference
from tinygrad_norm.nn import functional as F

DTYPES = [np.float32, np.float64]
TORCH = {np.float32: torch.float32, np.float64: torch.float64}
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
SHAPES = [(1, 1), (1, 7), (3, 1), (13, 5), (6, 11)]
REDUCTIONS = ["none", "mean", "sum"]
PARALLEL_SHAPE = (263, 257)  # > 65536 elements: the parallel drivers


def _scores(shape, dtype, seed=0):
    return np.asarray(3 * np.random.default_rng(seed).standard_normal(shape), dtype)


def _targets(rows, classes, ignore_index, seed=1):
    target = np.random.default_rng(seed).integers(0, classes, rows)
    if rows > 2:
        target[1] = ignore_index
    return target


def _weight(classes, dtype, use):
    return np.random.default_rng(2).uniform(0.2, 2.0, classes).astype(dtype) if use else None


# ---------------------------------------------------------------- kernels against the spec


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [PARALLEL_SHAPE])
def test_log_softmax_kernels_match_the_reference(shape, dtype):
    x = _scores(shape, dtype)
    dy = _scores(shape, dtype, seed=5)
    y = cpu.log_softmax_forward(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, reference.log_softmax_forward(x), **TOL[dtype])
    np.testing.assert_allclose(cpu.log_softmax_backward(dy, y),
                               reference.log_softmax_backward(dy, y), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [PARALLEL_SHAPE])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_kernels_match_the_reference(shape, dtype, reduction, smoothing,
                                                   weighted):
    rows, classes = shape
    ignore_index = 0 if classes > 1 else -100  # an ignore_index inside [0, C) as well
    x, target = _scores(shape, dtype), _targets(rows, classes, ignore_index)
    weight = _weight(classes, dtype, weighted)
    args = (target, weight, ignore_index, smoothing, reduction)
    loss, lse = cpu.cross_entropy_forward(x, *args)
    want_loss, want_lse = reference.cross_entropy_forward(x, *args)
    assert loss.dtype == dtype and loss.shape == want_loss.shape and lse.dtype == np.float64
    np.testing.assert_allclose(loss, want_loss, **TOL[dtype])
    np.testing.assert_allclose(lse, want_lse, rtol=1e-6 if dtype == np.float32 else 1e-13)
    dloss = _scores(loss.shape, dtype, seed=7)
    np.testing.assert_allclose(
        cpu.cross_entropy_backward(dloss, x, target, lse, *args[1:]),
        reference.cross_entropy_backward(dloss, x, target, want_lse, *args[1:]), **TOL[dtype])


def test_cross_entropy_is_exact_for_large_offsets():
    """lse - x_c is formed as log(s) + (max - x_c): no cancellation at |x| ~ 1e4."""
    x = (1e4 + np.random.default_rng(0).standard_normal((5, 4))).astype(np.float32)
    target = np.array([0, 1, 2, 3, 0])
    loss = cpu.cross_entropy_forward(x, target, None, -100, 0.2, "none")[0]
    np.testing.assert_allclose(loss, reference.cross_entropy_forward(x, target, None, -100,
                                                                     0.2, "none")[0],
                               rtol=1e-6)


# ---------------------------------------------------------------- framework ops against torch


def _both(x_np, dtype, **kwargs):
    """(our loss, our grad, torch's loss, torch's grad) of cross_entropy on x_np."""
    target = kwargs.pop("target")
    weight = kwargs.pop("weight", None)
    ours = tn.Tensor(x_np, requires_grad=True)
    theirs = torch.tensor(x_np, requires_grad=True)
    loss = F.cross_entropy(ours, target, None if weight is None else tn.Tensor(weight),
                           **kwargs)
    want = TF.cross_entropy(theirs, torch.from_numpy(target),
                            None if weight is None else torch.from_numpy(weight), **kwargs)
    upstream = _scores(want.shape, dtype, seed=9)
    loss.backward(tn.Tensor(upstream))
    want.backward(torch.from_numpy(upstream))
    return (loss.detach().numpy(), ours.grad.numpy(), want.detach().numpy(),
            theirs.grad.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (4, 5, 3)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", [{}, dict(label_smoothing=0.25, ignore_index=1),
                                     dict(weighted=True, ignore_index=2, label_smoothing=0.1)])
def test_cross_entropy_matches_torch(shape, dtype, reduction, options):
    options = dict(options)
    x = _scores(shape, dtype)
    classes = shape[1]
    target = np.random.default_rng(4).integers(0, classes, (shape[0],) + shape[2:])
    weight = _weight(classes, dtype, options.pop("weighted", False))
    loss, grad, want, want_grad = _both(x, dtype, target=target, weight=weight,
                                        reduction=reduction, **options)
    np.testing.assert_allclose(loss, want, **TOL[dtype])
    np.testing.assert_allclose(grad, want_grad, **TOL[dtype])


def test_cross_entropy_is_one_graph_node_on_cpu():
    loss = F.cross_entropy(tn.randn(4, 3, requires_grad=True), np.array([0, 1, 2, 0]))
    assert loss._ctx.function.__name__ == "CrossEntropy"
    assert all(p._ctx is None for p in loss._ctx.parents)


def test_cross_entropy_takes_non_contiguous_scores():
    x = np.asfortranarray(_scores((6, 5), np.float64))
    target = np.array([0, 4, 1, 3, 2, 2])
    loss, grad, want, want_grad = _both(x, np.float64, target=target)
    np.testing.assert_allclose(loss, want, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-14)
    ours = tn.Tensor(_scores((5, 6), np.float64), requires_grad=True)  # a transposed view
    F.cross_entropy(ours.T, target).backward()
    theirs = torch.tensor(ours.detach().numpy(), requires_grad=True)
    TF.cross_entropy(theirs.T, torch.from_numpy(target)).backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_every_target_ignored_gives_nan_mean_and_zero_gradient_like_torch(smoothing):
    x = _scores((3, 4), np.float32)
    target = np.full(3, -100)
    loss, grad, want, want_grad = _both(x, np.float32, target=target,
                                        label_smoothing=smoothing)
    assert np.isnan(loss) and np.isnan(want)
    np.testing.assert_array_equal(grad, want_grad)
    assert not grad.any()


def test_extreme_scores_match_torch():
    inf = np.inf
    x = np.array([[inf, 1.0, 0.0], [-inf, 1.0, 2.0], [-inf, -inf, -inf], [np.nan, 0.0, 1.0]])
    target = np.array([1, 2, 0, 1])
    loss, grad, want, want_grad = _both(x, np.float64, target=target, reduction="none")
    np.testing.assert_allclose(loss, want)
    np.testing.assert_allclose(grad, want_grad)
    ours, theirs = tn.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    np.testing.assert_allclose(ours.log_softmax(1).detach().numpy(),
                               torch.log_softmax(theirs, 1).detach().numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_log_softmax_matches_torch_on_any_dim_and_layout(dtype, dim):
    x = _scores((3, 4, 5), dtype).transpose(2, 0, 1)  # non-contiguous
    ours = tn.Tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    upstream = _scores(x.shape, dtype, seed=3)
    out = F.log_softmax(ours, dim)
    want = TF.log_softmax(theirs, dim)
    out.backward(tn.Tensor(upstream))
    want.backward(torch.from_numpy(upstream))
    np.testing.assert_allclose(out.detach().numpy(), want.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_cross_entropy_and_log_softmax(reduction):
    x = tn.Tensor(_scores((4, 3), np.float64), requires_grad=True)
    weight = tn.Tensor(np.array([0.5, 2.0, 1.0]))
    target = np.array([0, 2, 1, 1])
    assert tn.gradcheck(lambda t: F.cross_entropy(t, target, weight, ignore_index=1,
                                                  reduction=reduction, label_smoothing=0.2),
                        (x,))
    assert tn.gradcheck(lambda t: F.log_softmax(t, 0), (x,))


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("bad", [5, -1])
def test_target_out_of_range_is_refused_by_the_kernels_too(bad):
    x = _scores((3, 5), np.float32)
    target = np.array([0, bad, 1])
    with pytest.raises(ValueError, match=rf"target {bad} is out of bounds.*\[0, 5\)"):
        cpu.cross_entropy_forward(x, target, None, -100, 0.0, "mean")
    lse = np.zeros(3)
    with pytest.raises(ValueError, match=rf"target {bad} is out of bounds"):
        cpu.cross_entropy_backward(np.array(1.0, np.float32), x, target, lse, None, -100, 0.0,
                                   "mean")
    with pytest.raises(ValueError, match=rf"target {bad} is out of bounds"):
        F.cross_entropy(tn.Tensor(x), target)


@pytest.mark.parametrize("change, error, words", [
    (dict(target=np.array([0, 1, 2], np.int32)), TypeError, "target must have dtype int64"),
    (dict(target=np.array([0, 1])), ValueError, "target must be a C-contiguous array of shape"),
    (dict(reduction="avg"), ValueError, "reduction must be one of"),
    (dict(ignore_index=1.0), TypeError, "ignore_index must be an int"),
    (dict(label_smoothing="0.1"), TypeError, "label_smoothing must be a real number"),
    (dict(weight=np.ones(4, np.float64)), TypeError, "weight must have the dtype of x"),
])
def test_bad_cross_entropy_arguments_name_the_argument(change, error, words):
    arguments = dict(x=_scores((3, 4), np.float32), target=np.array([0, 1, 2]), weight=None,
                     ignore_index=-100, label_smoothing=0.0, reduction="mean") | change
    with pytest.raises(error, match=words):
        cpu.cross_entropy_forward(**arguments)


def test_backward_refuses_a_gradient_of_the_wrong_shape():
    x, target = _scores((3, 4), np.float32), np.array([0, 1, 2])
    loss, lse = cpu.cross_entropy_forward(x, target, None, -100, 0.0, "none")
    with pytest.raises(ValueError, match="dloss must be 1-D"):
        cpu.cross_entropy_backward(np.array(1.0, np.float32), x, target, lse, None, -100, 0.0,
                                   "none")
    with pytest.raises(TypeError, match="lse must have dtype float64"):
        cpu.cross_entropy_backward(loss, x, target, lse.astype(np.float32), None, -100, 0.0,
                                   "none")
