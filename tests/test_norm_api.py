"""The normalization API as PyTorch 2.13 has it, each rule checked by running PyTorch:
constructor signatures, eps semantics, edge cases (empty and 1-D batch_norm input,
one-element sets, zero-size dimensions in every position) and the Lazy modules."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import torch

import tinygrad_norm as tn
from tinygrad_norm import nn
from tinygrad_norm.nn import functional as F

MODULES = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d",
           "InstanceNorm3d", "GroupNorm", "LayerNorm", "RMSNorm", "LocalResponseNorm",
           "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d", "LazyInstanceNorm1d",
           "LazyInstanceNorm2d", "LazyInstanceNorm3d"]


def _signature(obj) -> list:
    return [(p.name, p.kind, p.default) for p in inspect.signature(obj).parameters.values()]


@pytest.mark.parametrize("name", MODULES)
def test_constructor_signature_is_pytorchs(name):
    """Names, order, keyword-only-ness (bias= after *) and defaults."""
    assert _signature(getattr(nn, name)) == _signature(getattr(torch.nn, name))


@pytest.mark.parametrize("make", [
    lambda m: m.BatchNorm2d(3, affine=True, bias=False),
    lambda m: m.InstanceNorm1d(3, affine=True, bias=False, track_running_stats=True),
    lambda m: m.GroupNorm(2, 4, bias=False),
    lambda m: m.LayerNorm((2, 3), bias=False),
    lambda m: m.BatchNorm1d(3, affine=False, bias=False),
    lambda m: m.GroupNorm(2, 4, affine=False),
    lambda m: m.RMSNorm(4, elementwise_affine=False),
])
def test_bias_false_leaves_bias_none_and_out_of_state_dict(make):
    ours, theirs = make(nn), make(torch.nn)
    assert (getattr(ours, "bias", None) is None) == (getattr(theirs, "bias", None) is None)
    assert list(ours.state_dict()) == list(theirs.state_dict())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_device_arguments(dtype):
    for module in (nn.BatchNorm1d(3, dtype=dtype, device="cpu"), nn.GroupNorm(1, 3, dtype=dtype),
                   nn.LayerNorm(3, dtype=dtype), nn.RMSNorm(3, dtype=dtype),
                   nn.InstanceNorm2d(3, affine=True, track_running_stats=True, dtype=dtype)):
        floats = [v for v in module.state_dict().values() if v.dtype.kind == "f"]
        assert floats and all(v.dtype == dtype for v in floats)
    assert nn.BatchNorm1d(3, dtype=dtype).num_batches_tracked.dtype == np.int64


# ----------------------------------------------------------------------------------- eps

EPS_VALUES = [0.0, -1e-5, -1.0, np.float32(1e-3), np.float64(1e-3), np.int64(1), True, False,
              float("nan"), float("inf"), "1e-5", None]


def _layers(lib):
    """(name, callable(x, eps)) for every functional form and module, PyTorch's or ours."""
    F_ = lib.nn.functional
    m = lib.nn
    zeros, ones = (lambda: lib.zeros(3)), (lambda: lib.ones(3))
    return [
        ("batch_norm train", lambda x, e: F_.batch_norm(x, None, None, training=True, eps=e)),
        ("batch_norm train running",
         lambda x, e: F_.batch_norm(x, zeros(), ones(), training=True, eps=e)),
        ("batch_norm eval", lambda x, e: F_.batch_norm(x, zeros(), ones(), training=False, eps=e)),
        ("BatchNorm1d train", lambda x, e: m.BatchNorm1d(3, eps=e)(x)),
        ("BatchNorm1d eval", lambda x, e: m.BatchNorm1d(3, eps=e).eval()(x)),
        ("BatchNorm1d eval untracked",
         lambda x, e: m.BatchNorm1d(3, eps=e, track_running_stats=False).eval()(x)),
        ("instance_norm", lambda x, e: F_.instance_norm(x, eps=e)),
        ("InstanceNorm1d", lambda x, e: m.InstanceNorm1d(3, eps=e)(x)),
        ("group_norm", lambda x, e: F_.group_norm(x, 3, eps=e)),
        ("GroupNorm", lambda x, e: m.GroupNorm(3, 3, eps=e)(x)),
        ("layer_norm", lambda x, e: F_.layer_norm(x, (5,), eps=e)),
        ("LayerNorm", lambda x, e: m.LayerNorm(5, eps=e)(x)),
        ("rms_norm", lambda x, e: F_.rms_norm(x, (5,), eps=e)),
        ("RMSNorm", lambda x, e: m.RMSNorm(5, eps=e)(x)),
    ]


def _outcome(fn, x, eps):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            y = fn(x, eps)
        except Exception as err:  # noqa: BLE001  (the type is what is compared)
            return type(err)
    return y.detach().numpy()


