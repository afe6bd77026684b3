"""conv2d kernels (kernels/cpu/conv2d.py) against the float64 spec (kernels/reference_conv.py)
and PyTorch, forward and all three gradients; F.conv2d on the cpu device through them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import kernels.cpu as cpu
import tinygrad_norm as tn
from kernels import reference
from kernels.cpu import conv2d
from tinygrad_norm import device, nn
from tinygrad_norm.nn import functional as F

TOLERANCE = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}

# (stride, padding, dilation, groups); padding ((top, bottom), (left, right)) is asymmetric
GRID = list(itertools.product([1, 2, (1, 3)], [0, 1, (2, 0), ((0, 1), (2, 1))], [1, (2, 1)],
                              [1, 3]))


def _problem(dtype, shape=(2, 6, 7, 5), out_channels=3, kernel=(3, 2), groups=1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal((out_channels, shape[1] // groups) + kernel).astype(dtype)
    bias = rng.standard_normal(out_channels).astype(dtype)
    return x, weight, bias


def _torch_conv(x, weight, bias, stride, padding, dilation, groups, dy):
    """PyTorch's y, dx, dweight, dbias; asymmetric padding as an explicit pad first."""
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):
        (top, bottom), (left, right) = padding
        inp, padding = TF.pad(tx, (left, right, top, bottom)), 0
    else:
        inp = tx
    y = TF.conv2d(inp, tw, tb, stride, padding, dilation, groups)
    y.backward(torch.tensor(dy))
    return [t.detach().numpy() for t in (y, tx.grad, tw.grad, tb.grad)]


def _assert_close(ours, theirs, dtype, what):
    scale = max(1.0, float(np.abs(theirs).max()))
    np.testing.assert_allclose(ours, theirs, rtol=TOLERANCE[dtype]["rtol"],
                               atol=TOLERANCE[dtype]["atol"] * scale, err_msg=what)


@pytest.fixture(params=["direct", "product"])
def weight_gradient(request, monkeypatch):
    """Both dweight paths: the direct kernel for few rows of cols (this file's problems have
    at most 36), at any plane size here (DIRECT_MIN_PLANE = 0), and the BLAS product, forced
    by DIRECT_MAX_ROWS = 0."""
    if request.param == "product":
        monkeypatch.setattr(conv2d, "DIRECT_MAX_ROWS", 0)
    else:
        monkeypatch.setattr(conv2d, "DIRECT_MIN_PLANE", 0)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride, padding, dilation, groups", GRID)
def test_kernels_match_reference_and_torch(dtype, stride, padding, dilation, groups,
                                           weight_gradient):
    x, weight, bias = _problem(dtype, groups=groups)
    args = (stride, padding, dilation, groups)
    y, cols = cpu.conv2d_forward(x, weight, bias, *args)
    assert y.dtype == cols.dtype == dtype
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    grads = cpu.conv2d_backward(dy, x, weight, *args, (True, True, True), cols)
    recomputed = cpu.conv2d_backward(dy, x, weight, *args, (False, True, False))[1]
    np.testing.assert_array_equal(recomputed, grads[1])  # the same cols, from x again
    y_spec, cols_spec = reference.conv2d_forward(x, weight, bias, *args)
    np.testing.assert_array_equal(cols, cols_spec.astype(dtype))  # a copy: exact
    expected = [y_spec, *reference.conv2d_backward(dy, x, weight, *args)]
    theirs = _torch_conv(x.astype(np.float64), weight.astype(np.float64),
                         bias.astype(np.float64), *args, dy.astype(np.float64))
    for name, ours, spec, torch_value in zip(("y", "dx", "dweight", "dbias"), (y, *grads),
                                             expected, theirs):
        assert ours.dtype == dtype and ours.shape == spec.shape, name
        _assert_close(ours, spec, dtype, f"{name} vs reference")
        np.testing.assert_allclose(spec, torch_value, rtol=1e-12, atol=1e-12,
                                   err_msg=f"reference {name} vs torch")


