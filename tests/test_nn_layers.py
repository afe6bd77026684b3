"""nn layers, functional forms, losses and init against PyTorch (float32 and float64), gradcheck.

Layers go through one helper, `check_layer`: the torch module's weights are loaded into ours
with load_state_dict, then the forward output and the gradients of the input and of every
parameter are compared. Functional forms go through `check_op` from parity.py.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from parity import TOLERANCES, check_op

import tinygrad_norm as tn
from tinygrad_norm import nn
from tinygrad_norm.nn import functional as F

DTYPES = [np.float32, np.float64]
TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}


def check_layer(torch_layer: torch.nn.Module, our_layer: nn.Module, shape: tuple, dtype,
                seed: int = 0) -> None:
    """Same weights, same input: compare output, input gradient and every parameter gradient."""
    torch_layer = torch_layer.to(TORCH_DTYPES[dtype])
    our_layer.to(dtype)
    our_layer.load_state_dict(torch_layer.state_dict())
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=shape).astype(dtype)
    ours, theirs = tn.Tensor(x.copy(), requires_grad=True), torch.tensor(x, requires_grad=True)
    out_ours, out_theirs = our_layer(ours), torch_layer(theirs)
    tol = TOLERANCES["torch"][dtype]
    assert out_ours.shape == tuple(out_theirs.shape)
    assert out_ours.dtype == dtype
    np.testing.assert_allclose(out_ours.detach().numpy(), out_theirs.detach().numpy(), **tol)
    upstream = rng.standard_normal(out_ours.shape).astype(dtype)
    out_ours.backward(upstream)
    out_theirs.backward(torch.from_numpy(upstream))
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), err_msg="input", **tol)
    our_params = dict(our_layer.named_parameters())
    torch_params = dict(torch_layer.named_parameters())
    assert list(our_params) == list(torch_params)
    for name, param in torch_params.items():
        np.testing.assert_allclose(our_params[name].grad.numpy(), param.grad.numpy(),
                                   err_msg=name, **tol)


def gradcheck_layer(layer: nn.Module, shape: tuple, seed: int = 0) -> bool:
    """gradcheck in float64 with respect to the input and every parameter of the layer."""
    layer.double()
    rng = np.random.default_rng(seed)
    x = tn.Tensor(rng.uniform(-2, 2, size=shape), requires_grad=True)
    return tn.gradcheck(lambda inp, *params: layer(inp), (x, *layer.parameters()))


# name: (torch layer, our layer, input shape); one line per layer configuration
LAYERS = {
    "linear": (lambda: torch.nn.Linear(5, 3), lambda: nn.Linear(5, 3), (4, 5)),
    "linear_no_bias": (lambda: torch.nn.Linear(5, 3, bias=False),
                       lambda: nn.Linear(5, 3, bias=False), (4, 5)),
    "linear_3d_input": (lambda: torch.nn.Linear(4, 2), lambda: nn.Linear(4, 2), (2, 3, 4)),
    "linear_1d_input": (lambda: torch.nn.Linear(4, 2), lambda: nn.Linear(4, 2), (4,)),
    "conv": (lambda: torch.nn.Conv2d(3, 4, 3), lambda: nn.Conv2d(3, 4, 3), (2, 3, 7, 6)),
    "conv_stride_padding": (lambda: torch.nn.Conv2d(2, 3, 3, stride=2, padding=1),
                            lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1), (2, 2, 7, 8)),
    "conv_rect": (lambda: torch.nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2)),
                  lambda: nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2)), (1, 2, 6, 5)),
    "conv_dilation": (lambda: torch.nn.Conv2d(2, 2, 3, dilation=2, padding=1),
                      lambda: nn.Conv2d(2, 2, 3, dilation=2, padding=1), (2, 2, 7, 7)),
    "conv_same_odd_kernel": (lambda: torch.nn.Conv2d(2, 3, 3, padding="same"),
                             lambda: nn.Conv2d(2, 3, 3, padding="same"), (2, 2, 5, 6)),
    "conv_same_even_kernel": (lambda: torch.nn.Conv2d(2, 3, (2, 4), padding="same"),
                              lambda: nn.Conv2d(2, 3, (2, 4), padding="same"), (2, 2, 5, 7)),
    "conv_same_dilation": (lambda: torch.nn.Conv2d(2, 2, 2, padding="same", dilation=3),
                           lambda: nn.Conv2d(2, 2, 2, padding="same", dilation=3), (1, 2, 7, 6)),
    "conv_valid": (lambda: torch.nn.Conv2d(2, 3, 3, padding="valid"),
                   lambda: nn.Conv2d(2, 3, 3, padding="valid"), (2, 2, 5, 5)),
    "conv_no_bias": (lambda: torch.nn.Conv2d(2, 3, 3, bias=False),
                     lambda: nn.Conv2d(2, 3, 3, bias=False), (2, 2, 5, 5)),
    "conv_unbatched": (lambda: torch.nn.Conv2d(2, 3, 3, padding=1),
                       lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 5, 4)),
    "conv_odd_stride_leaves_remainder": (lambda: torch.nn.Conv2d(1, 2, 2, stride=3),
                                         lambda: nn.Conv2d(1, 2, 2, stride=3), (3, 1, 9, 7)),
    "conv_kernel_equals_input": (lambda: torch.nn.Conv2d(2, 3, (5, 4)),
                                 lambda: nn.Conv2d(2, 3, (5, 4)), (2, 2, 5, 4)),
    "conv_1x1": (lambda: torch.nn.Conv2d(3, 2, 1), lambda: nn.Conv2d(3, 2, 1), (2, 3, 3, 3)),
    "conv_groups": (lambda: torch.nn.Conv2d(4, 6, 3, groups=2, padding=1),
                    lambda: nn.Conv2d(4, 6, 3, groups=2, padding=1), (2, 4, 5, 4)),
    "maxpool": (lambda: torch.nn.MaxPool2d(2), lambda: nn.MaxPool2d(2), (2, 3, 6, 5)),
    "maxpool_stride_padding": (lambda: torch.nn.MaxPool2d(3, stride=2, padding=1),
                               lambda: nn.MaxPool2d(3, stride=2, padding=1), (2, 2, 7, 6)),
    "maxpool_dilation": (lambda: torch.nn.MaxPool2d(2, stride=1, dilation=2),
                         lambda: nn.MaxPool2d(2, stride=1, dilation=2), (1, 2, 6, 5)),
    "maxpool_ceil_mode": (lambda: torch.nn.MaxPool2d(2, ceil_mode=True),
                          lambda: nn.MaxPool2d(2, ceil_mode=True), (2, 2, 5, 7)),
    "maxpool_ceil_padding": (lambda: torch.nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                             lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                             (1, 2, 6, 8)),
    "maxpool_rect_unbatched": (lambda: torch.nn.MaxPool2d((2, 3), stride=(1, 2)),
                               lambda: nn.MaxPool2d((2, 3), stride=(1, 2)), (2, 5, 7)),
    "avgpool": (lambda: torch.nn.AvgPool2d(2), lambda: nn.AvgPool2d(2), (2, 3, 6, 5)),
    "avgpool_padding": (lambda: torch.nn.AvgPool2d(3, stride=2, padding=1),
                        lambda: nn.AvgPool2d(3, stride=2, padding=1), (2, 2, 7, 6)),
    "avgpool_exclude_pad": (
        lambda: torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
        lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 2, 7, 6)),
    "avgpool_ceil_mode": (lambda: torch.nn.AvgPool2d(2, ceil_mode=True),
                          lambda: nn.AvgPool2d(2, ceil_mode=True), (2, 2, 5, 7)),
    "avgpool_ceil_padding": (lambda: torch.nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
                             lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
                             (1, 2, 6, 8)),
    "avgpool_ceil_exclude_pad": (
        lambda: torch.nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True,
                                   count_include_pad=False),
        lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        (1, 2, 6, 8)),
    "avgpool_divisor_override": (lambda: torch.nn.AvgPool2d(2, padding=1, divisor_override=3),
                                 lambda: nn.AvgPool2d(2, padding=1, divisor_override=3),
                                 (2, 2, 5, 4)),
    "avgpool_unbatched": (lambda: torch.nn.AvgPool2d((3, 2), stride=1),
                          lambda: nn.AvgPool2d((3, 2), stride=1), (2, 5, 4)),
    "flatten": (lambda: torch.nn.Flatten(), lambda: nn.Flatten(), (2, 3, 4, 2)),
    "flatten_range": (lambda: torch.nn.Flatten(0, 2), lambda: nn.Flatten(0, 2), (2, 3, 4, 2)),
    "relu": (lambda: torch.nn.ReLU(), lambda: nn.ReLU(), (3, 5)),
    "sigmoid": (lambda: torch.nn.Sigmoid(), lambda: nn.Sigmoid(), (3, 5)),
    "tanh": (lambda: torch.nn.Tanh(), lambda: nn.Tanh(), (3, 5)),
    "softmax": (lambda: torch.nn.Softmax(dim=1), lambda: nn.Softmax(dim=1), (3, 5, 2)),
    "log_softmax": (lambda: torch.nn.LogSoftmax(dim=-1), lambda: nn.LogSoftmax(dim=-1), (3, 5)),
    "identity": (lambda: torch.nn.Identity(), lambda: nn.Identity(7, key="ignored"), (3, 5)),
    "dropout_eval_identity": (lambda: torch.nn.Dropout(0.5).eval(),
                              lambda: nn.Dropout(0.5).eval(), (3, 5)),
    "sequential_mlp": (
        lambda: torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)),
        lambda: nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)), (4, 5)),
    "sequential_cnn": (
        lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.MaxPool2d(2), torch.nn.Conv2d(3, 2, 2),
                                    torch.nn.AvgPool2d(2, ceil_mode=True), torch.nn.Flatten(),
                                    torch.nn.Linear(8, 3), torch.nn.LogSoftmax(dim=1)),
        lambda: nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(3, 2, 2), nn.AvgPool2d(2, ceil_mode=True), nn.Flatten(),
                              nn.Linear(8, 3), nn.LogSoftmax(dim=1)), (2, 1, 10, 9)),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_torch(name, dtype):
    torch_layer, our_layer, shape = LAYERS[name]
    check_layer(torch_layer(), our_layer(), shape, dtype)


# relu and max pooling have kinks, where finite differences mean nothing; random inputs in
# [-2, 2] land within eps = 1e-6 of one with probability ~1e-6 per element, so they are kept
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_passes_gradcheck(name):
    _, our_layer, shape = LAYERS[name]
    tn.manual_seed(0)
    assert gradcheck_layer(our_layer(), shape)


# ---------------------------------------------------------------- functional forms

FUNCTIONAL = {
    "linear": ([(4, 5), (3, 5), (3,)], TF.linear, F.linear),
    "linear_no_bias": ([(2, 3, 5), (3, 5)], TF.linear, F.linear),
    "conv2d": ([(2, 3, 6, 5), (4, 3, 3, 2), (4,)], TF.conv2d, F.conv2d),
    "conv2d_all_options": (
        [(2, 2, 7, 8), (3, 2, 3, 3), (3,)],
        lambda x, w, b: TF.conv2d(x, w, b, stride=(2, 1), padding=(2, 1), dilation=(1, 2)),
        lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(2, 1), dilation=(1, 2))),
    "conv2d_same": ([(1, 2, 5, 6), (2, 2, 4, 3)],
                    lambda x, w: TF.conv2d(x, w, padding="same"),
                    lambda x, w: F.conv2d(x, w, padding="same")),
    "conv2d_unbatched": ([(2, 5, 5), (3, 2, 2, 2)], TF.conv2d, F.conv2d),
    "max_pool2d": ([(2, 2, 7, 6)], lambda x: TF.max_pool2d(x, 3, 2, 1, ceil_mode=True),
                   lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True)),
    "max_pool2d_dilation": ([(1, 2, 7, 7)], lambda x: TF.max_pool2d(x, 2, 2, 1, dilation=2),
                            lambda x: F.max_pool2d(x, 2, 2, 1, dilation=2)),
    "avg_pool2d": ([(2, 2, 7, 6)], lambda x: TF.avg_pool2d(x, 3, 2, 1, True, False),
                   lambda x: F.avg_pool2d(x, 3, 2, 1, True, False)),
    "avg_pool2d_divisor": ([(2, 2, 6, 6)], lambda x: TF.avg_pool2d(x, 2, divisor_override=5),
                           lambda x: F.avg_pool2d(x, 2, divisor_override=5)),
    "relu": ([(3, 5)], TF.relu, F.relu),
    "log_softmax": ([(3, 5)], lambda x: TF.log_softmax(x, dim=1), lambda x: F.log_softmax(x, 1)),
    "log_softmax_dim0": ([(3, 4, 2)], lambda x: TF.log_softmax(x, dim=0),
                         lambda x: F.log_softmax(x, 0)),
    "mse_loss": ([(3, 4), (3, 4)], TF.mse_loss, F.mse_loss),
    "mse_loss_sum": ([(3, 4), (3, 4)], lambda a, b: TF.mse_loss(a, b, reduction="sum"),
                     lambda a, b: F.mse_loss(a, b, reduction="sum")),
    "mse_loss_none": ([(3, 4), (3, 4)], lambda a, b: TF.mse_loss(a, b, reduction="none"),
                      lambda a, b: F.mse_loss(a, b, reduction="none")),
    "mse_loss_module": ([(3, 4), (3, 4)], torch.nn.MSELoss(), nn.MSELoss()),
    "dropout_eval": ([(3, 4)], lambda x: TF.dropout(x, 0.3, training=False),
                     lambda x: F.dropout(x, 0.3, training=False)),
    "dropout_p0": ([(3, 4)], lambda x: TF.dropout(x, 0.0), lambda x: F.dropout(x, 0.0)),
    "dropout_p1": ([(3, 4)], lambda x: TF.dropout(x, 1.0), lambda x: F.dropout(x, 1.0)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_functional_matches_torch(name, dtype):
    shapes, torch_fn, our_fn = FUNCTIONAL[name]
    check_op(shapes, torch_fn, our_fn, dtype=dtype)


@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_functional_passes_gradcheck(name):
    shapes, _, our_fn = FUNCTIONAL[name]
    rng = np.random.default_rng(1)
    inputs = [tn.Tensor(rng.uniform(-2, 2, size=s), requires_grad=True) for s in shapes]
    assert tn.gradcheck(our_fn, inputs)


def test_max_pool2d_return_indices_match_torch():
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 8))
    for kwargs in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                   dict(kernel_size=(2, 3), stride=1, dilation=(2, 1), padding=(1, 1))):
        out, idx = nn.MaxPool2d(return_indices=True, **kwargs)(tn.Tensor(x))
        t_out, t_idx = torch.nn.MaxPool2d(return_indices=True, **kwargs)(torch.tensor(x))
        np.testing.assert_array_equal(out.numpy(), t_out.numpy())
        np.testing.assert_array_equal(idx.numpy(), t_idx.numpy())
    out, idx = F.max_pool2d(tn.Tensor(x[0]), 2, return_indices=True)
    np.testing.assert_array_equal(idx.numpy(), TF.max_pool2d(torch.tensor(x[0]), 2,
                                                             return_indices=True)[1].numpy())


# ---------------------------------------------------------------- geometry properties

GEOMETRY = settings(max_examples=60, deadline=None, derandomize=True, database=None)
PAIRS = st.tuples(st.integers(1, 3), st.integers(1, 3))


def _same_or_raise(torch_fn, our_fn, shapes) -> None:
    """Values and gradients equal PyTorch's where PyTorch accepts the arguments; a ValueError
    from us where PyTorch refuses them."""
    probe = [torch.zeros(s, dtype=torch.float64) for s in shapes]
    try:
        torch_fn(*probe)
    except (RuntimeError, ValueError):
        with pytest.raises(ValueError):
            our_fn(*[tn.zeros(*s, dtype=np.float64) for s in shapes])
        return
    check_op(shapes, torch_fn, our_fn)


@GEOMETRY
@given(size=st.tuples(st.integers(1, 9), st.integers(1, 9)), kernel=PAIRS, stride=PAIRS,
       dilation=PAIRS, padding=st.one_of(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                                         st.sampled_from(["same", "valid"])))
def test_conv2d_geometry_matches_torch(size, kernel, stride, dilation, padding):
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    _same_or_raise(lambda x, w: TF.conv2d(x, w, **kwargs), lambda x, w: F.conv2d(x, w, **kwargs),
                   [(2, 2) + size, (3, 2) + kernel])


@GEOMETRY
@given(size=st.tuples(st.integers(1, 9), st.integers(1, 9)), kernel=PAIRS, stride=PAIRS,
       dilation=PAIRS, padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       ceil_mode=st.booleans())
def test_max_pool2d_geometry_matches_torch(size, kernel, stride, dilation, padding, ceil_mode):
    if any(k // 2 < p <= (d * (k - 1) + 1) // 2 for k, p, d in zip(kernel, padding, dilation)):
        return  # we accept padding up to half the dilated kernel; PyTorch's CPU check is stricter
    kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                  ceil_mode=ceil_mode)
    try:
        if torch.isinf(TF.max_pool2d(torch.zeros((1, 1) + size), **kwargs)).any():
            return  # a dilated window lying wholly in the padding: PyTorch's backward aborts
    except RuntimeError:
        pass
    _same_or_raise(lambda x: TF.max_pool2d(x, **kwargs), lambda x: F.max_pool2d(x, **kwargs),
                   [(2, 2) + size])


@GEOMETRY
@given(size=st.tuples(st.integers(1, 9), st.integers(1, 9)), kernel=PAIRS, stride=PAIRS,
       padding=st.tuples(st.integers(0, 2), st.integers(0, 2)), ceil_mode=st.booleans(),
       count_include_pad=st.booleans())
def test_avg_pool2d_geometry_matches_torch(size, kernel, stride, padding, ceil_mode,
                                           count_include_pad):
    kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
                  count_include_pad=count_include_pad)
    _same_or_raise(lambda x: TF.avg_pool2d(x, **kwargs), lambda x: F.avg_pool2d(x, **kwargs),
                   [(2, 2) + size])


# ---------------------------------------------------------------- classification losses

CLASS_LOSS_CASES = {
    "mean": dict(),
    "sum": dict(reduction="sum"),
    "none": dict(reduction="none"),
    "weight": dict(weight=[0.2, 1.0, 3.0, 0.5]),
    "weight_sum": dict(weight=[0.2, 1.0, 3.0, 0.5], reduction="sum"),
    "ignore_index": dict(ignore_index=2),
    "ignore_index_none": dict(ignore_index=2, reduction="none"),
    "weight_and_ignore": dict(weight=[0.2, 1.0, 3.0, 0.5], ignore_index=1),
    "label_smoothing": dict(label_smoothing=0.2),
    "label_smoothing_weight_ignore": dict(label_smoothing=0.1, weight=[0.2, 1.0, 3.0, 0.5],
                                          ignore_index=0),
    "label_smoothing_none": dict(label_smoothing=0.3, reduction="none", ignore_index=3),
}


def _class_loss_fns(loss: str, case: str, labels: np.ndarray, dtype):
    kwargs = dict(CLASS_LOSS_CASES[case])
    weight = kwargs.pop("weight", None)
    our_kw, torch_kw = dict(kwargs), dict(kwargs)
    if weight is not None:
        our_kw["weight"] = tn.Tensor(np.array(weight, dtype=dtype))
        torch_kw["weight"] = torch.tensor(weight, dtype=TORCH_DTYPES[dtype])
    if loss == "nll_loss":
        our_kw.pop("label_smoothing", None)
        torch_kw.pop("label_smoothing", None)
        return (lambda x: TF.nll_loss(TF.log_softmax(x, 1), torch.from_numpy(labels), **torch_kw),
                lambda x: F.nll_loss(F.log_softmax(x, 1), tn.Tensor(labels), **our_kw))
    return (lambda x: TF.cross_entropy(x, torch.from_numpy(labels), **torch_kw),
            lambda x: F.cross_entropy(x, tn.Tensor(labels), **our_kw))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5), (2, 4, 3, 2)])
@pytest.mark.parametrize("case", list(CLASS_LOSS_CASES))
@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_classification_loss_matches_torch(loss, case, shape, dtype):
    labels = np.random.default_rng(3).integers(0, 4, size=(shape[0],) + shape[2:])
    labels.reshape(-1)[:4] = [0, 1, 2, 3]  # every class (and so every ignore_index) occurs
    torch_fn, our_fn = _class_loss_fns(loss, case, labels, dtype)
    check_op([shape], torch_fn, our_fn, dtype=dtype)


@pytest.mark.parametrize("case", ["mean", "weight_and_ignore", "label_smoothing_weight_ignore"])
@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_classification_loss_passes_gradcheck(loss, case):
    labels = np.array([[0, 3, 1], [2, 1, 1]])
    _, our_fn = _class_loss_fns(loss, case, labels, np.float64)
    x = tn.randn(2, 4, 3, dtype=np.float64, requires_grad=True)
    assert tn.gradcheck(our_fn, (x,))


def test_loss_modules_match_functional_and_torch():
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((5, 3)), rng.integers(0, 3, size=5)
    weight = np.array([0.5, 2.0, 1.0])
    ours = nn.CrossEntropyLoss(weight=tn.Tensor(weight), ignore_index=1, label_smoothing=0.1)
    theirs = torch.nn.CrossEntropyLoss(weight=torch.tensor(weight), ignore_index=1,
                                       label_smoothing=0.1)
    check_op([(5, 3)], lambda a: theirs(a, torch.from_numpy(labels)),
             lambda a: ours(a, tn.Tensor(labels)))
    np.testing.assert_allclose(
        nn.CrossEntropyLoss(reduction="sum")(tn.Tensor(x), labels).item(),
        TF.cross_entropy(torch.tensor(x), torch.from_numpy(labels), reduction="sum").item(),
        rtol=1e-12)
    check_op([(5, 3)], lambda a: torch.nn.NLLLoss()(a, torch.from_numpy(labels)),
             lambda a: nn.NLLLoss()(a, labels))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_cross_entropy_all_targets_ignored_is_nan_like_torch():
    x = np.zeros((2, 3))
    labels = np.array([1, 1])
    ours = F.cross_entropy(tn.Tensor(x), labels, ignore_index=1).item()
    theirs = TF.cross_entropy(torch.tensor(x), torch.from_numpy(labels), ignore_index=1).item()
    assert math.isnan(theirs) and math.isnan(ours)


# ---------------------------------------------------------------- dropout


def test_dropout_zeroes_fraction_p_and_scales_survivors():
    tn.manual_seed(0)
    p = 0.3
    x = tn.ones(200, 500, dtype=np.float64)
    out = nn.Dropout(p)(x).numpy()
    kept = out != 0
    assert abs(1 - kept.mean() - p) < 0.01  # 100,000 Bernoulli draws: std of the rate 0.0015
    np.testing.assert_allclose(out[kept], 1 / (1 - p), rtol=1e-15)
    assert abs(out.mean() - 1.0) < 0.02  # inverted dropout keeps the expectation


def test_dropout_backward_uses_the_forward_mask():
    tn.manual_seed(1)
    x = tn.randn(40, 30, requires_grad=True)
    out = F.dropout(x, 0.5)
    out.backward(np.ones(out.shape, dtype=np.float32))
    mask = out.detach().numpy() / x.detach().numpy()
    np.testing.assert_allclose(x.grad.numpy(), mask, rtol=1e-6)
    assert set(np.unique(np.round(mask, 5))) == {0.0, 2.0}
    assert x.grad.dtype == np.float32 and out.dtype == np.float32


def test_dropout_is_deterministic_under_manual_seed():
    x = tn.ones(50, 50)
    tn.manual_seed(7)
    first = nn.Dropout(0.4)(x).numpy()
    second = nn.Dropout(0.4)(x).numpy()
    tn.manual_seed(7)
    np.testing.assert_array_equal(nn.Dropout(0.4)(x).numpy(), first)
    assert not np.array_equal(first, second)


def test_dropout_eval_and_train_modes():
    x = tn.randn(10, 10)
    layer = nn.Dropout(0.9)
    assert layer.training
    assert layer.eval() is layer and not layer.training
    assert layer(x) is x or np.array_equal(layer(x).numpy(), x.numpy())
    layer.train()
    assert (layer(x).numpy() == 0).mean() > 0.5


def test_dropout_rejects_bad_probability():
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            nn.Dropout(p)
        with pytest.raises(ValueError, match="between 0 and 1"):
            F.dropout(tn.ones(2), p)


# ---------------------------------------------------------------- init


@pytest.mark.parametrize("make", [
    lambda lib: lib.Linear(300, 200),
    lambda lib: lib.Conv2d(12, 150, (5, 3)),
], ids=["linear", "conv2d"])
def test_default_init_bounds_equal_torch(make):
    tn.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = make(nn), make(torch.nn)
    weight = theirs.weight
    fan_in = weight.shape[1] * int(np.prod(weight.shape[2:]))
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) and the bias both use it
    for name in ("weight", "bias"):
        our_values = getattr(ours, name).detach().numpy()
        torch_values = getattr(theirs, name).detach().numpy()
        assert our_values.dtype == np.float32
        for values in (our_values, torch_values):
            # n draws of U(-b, b): P(max |w| < (1 - 10 / n) b) < e^-10; the sample std is
            # b / sqrt(3) within 5 sigma (0.45 / sqrt(n) relative), the mean 0 within 5 sigma
            n = values.size
            assert (1 - 10 / n) * bound < np.abs(values).max() <= bound
            assert abs(values.std() / (bound / math.sqrt(3)) - 1) < 5 * 0.45 / math.sqrt(n)
            assert abs(values.mean()) < 5 * bound / math.sqrt(3 * n)


def _draw(fn_name: str, shape: tuple, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    tn.manual_seed(0)
    torch.manual_seed(0)
    ours = getattr(nn.init, fn_name)(tn.zeros(*shape, dtype=np.float64), **kwargs)
    theirs = getattr(torch.nn.init, fn_name)(torch.zeros(shape, dtype=torch.float64), **kwargs)
    return ours.numpy(), theirs.numpy()


@pytest.mark.parametrize("fn_name, kwargs", [
    ("kaiming_uniform_", dict()),
    ("kaiming_uniform_", dict(a=math.sqrt(5))),
    ("kaiming_uniform_", dict(mode="fan_out", nonlinearity="relu")),
    ("xavier_uniform_", dict()),
    ("xavier_uniform_", dict(gain=2.5)),
    ("uniform_", dict(a=-0.3, b=0.7)),
])
def test_uniform_init_matches_torch_bounds(fn_name, kwargs):
    ours, theirs = _draw(fn_name, (120, 40, 3, 3), **kwargs)
    low, high = theirs.min(), theirs.max()
    width = high - low
    assert low - 1e-3 * width <= ours.min() < low + 1e-3 * width
    assert high - 1e-3 * width < ours.max() <= high + 1e-3 * width
    np.testing.assert_allclose(ours.std(), theirs.std(), rtol=0.02)


@pytest.mark.parametrize("fn_name, kwargs", [
    ("kaiming_normal_", dict()),
    ("kaiming_normal_", dict(mode="fan_out", nonlinearity="relu")),
    ("xavier_normal_", dict()),
    ("xavier_normal_", dict(gain=0.5)),
    ("normal_", dict()),
    ("normal_", dict(mean=1.5, std=0.2)),
])
def test_normal_init_matches_torch_moments(fn_name, kwargs):
    ours, theirs = _draw(fn_name, (120, 40, 3, 3), **kwargs)
    std = theirs.std()
    np.testing.assert_allclose(ours.std(), std, rtol=0.02)
    assert abs(ours.mean() - theirs.mean()) < 0.02 * std


def test_init_formulas_give_expected_std():
    fan_in, fan_out = 40 * 9, 120 * 9
    ours, _ = _draw("xavier_uniform_", (120, 40, 3, 3))
    np.testing.assert_allclose(np.abs(ours).max(), math.sqrt(6 / (fan_in + fan_out)), rtol=1e-3)
    ours, _ = _draw("kaiming_normal_", (120, 40, 3, 3), nonlinearity="relu")
    np.testing.assert_allclose(ours.std(), math.sqrt(2 / fan_in), rtol=0.02)


def test_constant_inits_fill_in_place_and_return_the_tensor():
    param = nn.Linear(3, 4).weight
    data = param.data
    assert nn.init.zeros_(param) is param and param.data is data
    np.testing.assert_array_equal(param.data, np.zeros((4, 3), np.float32))
    assert nn.init.ones_(param) is param
    np.testing.assert_array_equal(param.data, np.ones((4, 3), np.float32))
    assert nn.init.constant_(param, 2.5) is param and np.all(param.data == 2.5)
    assert nn.init.normal_(param) is param and param.dtype == np.float32 and param.data is data


def test_init_is_deterministic_under_manual_seed():
    tn.manual_seed(3)
    first = nn.Conv2d(2, 3, 3).state_dict()
    tn.manual_seed(3)
    second = nn.Conv2d(2, 3, 3).state_dict()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_layer_dtype_argument_gives_float64_parameters():
    layer = nn.Linear(3, 2, dtype=np.float64)
    assert layer.weight.dtype == np.float64 and layer.bias.dtype == np.float64
    assert nn.Conv2d(1, 1, 2, dtype=tn.float64).weight.dtype == np.float64


# ---------------------------------------------------------------- errors


def test_conv2d_wrong_channels_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expects 3 input channels.*\(2, 4, 5, 5\) with 4"):
        nn.Conv2d(3, 2, 3)(tn.randn(2, 4, 5, 5))


def test_conv2d_groups_that_do_not_divide_the_channels_are_a_clear_error():
    with pytest.raises(ValueError, match="divisible by groups=2"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="groups=3 must divide the output channels"):
        F.conv2d(tn.randn(1, 6, 5, 5), tn.randn(4, 2, 3, 3), groups=3)
    with pytest.raises(ValueError, match="expects 4 input channels"):
        F.conv2d(tn.randn(1, 6, 5, 5), tn.randn(4, 2, 3, 3), groups=2)


def test_conv2d_kernel_bigger_than_input_is_a_clear_error():
    with pytest.raises(ValueError, match=r"smaller than the dilated kernel"):
        nn.Conv2d(1, 1, 5)(tn.randn(1, 1, 4, 6))
    with pytest.raises(ValueError, match=r"smaller than the dilated kernel"):
        nn.Conv2d(1, 1, 3, dilation=3)(tn.randn(1, 1, 6, 6))


def test_conv2d_bad_input_rank_and_padding_are_clear_errors():
    with pytest.raises(ValueError, match=r"3D .* or 4D .* got a 2D input"):
        nn.Conv2d(1, 1, 1)(tn.randn(3, 3))
    with pytest.raises(ValueError, match="strided"):
        nn.Conv2d(1, 1, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="'valid', 'same'"):
        nn.Conv2d(1, 1, 3, padding="full")


def test_pool_kernel_bigger_than_input_is_a_clear_error():
    with pytest.raises(ValueError, match="too small"):
        nn.MaxPool2d(4)(tn.randn(1, 1, 3, 8))
    with pytest.raises(ValueError, match="too small"):
        nn.AvgPool2d(4)(tn.randn(1, 1, 8, 3))
    with pytest.raises(ValueError, match="at most half"):
        nn.MaxPool2d(2, padding=2)(tn.randn(1, 1, 8, 8))


@pytest.mark.parametrize("bad", [4, -1, 10])
@pytest.mark.parametrize("loss", [F.cross_entropy, F.nll_loss])
def test_out_of_range_class_index_is_a_clear_error(loss, bad):
    x = tn.randn(3, 4)
    with pytest.raises(ValueError, match=rf"target {bad} is out of bounds.*\[0, 4\)"):
        loss(x, np.array([0, bad, 1]))
    loss(x, np.array([0, bad, 1]), ignore_index=bad)  # an ignored index may be anything


def test_classification_loss_target_errors():
    with pytest.raises(TypeError, match="integer class indices"):
        F.cross_entropy(tn.randn(3, 4), tn.Tensor(np.zeros(3)))
    with pytest.raises(ValueError, match=r"needs target of shape \(3,\)"):
        F.cross_entropy(tn.randn(3, 4), np.zeros((3, 1), dtype=np.int64))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        F.cross_entropy(tn.randn(3, 4), np.zeros(3, dtype=np.int64), weight=tn.ones(3))
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss(reduction="avg")


def test_linear_wrong_in_features_is_a_clear_error():
    with pytest.raises(ValueError, match=r"last dim 5 \(in_features\).*\(2, 4\)"):
        nn.Linear(5, 3)(tn.randn(2, 4))


# ---------------------------------------------------------------- awkward inputs


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
])
def test_max_pool2d_ties_send_the_gradient_where_torch_does(kwargs):
    # after a ReLU most windows hold several equal zeros: PyTorch picks the first maximum
    x = np.random.default_rng(0).integers(-1, 2, size=(2, 2, 7, 7))
    check_op([x.shape], lambda t: TF.max_pool2d(TF.relu(t), **kwargs),
             lambda t: F.max_pool2d(F.relu(t), **kwargs), low=-1, high=1)
    theirs = TF.max_pool2d(torch.tensor(x * 1.0), return_indices=True, **kwargs)[1]
    ours = F.max_pool2d(tn.Tensor(x * 1.0), return_indices=True, **kwargs)[1]
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


NON_CONTIGUOUS = {
    "conv2d": (lambda t, w: TF.conv2d(t.permute(0, 3, 1, 2), w, padding=1),
               lambda t, w: F.conv2d(t.permute(0, 3, 1, 2), w, padding=1)),
    "conv2d_no_padding": (lambda t, w: TF.conv2d(t.permute(0, 3, 2, 1), w),
                          lambda t, w: F.conv2d(t.permute(0, 3, 2, 1), w)),
    "max_pool2d": (lambda t, w: TF.max_pool2d(t.permute(0, 3, 2, 1), 2) * w.sum(),
                   lambda t, w: F.max_pool2d(t.permute(0, 3, 2, 1), 2) * w.sum()),
    "avg_pool2d": (lambda t, w: TF.avg_pool2d(t.transpose(1, 3), 2, 1) * w.sum(),
                   lambda t, w: F.avg_pool2d(t.transpose(1, 3), 2, 1) * w.sum()),
    "linear": (lambda t, w: TF.linear(t.transpose(1, 3)[..., :3], w[:, :, 0, 0]),
               lambda t, w: F.linear(t.transpose(1, 3)[..., :3], w[:, :, 0, 0])),
}


@pytest.mark.parametrize("name", list(NON_CONTIGUOUS))
def test_non_contiguous_inputs_match_torch(name):
    torch_fn, our_fn = NON_CONTIGUOUS[name]
    check_op([(2, 5, 6, 3), (2, 3, 3, 3)], torch_fn, our_fn)


def test_layer_weight_gradients_without_input_gradient_and_under_no_grad():
    torch.manual_seed(0)
    theirs, ours = torch.nn.Conv2d(2, 3, 3, stride=2), nn.Conv2d(2, 3, 3, stride=2)
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 5)).astype(np.float32)
    ours(tn.Tensor(x)).sum().backward()
    theirs(torch.tensor(x)).sum().backward()
    for name in ("weight", "bias"):
        np.testing.assert_allclose(getattr(ours, name).grad.numpy(),
                                   getattr(theirs, name).grad.numpy(), rtol=1e-4, atol=1e-5)
    with tn.no_grad():
        assert not ours(tn.Tensor(x)).requires_grad


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_is_stable_for_huge_logits(dtype):
    labels = np.array([1, 2, 1, 0])
    check_op([(4, 3)], lambda t: TF.cross_entropy(t, torch.from_numpy(labels)),
             lambda t: F.cross_entropy(t, labels), dtype=dtype, low=-1000.0, high=1000.0)


def test_mse_loss_with_integer_target_keeps_the_input_dtype():
    for dtype in DTYPES:
        out = F.mse_loss(tn.ones(3, dtype=dtype), tn.Tensor([1, 2, 4]))
        expected = TF.mse_loss(torch.ones(3, dtype=TORCH_DTYPES[dtype]), torch.tensor([1, 2, 4]))
        assert out.dtype == dtype
        np.testing.assert_allclose(out.item(), expected.item())


def test_linear_refuses_mixed_dtypes_like_pytorch():
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError, match=r"linear: input, weight and bias must share one dtype"):
        layer(tn.randn(4, 3, dtype=np.float64))
    with pytest.raises(RuntimeError):
        torch.nn.Linear(3, 2)(torch.randn(4, 3, dtype=torch.float64))