@pytest.mark.parametrize("eps", EPS_VALUES, ids=repr)
def test_eps_rules_are_pytorchs(eps):
    """Same exception type, or the same result: BatchNorm in training refuses eps <= 0 and in
    eval eps < 0 (ValueError); every other layer computes with any real eps, negative, NaN
    and infinite included; numpy scalars and bools count as numbers; a non-number is a
    TypeError (None is RMSNorm's finfo(dtype).eps)."""
    x = np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32)
    for (name, ours), (_, theirs) in zip(_layers(tn), _layers(torch)):
        got, expected = _outcome(ours, tn.Tensor(x), eps), _outcome(theirs, torch.tensor(x), eps)
        if isinstance(expected, type):
            assert got is expected or (isinstance(got, type) and issubclass(got, expected)), (
                f"{name}: PyTorch raises {expected.__name__}, ours gave {got}")
        else:
            assert not isinstance(got, type), f"{name}: ours raised {got.__name__}"
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, equal_nan=True,
                                       err_msg=name)


def test_batch_norm_eps_messages_name_the_rule():
    x = tn.randn(4, 3)
    with pytest.raises(ValueError, match="eps must be positive during training, but got 0.0"):
        F.batch_norm(x, None, None, training=True, eps=0.0)
    with pytest.raises(ValueError, match="eps must be non-negative, but got -1.0"):
        F.batch_norm(x, tn.zeros(3), tn.ones(3), training=False, eps=-1.0)


# ---------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("running", [None, 0, 1, 3])
def test_batch_norm_of_an_empty_1d_input_returns_it_as_pytorch(training, running):
    buffers = (None, None) if running is None else (np.zeros(running), np.ones(running))
    x = tn.Tensor(np.zeros(0), requires_grad=True)
    y = F.batch_norm(x, *buffers, training=training)
    expected = torch.nn.functional.batch_norm(
        torch.zeros(0, dtype=torch.float64), *(None if b is None else torch.from_numpy(b)
                                               for b in buffers), training=training)
    assert y.shape == tuple(expected.shape) == (0,)
    y.sum().backward()
    assert x.grad.shape == (0,)


@pytest.mark.parametrize("shape", [(3,), (1,), ()])
def test_batch_norm_of_other_inputs_below_2d_raises_as_pytorch(shape):
    for training in (True, False):
        with pytest.raises(Exception):  # noqa: B017  (PyTorch: IndexError or RuntimeError)
            torch.nn.functional.batch_norm(torch.zeros(shape), torch.zeros(3), torch.ones(3),
                                           training=training)
        with pytest.raises(ValueError):  # "more than 1 value per channel" or "at least 2 dims"
            F.batch_norm(tn.zeros(*shape), tn.zeros(3), tn.ones(3), training=training)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["layer_norm", "group_norm", "instance_norm_eval"])
def test_one_element_sets_give_exactly_zero_input_gradient(case, dtype):
    """x - mean(x) is 0 for a one-element set, so y is constant and dx = 0: exactly what a
    float64 computation gives, where float32 PyTorch returns rounding noise."""
    rng = np.random.default_rng(4)
    x = tn.Tensor(rng.standard_normal((6, 3)).astype(dtype) * 100, requires_grad=True)
    weight = tn.Tensor(rng.uniform(1, 3, 3).astype(dtype), requires_grad=True)
    if case == "layer_norm":
        y = F.layer_norm(x.reshape(18, 1), (1,), weight[:1].detach(), None)
    elif case == "group_norm":
        y = F.group_norm(x, 3, weight)  # groups of one channel, no spatial positions
    else:
        y = F.group_norm(x.reshape(6, 3, 1), 3, weight)
    y.backward(tn.Tensor(rng.standard_normal(y.shape).astype(dtype)))
    assert np.all(x.grad.numpy() == 0)
    assert np.all(y.detach().numpy() == 0)


def _zero_size_shapes():
    for ndim in (2, 3, 4):
        for position in range(ndim):
            shape = [2, 3, 4, 5][:ndim]
            shape[position] = 0
            yield tuple(shape)


def _calls(lib, shape):
    F_ = lib.nn.functional
    c = shape[1]
    zeros, ones = (lambda: lib.zeros(c)), (lambda: lib.ones(c))
    calls = {
        "batch_norm train": lambda x: F_.batch_norm(x, zeros(), ones(), training=True),
        "batch_norm eval": lambda x: F_.batch_norm(x, zeros(), ones(), training=False),
        "instance_norm": lambda x: F_.instance_norm(x),
        "group_norm": lambda x: F_.group_norm(x, 1),
        "layer_norm": lambda x: F_.layer_norm(x, shape[-1:]),
        "layer_norm all": lambda x: F_.layer_norm(x, shape[1:]),
        "rms_norm": lambda x: F_.rms_norm(x, shape[-1:]),
        "local_response_norm": lambda x: F_.local_response_norm(x, 2),
    }
    return calls