# Stride 1 with an output as wide as the input takes the kernels' flat-run path (one shifted
# run per tap and sample, wrapped columns zeroed): same padding, asymmetric, dilated, a
# one-wide plane, and a parallel size
@pytest.mark.parametrize("shape, kernel, padding, dilation", [
    ((2, 3, 6, 5), (3, 3), 1, 1),
    ((2, 3, 6, 5), (3, 3), ((0, 2), (2, 0)), 1),
    ((2, 3, 7, 9), (3, 3), ((2, 1), (0, 4)), (1, 2)),
    ((3, 2, 5, 1), (2, 3), ((1, 0), (1, 1)), 1),
    ((4, 8, 19, 23), (3, 5), ((1, 1), (2, 2)), 1),  # > 65536 elements of cols: in parallel
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_width_matches_reference_and_torch(shape, kernel, padding, dilation, dtype):
    x, weight, bias = _problem(dtype, shape, 4, kernel)
    args = (1, padding, dilation, 1)
    y, cols = cpu.conv2d_forward(x, weight, bias, *args)
    assert y.shape[3] == shape[3]
    dy = np.random.default_rng(3).standard_normal(y.shape).astype(dtype)
    got = (y, *cpu.conv2d_backward(dy, x, weight, *args, (True, True, True), cols))
    y_spec, cols_spec = reference.conv2d_forward(x, weight, bias, *args)
    np.testing.assert_array_equal(cols, cols_spec.astype(dtype))
    want = (y_spec, *reference.conv2d_backward(dy, x, weight, *args))
    theirs = _torch_conv(*(a.astype(np.float64) for a in (x, weight, bias)), *args,
                         dy.astype(np.float64))
    for name, ours, spec, torch_value in zip(("y", "dx", "dweight", "dbias"), got, want, theirs):
        _assert_close(ours, spec, dtype, name)
        np.testing.assert_allclose(spec, torch_value, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("shape, out_channels, kernel", [
    ((1, 1, 1, 1), 1, (1, 1)),
    ((1, 1, 7, 11), 5, (7, 1)),
    ((3, 2, 13, 5), 7, (1, 5)),
    ((5, 6, 23, 17), 8, (3, 3)),  # im2col/col2im with more than 65536 elements: in parallel
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_odd_sizes_match_reference(shape, out_channels, kernel, dtype):
    x, weight, bias = _problem(dtype, shape, out_channels, kernel)
    args = (1, (kernel[0] // 2, 0), 1, 1)
    y, cols = cpu.conv2d_forward(x, weight, bias, *args)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    got = (y, *cpu.conv2d_backward(dy, x, weight, *args, (True, True, True), cols))
    want = (reference.conv2d_forward(x, weight, bias, *args)[0],
            *reference.conv2d_backward(dy, x, weight, *args))
    for name, ours, spec in zip(("y", "dx", "dweight", "dbias"), got, want):
        _assert_close(ours, spec, dtype, name)


# The direct dweight kernel (few rows of cols), on planes of at least DIRECT_MIN_PLANE outputs,
# where a layer takes it by itself. It runs 2 channels by 4 rows per pass, hence odd channel
# counts per group, row counts that are not a multiple of 4, one sample, and a parallel size
# (more than 65536 elements of dy, split over samples)
@pytest.mark.parametrize("shape, out_channels, kernel, groups", [
    ((1, 1, 12, 12), 1, (3, 3), 1),
    ((3, 2, 13, 12), 5, (1, 3), 1),
    ((2, 6, 14, 13), 9, (2, 3), 3),
    ((4, 4, 12, 12), 4, (3, 3), 4),
    ((9, 3, 32, 30), 32, (3, 3), 1),
])
@pytest.mark.parametrize("mask", [(False, True, True), (True, True, True), (False, True, False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_weight_gradient_matches_reference_and_the_product(
        shape, out_channels, kernel, groups, mask, dtype, monkeypatch):
    x, weight, _ = _problem(dtype, shape, out_channels, kernel, groups)
    assert shape[1] // groups * kernel[0] * kernel[1] <= conv2d.DIRECT_MAX_ROWS
    args = (1, 1, 1, groups)
    y, cols = cpu.conv2d_forward(x, weight, None, *args)
    assert y.shape[2] * y.shape[3] >= conv2d.DIRECT_MIN_PLANE
    dy = np.random.default_rng(4).standard_normal(y.shape).astype(dtype)
    direct = cpu.conv2d_backward(dy, x, weight, *args, mask, cols)
    monkeypatch.setattr(conv2d, "DIRECT_MAX_ROWS", 0)
    product = cpu.conv2d_backward(dy, x, weight, *args, mask, cols)
    spec = reference.conv2d_backward(dy, x, weight, *args)
    for name, wanted, ours, theirs, want in zip(("dx", "dweight", "dbias"), mask, direct,
                                                product, spec):
        if not wanted:
            assert ours is None and theirs is None, name
            continue
        assert ours.dtype == dtype and ours.shape == want.shape, name
        _assert_close(ours, want, dtype, f"direct {name}")
        _assert_close(theirs, want, dtype, f"product {name}")


# An empty batch, as PyTorch allows: empty output and dx, zero dweight and dbias (a 1-channel
# layer on the direct dweight path; a grouped one and a 40-channel one on the BLAS product)
@pytest.mark.parametrize("shape, weight_shape, groups", [
    ((0, 1, 12, 12), (4, 1, 3, 3), 1),
    ((0, 6, 5, 5), (6, 2, 3, 3), 3),
    ((0, 40, 5, 5), (8, 40, 3, 3), 1),
])
def test_an_empty_batch_matches_torch(shape, weight_shape, groups):
    x = np.zeros(shape, np.float32)
    weight = np.random.default_rng(0).standard_normal(weight_shape).astype(np.float32)
    bias = np.ones(weight_shape[0], np.float32)
    y, cols = cpu.conv2d_forward(x, weight, bias, 1, 1, 1, groups)
    dx, dweight, dbias = cpu.conv2d_backward(np.zeros(y.shape, np.float32), x, weight, 1, 1, 1,
                                             groups, (True, True, True), cols)
    theirs = _torch_conv(x, weight, bias, 1, 1, 1, groups, np.zeros(y.shape, np.float32))
    for name, ours, want in zip(("y", "dx", "dweight", "dbias"), (y, dx, dweight, dbias), theirs):
        assert ours.shape == want.shape, name
        np.testing.assert_array_equal(ours, want, err_msg=name)


@pytest.mark.parametrize("mask", list(itertools.product([False, True], repeat=3)))
def test_output_mask_skips_exactly_what_is_not_wanted(mask):
    x, weight, _ = _problem(np.float64, groups=3)
    args = (2, 1, 1, 3)
    dy = np.ones(cpu.conv2d_forward(x, weight, None, *args)[0].shape)
    full = reference.conv2d_backward(dy, x, weight, *args)
    for wanted, ours, spec in zip(mask, cpu.conv2d_backward(dy, x, weight, *args, mask), full):
        if wanted:
            _assert_close(ours, spec, np.float64, f"mask {mask}")
        else:
            assert ours is None


def test_first_layer_asks_for_no_input_gradient(monkeypatch):
    """An input that needs no gradient: backward skips w.T @ dy and col2im (output_mask)."""
    masks = []
    backward = cpu.conv2d_backward

    def record(*args):
        masks.append(args[-2])  # (..., output_mask, columns)
        return backward(*args)

    monkeypatch.setattr(cpu, "conv2d_backward", record)
    layer = nn.Conv2d(2, 3, 3)
    layer(tn.randn(2, 2, 5, 5)).sum().backward()
    layer.bias.requires_grad = False
    layer(tn.randn(2, 2, 5, 5, requires_grad=True)).sum().backward()
    assert masks == [(False, True, True), (True, True, False)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_conv2d_on_a_non_contiguous_input_matches_torch(dtype, weight_gradient):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((5, 4, 6, 2)).astype(dtype)  # x is a transposed view of it
    weight = rng.standard_normal((6, 2, 3, 3)).astype(dtype)
    bias = rng.standard_normal(6).astype(dtype)
    x = tn.Tensor(base, requires_grad=True)
    w, b = tn.Tensor(weight, requires_grad=True), tn.Tensor(bias, requires_grad=True)
    view = x.permute(3, 1, 2, 0)  # (2, 4, 6, 5), not contiguous
    assert not view.data.flags.c_contiguous
    y = F.conv2d(view, w, b, stride=(2, 1), padding=1, dilation=(1, 2),
                 groups=2)
    dy = rng.standard_normal(y.shape).astype(dtype)
    y.backward(tn.Tensor(dy))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (base, weight, bias))
    ty = TF.conv2d(tx.permute(3, 1, 2, 0), tw, tb, (2, 1), 1, (1, 2), 2)
    ty.backward(torch.tensor(dy))
    for name, ours, theirs in (("y", y.data, ty), ("dx", x.grad.data, tx.grad),
                               ("dweight", w.grad.data, tw.grad), ("dbias", b.grad.data, tb.grad)):
        _assert_close(ours, theirs.detach().numpy(), dtype, name)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_same_padding_with_an_even_kernel_matches_torch():
    """padding='same' with an even kernel pads one more row/column after: asymmetric."""
    x, weight, bias = _problem(np.float64, (2, 2, 6, 5), 3, (2, 4))
    y = F.conv2d(tn.Tensor(x), tn.Tensor(weight), tn.Tensor(bias), padding="same")
    expected = TF.conv2d(*(torch.tensor(a) for a in (x, weight, bias)), padding="same")
    _assert_close(y.data, expected.numpy(), np.float64, "same")


@pytest.mark.parametrize("stride, padding, dilation, groups", [
    (1, 1, 1, 1), (2, (1, 0), (1, 2), 2), ((1, 2), 0, 2, 4)])
def test_gradcheck(stride, padding, dilation, groups):
    rng = np.random.default_rng(4)
    x = tn.Tensor(rng.standard_normal((2, 4, 6, 5)), requires_grad=True)
    w = tn.Tensor(rng.standard_normal((4, 4 // groups, 2, 3)), requires_grad=True)
    b = tn.Tensor(rng.standard_normal(4), requires_grad=True)
    assert tn.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups),
                        (x, w, b))


def test_grouped_conv_on_the_cuda_device_matches_the_cpu_kernels():
    if device._cuda_unavailable_reason() is not None:
        pytest.skip(f"no CUDA device or simulator: {device._cuda_unavailable_reason()}")
    cpu_layer = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    gpu_layer = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    gpu_layer.load_state_dict(cpu_layer.state_dict())
    gpu_layer.to("cuda")
    x_np = np.random.default_rng(5).standard_normal((2, 4, 7, 6)).astype(np.float32)
    outputs = []
    for layer, where in ((cpu_layer, "cpu"), (gpu_layer, "cuda")):
        x = tn.Tensor(x_np, device=where, requires_grad=True)
        y = layer(x)
        y.backward(tn.ones_like(y))
        outputs.append([t.detach().cpu().numpy() for t in (y, x.grad, layer.weight.grad,
                                                           layer.bias.grad)])
    for ours, theirs in zip(*outputs):
        _assert_close(ours, theirs, np.float32, "cuda vs cpu")


def _valid(dtype=np.float32):
    x, weight, bias = _problem(dtype, (2, 4, 5, 5), 4, (3, 3), groups=2)
    return dict(x=x, weight=weight, bias=bias, stride=1, padding=1, dilation=1, groups=2)


@pytest.mark.parametrize("change, error, message", [
    (dict(weight=np.zeros((4, 3, 3, 3), np.float32)), ValueError, r"weight.shape\[1\]·groups"),
    (dict(groups=3), ValueError, "groups must be a positive int dividing"),
    (dict(groups=2.0), TypeError, "groups must be an int"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(stride=(1, 2, 3)), TypeError, "stride must be an int or a pair"),
    (dict(stride=(True, 1)), TypeError, "stride must be an int or a pair"),
    (dict(stride=(1, 0)), ValueError, "stride must be >= 1"),
    (dict(dilation=(0, 1)), ValueError, "dilation must be >= 1"),
    (dict(dilation=True), TypeError, "dilation must be an int or a pair"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(padding=((1, 1), (1, -1))), ValueError, "padding must be >= 0"),
    (dict(dilation=4), ValueError, r"output size .* dilation \(4, 4\)"),
    (dict(bias=np.zeros(3, np.float32)), ValueError, "bias must have shape"),
    (dict(weight=np.zeros((4, 2, 3, 3))), TypeError, "weight must have the dtype of x"),
    (dict(x=np.zeros((2, 4, 5, 5), np.float32)[..., ::-1]), ValueError, "x must be C-contig"),
    (dict(x=np.zeros((4, 5, 5), np.float32)), ValueError, "x must be 4-D"),
])
def test_bad_forward_arguments_are_clear_errors(change, error, message):
    with pytest.raises(error, match=message):
        cpu.conv2d_forward(**(_valid() | change))


@pytest.mark.parametrize("spelling", [
    dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
    dict(stride=[2, 1], padding=[1, 0], dilation=[1, 2]),
    dict(stride=(np.int64(2), np.int32(1)), padding=((1, 1), (0, 0)), dilation=(1, np.int64(2))),
    dict(stride=(2, 1), padding=((1, 1), 0), dilation=[1, 2]),
])
def test_every_spelling_of_the_geometry_gives_the_same_result(spelling):
    """ints, pairs as tuples, lists or NumPy integers, and padding per side all mean the same
    (the checks take exact Python ints by a short path and everything else by the long one)."""
    valid = _valid()
    expected, _ = cpu.conv2d_forward(**(valid | dict(stride=(2, 1), padding=((1, 1), (0, 0)),
                                                     dilation=(1, 2))))
    out, _ = cpu.conv2d_forward(**(valid | spelling))
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("change, error, message", [
    (dict(dy=np.zeros((2, 4, 5, 4), np.float32)), ValueError, "dy must have shape"),
    (dict(output_mask=(True, True)), TypeError, "output_mask must be three bools"),
    (dict(output_mask=(1, 1, 1)), TypeError, "output_mask must be three bools"),
    (dict(columns=np.zeros((18, 50), np.float32)), ValueError, "columns must have shape"),
    (dict(columns=np.zeros((36, 50))), TypeError, "columns must have the dtype of x"),
])
def test_bad_backward_arguments_are_clear_errors(change, error, message):
    valid = _valid()
    del valid["bias"]
    valid |= dict(dy=np.zeros((2, 4, 5, 5), np.float32), output_mask=(True, True, True))
    with pytest.raises(error, match=message):
        cpu.conv2d_backward(**(valid | change))
