"""Normalization layers against PyTorch: outputs, gradients, running statistics, state dicts,
gradcheck in both modes, bad input, odd layouts, NaN containment and float32 accuracy."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from norm_configs import CONFIGS, IDS

import tinygrad_norm as tn
from tinygrad_norm import nn

TOL = {np.float32: dict(atol=2e-5, rtol=1e-4), np.float64: dict(atol=1e-10, rtol=1e-8)}
# weight/bias gradients sum over every set: PyTorch's float32 rounding there is a few 1e-5
PARAM_GRAD_TOL = {np.float32: dict(atol=1e-4, rtol=1e-4), np.float64: TOL[np.float64]}



def make_pair(name, args, kwargs, dtype):
    """The same layer in both libraries, with random (not default) affine parameters."""
    ours = getattr(nn, name)(*args, **kwargs)
    theirs = getattr(torch.nn, name)(*args, **kwargs)
    if dtype == np.float64:
        ours.double()
        theirs.double()
    rng = np.random.default_rng(1)
    with torch.no_grad():
        for param in theirs.parameters():
            param.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, param.shape)))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def run_both(ours, theirs, x, rng):
    """Forward and backward through both; returns the outputs and input gradients."""
    x_ours = tn.Tensor(x.copy(), requires_grad=True)
    x_theirs = torch.tensor(x.copy(), requires_grad=True)
    y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
    upstream = rng.standard_normal(y_ours.shape).astype(x.dtype)
    y_ours.backward(upstream)
    y_theirs.backward(torch.from_numpy(upstream))
    return (y_ours.detach().numpy(), y_theirs.detach().numpy(), x_ours.grad.numpy(),
            x_theirs.grad.numpy())


def assert_same_state(ours, theirs, dtype):
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    for key, value in theirs_sd.items():
        assert ours_sd[key].shape == tuple(value.shape), key
        np.testing.assert_allclose(ours_sd[key], value.numpy(), err_msg=key, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, args, kwargs, shape", CONFIGS, ids=IDS)
def test_layer_matches_pytorch_in_training_then_eval(name, args, kwargs, shape, dtype):
    ours, theirs = make_pair(name, args, kwargs, dtype)
    rng = np.random.default_rng(0)
    for mode in ("train", "train", "train", "eval"):
        ours.train(mode == "train")
        theirs.train(mode == "train")
        x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
        y_ours, y_theirs, dx_ours, dx_theirs = run_both(ours, theirs, x, rng)
        assert y_ours.dtype == dtype
        np.testing.assert_allclose(y_ours, y_theirs, err_msg=f"{mode} output", **TOL[dtype])
        dx_tol = TOL[dtype]
        if dtype == np.float32 and x.size == x.shape[0] and name == "LayerNorm":
            # one element per set: dx is exactly 0, and both libraries return float32
            # rounding noise of r·dy = dy/sqrt(eps), about 300·ulp(dy)
            dx_tol = dict(atol=1e-4, rtol=0)
        np.testing.assert_allclose(dx_ours, dx_theirs, err_msg=f"{mode} dx", **dx_tol)
        assert_same_state(ours, theirs, dtype)
        for key, param in theirs.named_parameters():
            ours_grad = dict(ours.named_parameters())[key].grad
            np.testing.assert_allclose(ours_grad.numpy(), param.grad.numpy(), err_msg=key,
                                       **PARAM_GRAD_TOL[dtype])


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name, args, kwargs, shape", CONFIGS, ids=IDS)
def test_layer_passes_gradcheck(name, args, kwargs, shape, mode):
    layer = getattr(nn, name)(*args, **kwargs).double()
    rng = np.random.default_rng(2)
    for _, param in layer.named_parameters():
        param.data[...] = rng.uniform(0.5, 1.5, param.shape)
    if getattr(layer, "track_running_stats", False):
        layer.running_mean.data[...] = rng.standard_normal(layer.running_mean.shape)
        layer.running_var.data[...] = rng.uniform(0.5, 2, layer.running_var.shape)
    layer.train(mode == "train")
    x = tn.Tensor(rng.standard_normal(shape), requires_grad=True)
    params = [p for _, p in layer.named_parameters()]
    assert tn.gradcheck(lambda x, *ps: layer(x), (x, *params))


@pytest.mark.parametrize("name, args, kwargs, shape", CONFIGS[:12:3], ids=IDS[:12:3])
def test_state_dict_round_trip_through_pytorch_and_disk(name, args, kwargs, shape, tmp_path):
    ours, theirs = make_pair(name, args, kwargs, np.float32)
    rng = np.random.default_rng(3)
    run_both(ours, theirs, rng.standard_normal(shape).astype(np.float32), rng)
    tn.save(ours.state_dict(), tmp_path / "norm.npz")
    fresh = getattr(torch.nn, name)(*args, **kwargs)
    saved = tn.load(tmp_path / "norm.npz")
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in saved.items()})
    assert_same_state(ours, fresh, np.float32)
    assert fresh.state_dict().get("num_batches_tracked", torch.tensor(0)).dtype == torch.int64


@pytest.mark.parametrize("layout", ["transposed", "negative_stride", "fortran", "sliced"])
@pytest.mark.parametrize("name, args, shape", [
    ("BatchNorm2d", (3,), (4, 3, 5, 6)), ("LayerNorm", (6,), (4, 3, 5, 6)),
    ("GroupNorm", (3, 3), (4, 3, 5, 6)), ("InstanceNorm2d", (3,), (4, 3, 5, 6)),
    ("RMSNorm", (6,), (4, 3, 5, 6)),
])
def test_non_contiguous_inputs_give_the_contiguous_answer(name, args, shape, layout):
    rng = np.random.default_rng(4)
    base = rng.standard_normal(shape).astype(np.float32)
    x = {"transposed": base.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2),
         "negative_stride": base[::-1].copy()[::-1],
         "fortran": np.asfortranarray(base),
         "sliced": np.concatenate([base, base], axis=3)[..., ::2]}[layout]
    expected_x = np.ascontiguousarray(x)
    assert not x.flags.c_contiguous
    layer = getattr(nn, name)(*args)
    out = layer(tn.Tensor(x, requires_grad=True))
    reference = getattr(nn, name)(*args)(tn.Tensor(expected_x))
    np.testing.assert_array_equal(out.detach().numpy(), reference.detach().numpy())


def test_functional_forms_match_pytorch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6, 5))
    w, b = rng.uniform(0.5, 1.5, 6), rng.standard_normal(6)
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
    F, TF = nn.functional, torch.nn.functional
    pairs = [
        (F.layer_norm(tn.Tensor(x), (6, 5)), TF.layer_norm(tx, (6, 5))),
        (F.group_norm(tn.Tensor(x), 3, tn.Tensor(w), tn.Tensor(b)), TF.group_norm(tx, 3, tw, tb)),
        (F.instance_norm(tn.Tensor(x)), TF.instance_norm(tx)),
        (F.rms_norm(tn.Tensor(x), (5,)), TF.rms_norm(tx, (5,))),
        (F.batch_norm(tn.Tensor(x), None, None, training=True),
         TF.batch_norm(tx, None, None, training=True)),
        (F.batch_norm(tn.Tensor(x), tn.Tensor(b), tn.Tensor(w), tn.Tensor(w), tn.Tensor(b)),
         TF.batch_norm(tx, tb, tw, tw, tb)),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-10)


def test_functional_batch_norm_updates_running_buffers_in_place():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 3, 4))
    ours_mean, ours_var = tn.zeros(3, dtype=np.float64), tn.ones(3, dtype=np.float64)
    theirs_mean = torch.zeros(3, dtype=torch.float64)
    theirs_var = torch.ones(3, dtype=torch.float64)
    nn.functional.batch_norm(tn.Tensor(x), ours_mean, ours_var, training=True, momentum=0.2)
    torch.nn.functional.batch_norm(torch.from_numpy(x), theirs_mean, theirs_var, training=True,
                                   momentum=0.2)
    np.testing.assert_allclose(ours_mean.numpy(), theirs_mean.numpy(), atol=1e-12)
    np.testing.assert_allclose(ours_var.numpy(), theirs_var.numpy(), atol=1e-12)


@pytest.mark.parametrize("make, x_shape, message", [
    (lambda: nn.BatchNorm2d(3), (2, 3, 4), r"expected 4D input \(got 3D input\)"),
    (lambda: nn.BatchNorm1d(3), (2, 3, 4, 5), r"expected 2D or 3D input \(got 4D input\)"),
    (lambda: nn.BatchNorm2d(3), (2, 4, 5, 5), r"running_mean has shape \[3\] but the input has 4 "
                                              r"channels"),
    (lambda: nn.BatchNorm1d(3), (1, 3), r"Expected more than 1 value per channel when training"),
    (lambda: nn.InstanceNorm2d(3), (3, 4), r"expected 3D or 4D input \(got 2D input\)"),
    (lambda: nn.InstanceNorm1d(3), (2, 3, 1), r"Expected more than 1 spatial element"),
    (lambda: nn.InstanceNorm1d(3, affine=True), (2, 4, 5), r"expected 3 channels"),
    (lambda: nn.LayerNorm(5), (2, 4), r"Given normalized_shape=\[5\], expected input with "
                                      r"shape \[\*, 5\], but got input of size\[2, 4\]"),
    (lambda: nn.RMSNorm((2, 3)), (2, 3, 2), r"normalized_shape=\[2, 3\]"),
    (lambda: nn.GroupNorm(2, 4), (2, 6, 3), r"weight has shape \[4\], expected \[6\]"),
])
def test_bad_input_raises_clear_error_before_any_kernel(make, x_shape, message):
    with pytest.raises((ValueError, RuntimeError), match=message):
        make()(tn.randn(*x_shape))


def test_bad_constructor_arguments_raise():
    with pytest.raises(ValueError, match=r"num_channels \(6\) must be divisible by num_groups"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match="num_groups must be a positive int"):
        nn.GroupNorm(0, 6)
    with pytest.raises(ValueError, match="num_features must be a non-negative int"):
        nn.BatchNorm2d(-1)
    with pytest.raises(ValueError, match="normalized_shape"):
        nn.LayerNorm((-2,))


def test_dtype_mismatch_and_unsupported_dtype_are_clear():
    with pytest.raises(TypeError, match=r"input dtype float64 does not match weight dtype float32"):
        nn.LayerNorm(4)(tn.randn(2, 4, dtype=np.float64))
    with pytest.raises(TypeError, match=r"expected float32 or float64"):
        nn.LayerNorm(4)(tn.Tensor(np.ones((2, 4), dtype=np.int64)))


def test_instance_norm_without_affine_warns_on_channel_mismatch_and_normalizes():
    x = np.random.default_rng(7).standard_normal((2, 4, 5))
    with pytest.warns(UserWarning, match="got 4 channels"):
        out = nn.InstanceNorm1d(3)(tn.Tensor(x))
    np.testing.assert_allclose(out.numpy(), torch.nn.functional.instance_norm(
        torch.from_numpy(x)).numpy(), atol=1e-10)


@pytest.mark.parametrize("name, args, shape, set_axes", [
    ("LayerNorm", (5,), (4, 5), (1,)),
    ("GroupNorm", (2, 4), (3, 4, 3), (1, 2)),
    ("InstanceNorm1d", (4,), (3, 4, 3), (2,)),
    ("RMSNorm", (5,), (4, 5), (1,)),
])
def test_nan_stays_in_its_own_set(name, args, shape, set_axes):
    x = np.random.default_rng(8).standard_normal(shape).astype(np.float32)
    x[0, 0] = np.nan
    y = getattr(nn, name)(*args)(tn.Tensor(x)).detach().numpy()
    assert np.isnan(y[0]).any() and np.isfinite(y[1:]).all()


def test_batch_norm_nan_stays_in_its_channel():
    x = np.random.default_rng(9).standard_normal((4, 3, 5)).astype(np.float32)
    x[1, 0, 2] = np.nan
    y = nn.BatchNorm1d(3)(tn.Tensor(x)).detach().numpy()
    assert np.isnan(y[:, 0]).all() and np.isfinite(y[:, 1:]).all()


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.LayerNorm(5), (0, 5)), (lambda: nn.GroupNorm(2, 4), (0, 4, 3)),
    (lambda: nn.RMSNorm(5), (0, 3, 5)), (lambda: nn.BatchNorm1d(3), (0, 3, 4)),
    (lambda: nn.InstanceNorm1d(3), (0, 3, 4)),
])
def test_empty_batches_return_empty_outputs_like_pytorch(make, shape):
    x = tn.zeros(*shape, requires_grad=True)
    y = make()(x)
    assert y.shape == shape
    y.sum().backward()
    assert x.grad.shape == shape


def test_empty_batch_keeps_running_stats_and_counts_the_batch_like_pytorch():
    ours, theirs = nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    ours(tn.zeros(0, 3, 4))
    theirs(torch.zeros(0, 3, 4))
    assert_same_state(ours, theirs, np.float32)


@pytest.mark.parametrize("name, args, shape", [
    ("LayerNorm", (256,), (64, 256)), ("GroupNorm", (4, 16), (8, 16, 8, 8)),
    ("InstanceNorm2d", (16,), (8, 16, 8, 8)), ("BatchNorm2d", (16,), (8, 16, 8, 8)),
    ("RMSNorm", (256,), (64, 256)),
])
def test_float32_large_offset_is_accurate_where_pytorch_is_not(name, args, shape):
    """x = 1e4 + 0.01 N(0,1): naive float32 statistics lose most digits of the variance."""
    x = (1e4 + 0.01 * np.random.default_rng(10).standard_normal(shape)).astype(np.float32)
    exact = getattr(nn, name)(*args).double()(tn.Tensor(x.astype(np.float64))).detach().numpy()
    ours = getattr(nn, name)(*args)(tn.Tensor(x)).detach().numpy()
    assert np.abs(ours - exact).max() <= 1e-4


def test_rms_norm_default_eps_is_the_dtype_machine_epsilon():
    x = np.full((2, 3), 1e-5, dtype=np.float32)
    ours = nn.RMSNorm(3)(tn.Tensor(x)).detach().numpy()
    theirs = torch.nn.RMSNorm(3)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_eval_mode_gradient_never_reaches_running_statistics():
    layer = nn.BatchNorm1d(3).eval()
    names = [name for name, _ in layer.named_parameters()]
    assert names == ["weight", "bias"]
    layer(tn.randn(4, 3, requires_grad=True)).sum().backward()
    assert layer.running_mean.grad is None and not layer.running_mean.requires_grad


def test_train_eval_switch_changes_only_layers_with_running_stats():
    x = tn.randn(6, 4)
    for layer in (nn.LayerNorm(4), nn.GroupNorm(2, 4), nn.RMSNorm(4)):
        np.testing.assert_array_equal(layer.train()(x).detach().numpy(),
                                      layer.eval()(x).detach().numpy())
    bn = nn.BatchNorm1d(4)
    assert not np.allclose(bn.train()(x).detach().numpy(), bn.eval()(x).detach().numpy())


def test_group_norm_equals_instance_norm_and_layer_norm_special_cases():
    x = tn.Tensor(np.random.default_rng(11).standard_normal((3, 4, 5)))
    gn_instance = nn.GroupNorm(4, 4, affine=False).double()(x).numpy()
    np.testing.assert_allclose(gn_instance, nn.InstanceNorm1d(4).double()(x).numpy(),
                               atol=1e-12)
    gn_layer = nn.GroupNorm(1, 4, affine=False).double()(x).numpy()
    np.testing.assert_allclose(gn_layer, nn.LayerNorm((4, 5), elementwise_affine=False)
                               .double()(x).numpy(), atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), groups=st.integers(1, 4), per_group=st.integers(1, 4),
       spatial=st.lists(st.integers(1, 5), min_size=0, max_size=2))
def test_group_norm_matches_pytorch_on_random_shapes(n, groups, per_group, spatial):
    # PyTorch refuses N·(C/G)·spatial == 1 ("Expected more than 1 value per channel")
    assume(n * per_group * int(np.prod(spatial)) > 1)
    shape = (n, groups * per_group, *spatial)
    x = np.random.default_rng(n * 7 + groups).standard_normal(shape)
    ours, theirs = make_pair("GroupNorm", (groups, groups * per_group), {}, np.float64)
    y_ours, y_theirs, dx_ours, dx_theirs = run_both(ours, theirs, x, np.random.default_rng(0))
    np.testing.assert_allclose(y_ours, y_theirs, **TOL[np.float64])
    np.testing.assert_allclose(dx_ours, dx_theirs, **TOL[np.float64])


@settings(max_examples=25, deadline=None)
@given(lead=st.lists(st.integers(0, 4), min_size=1, max_size=2),
       trailing=st.lists(st.integers(1, 9), min_size=1, max_size=2))
def test_layer_norm_matches_pytorch_on_random_shapes(lead, trailing):
    x = np.random.default_rng(len(lead) + sum(trailing)).standard_normal((*lead, *trailing))
    ours, theirs = make_pair("LayerNorm", (tuple(trailing),), {}, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y_ours, y_theirs, dx_ours, dx_theirs = run_both(ours, theirs, x,
                                                        np.random.default_rng(0))
    np.testing.assert_allclose(y_ours, y_theirs, **TOL[np.float64])
    np.testing.assert_allclose(dx_ours, dx_theirs, **TOL[np.float64])