@pytest.mark.parametrize("shape", list(_zero_size_shapes()), ids=str)
def test_zero_size_dimensions_in_every_position(shape):
    """Each call on an input with a zero-size dimension: PyTorch's exception type, or the
    same (empty) output with gradients of the input's shape and the same running buffers."""
    for name, ours in _calls(tn, shape).items():
        theirs = _calls(torch, shape)[name]
        x_theirs = torch.zeros(shape, requires_grad=True)
        try:
            expected = theirs(x_theirs)
        except Exception as err:  # noqa: BLE001
            with pytest.raises(type(err)):
                ours(tn.zeros(*shape))
            continue
        x = tn.Tensor(np.zeros(shape, np.float32), requires_grad=True)
        y = ours(x)
        assert y.shape == tuple(expected.shape), name
        np.testing.assert_array_equal(y.detach().numpy(), expected.detach().numpy(), name)
        if expected.requires_grad and y.requires_grad:
            y.sum().backward()
            assert x.grad.shape == shape, name


def test_batch_norm_running_stats_untouched_by_an_empty_batch():
    for shape in ((0, 3, 4), (2, 3, 0)):
        mean, var = tn.zeros(3), tn.ones(3)
        F.batch_norm(tn.zeros(*shape), mean, var, training=True)
        assert np.all(mean.numpy() == 0) and np.all(var.numpy() == 1)


def test_group_norm_refuses_one_value_per_group_as_pytorch():
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        F.group_norm(tn.randn(1, 3, 1), 3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        torch.nn.functional.group_norm(torch.randn(1, 3, 1), 3)
    for bad in (2.0, True):
        with pytest.raises(TypeError, match="num_groups must be an int"):
            F.group_norm(tn.randn(2, 4, 3), bad)


# ---------------------------------------------------------------------------- Lazy modules

LAZY = [("LazyBatchNorm1d", (4, 5)), ("LazyBatchNorm2d", (2, 5, 3, 3)),
        ("LazyBatchNorm3d", (2, 5, 2, 2, 2)), ("LazyInstanceNorm1d", (2, 5, 6)),
        ("LazyInstanceNorm2d", (2, 5, 3, 3)), ("LazyInstanceNorm3d", (2, 5, 2, 2, 2))]


@pytest.mark.parametrize("name, shape", LAZY)
def test_lazy_module_infers_num_features_and_becomes_its_class(name, shape):
    ours, theirs = getattr(nn, name)(momentum=0.3), getattr(torch.nn, name)(momentum=0.3)
    assert ours.has_uninitialized_params() and ours.num_features == 0
    # PyTorch stores placeholder objects for the uninitialized tensors; we leave them out
    assert list(ours.state_dict()) == [k for k, v in theirs.state_dict().items()
                                       if not isinstance(v, torch.nn.parameter.
                                                         UninitializedTensorMixin)]
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    y, expected = ours(tn.Tensor(x)), theirs(torch.from_numpy(x))
    assert type(ours).__name__ == type(theirs).__name__ == name[4:]
    assert ours.num_features == theirs.num_features == 5
    np.testing.assert_allclose(y.detach().numpy(), expected.detach().numpy(), rtol=1e-5,
                               atol=1e-5)
    state, expected_state = ours.state_dict(), theirs.state_dict()
    assert list(state) == list(expected_state)
    for key, value in expected_state.items():
        np.testing.assert_allclose(state[key], value.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=key)


def test_lazy_module_loads_a_state_dict_into_its_uninitialized_tensors():
    source = torch.nn.BatchNorm1d(4)
    with torch.no_grad():
        source.running_mean += 1
        source.weight *= 2
    ours, theirs = nn.LazyBatchNorm1d(), torch.nn.LazyBatchNorm1d()
    ours.load_state_dict(source.state_dict())
    theirs.load_state_dict(source.state_dict())
    assert not ours.has_uninitialized_params()
    assert type(ours).__name__ == "LazyBatchNorm1d" and ours.num_features == 0  # as PyTorch
    x = np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32)
    y, expected = ours.eval()(tn.Tensor(x)), theirs.eval()(torch.from_numpy(x))
    np.testing.assert_allclose(y.detach().numpy(), expected.detach().numpy(), rtol=1e-6,
                               atol=1e-6)
    with pytest.raises(RuntimeError, match=r'Missing key\(s\).*"bias", "running_mean"'):
        nn.LazyBatchNorm1d().load_state_dict({"weight": np.ones(3, np.float32)})


def test_lazy_module_defaults_and_dtype_follow_pytorch():
    for name in ("LazyInstanceNorm1d", "LazyBatchNorm2d"):
        ours, theirs = getattr(nn, name)(), getattr(torch.nn, name)()
        assert (ours.affine, ours.track_running_stats) == (theirs.affine,
                                                           theirs.track_running_stats)
    lazy = nn.LazyBatchNorm1d(dtype=np.float64)
    lazy(tn.randn(4, 3, dtype=np.float64))
    assert lazy.weight.dtype == lazy.running_var.dtype == np.float64
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        nn.LazyBatchNorm1d()(tn.randn(2, 3, 4, 4))
