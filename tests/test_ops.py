"""Every Tensor op, forward and backward, against PyTorch (float32 and float64) and gradcheck."""

import numpy as np
import pytest
import torch
from parity import check_op

import tinygrad_norm as tn

DTYPES = [np.float32, np.float64]

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b * b + 0.5),
    "maximum": lambda a, b: a.maximum(b) if isinstance(a, tn.Tensor) else torch.maximum(a, b),
}

UNARY = {
    "neg": lambda a: -a,
    "exp": lambda a: a.exp(),
    "log": lambda a: (a * a + 0.1).log(),
    "sqrt": lambda a: (a * a + 0.1).sqrt(),
    "abs": lambda a: a.abs(),
    "relu": lambda a: a.relu(),
    "sigmoid": lambda a: a.sigmoid(),
    "tanh": lambda a: a.tanh(),
    "pow_scalar": lambda a: (a * a + 0.5) ** 1.7,
    "square": lambda a: a**2,
    "scalar_arith": lambda a: 2.0 - (3.0 * a + 1.0) / 4.0,
    "rpow": lambda a: 2.0**a,
    "rdiv": lambda a: 1.0 / (a * a + 1.0),
    "clamp": lambda a: a.clamp(-0.5, 0.7),
    "log_softmax": lambda a: a.log_softmax(dim=-1),
    "softmax": lambda a: a.softmax(dim=0),
}

REDUCE = {
    "sum_all": lambda a: a.sum(),
    "sum_dim": lambda a: a.sum(dim=1),
    "sum_dims_keepdim": lambda a: a.sum(dim=(0, 2), keepdim=True),
    "mean_all": lambda a: a.mean(),
    "mean_neg_dim": lambda a: a.mean(dim=-1),
    "mean_keepdim": lambda a: a.mean(dim=1, keepdim=True),
    "var_all": lambda a: a.var(),
    "var_dim": lambda a: a.var(dim=1),
    "var_biased": lambda a: a.var(dim=2, unbiased=False, keepdim=True),
    "var_correction": lambda a: a.var(dim=(0, 1), correction=0),
    "std_dim": lambda a: a.std(dim=0),
    "max_all": lambda a: a.max(),
    "max_dim": lambda a: a.max(dim=1)[0],
    "max_dim_keepdim": lambda a: a.max(dim=-1, keepdim=True)[0],
    "min_dim": lambda a: a.min(dim=0)[0],
}

MOVEMENT = {
    "reshape": lambda a: a.reshape(4, -1),
    "reshape_tuple": lambda a: a.reshape((2, 12)),
    "view": lambda a: a.view(-1),
    "permute": lambda a: a.permute(2, 0, 1),
    "transpose": lambda a: a.transpose(0, 2),
    "flatten": lambda a: a.flatten(),
    "flatten_range": lambda a: a.flatten(1),
    "unsqueeze": lambda a: a.unsqueeze(1),
    "unsqueeze_neg": lambda a: a.unsqueeze(-1),
    "squeeze": lambda a: a.unsqueeze(0).squeeze(0),
    "squeeze_all": lambda a: a.reshape(1, 2, 1, 12).squeeze(),
    "expand": lambda a: a[:, :1, :].expand(2, 5, 4),
    "expand_new_dim": lambda a: a[0].expand(3, 3, 4),
    "slice": lambda a: a[1:, ::2, -2:],
    "int_index": lambda a: a[1, 0],
    "int_array_index": lambda a: a[:, [0, 2, 2]],
    "ellipsis": lambda a: a[..., 1],
    "contiguous_after_permute": lambda a: a.permute(1, 0, 2).contiguous(),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3, 4), (4,))])
def test_binary_op_matches_torch(name, shapes, dtype):
    check_op(shapes, BINARY[name], BINARY[name], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_op_matches_torch(name, dtype):
    check_op([(3, 5)], UNARY[name], UNARY[name], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(REDUCE))
def test_reduction_matches_torch(name, dtype):
    check_op([(3, 4, 5)], REDUCE[name], REDUCE[name], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(MOVEMENT))
def test_movement_op_matches_torch(name, dtype):
    check_op([(2, 3, 4)], MOVEMENT[name], MOVEMENT[name], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", [
    ((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
    ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((3, 4), (2, 4, 5)), ((1, 3, 4), (2, 4, 5)),
    ((4,), (2, 4, 5)), ((2, 3, 4), (4,)),
])
def test_matmul_matches_torch(shapes, dtype):
    check_op(shapes, lambda a, b: a @ b, lambda a, b: a @ b, dtype=dtype)


def test_pow_tensor_exponent_matches_torch():
    check_op([(3, 4), (3, 4)], lambda a, b: (a * a + 0.5) ** b, lambda a, b: (a * a + 0.5) ** b)


def test_cat_and_stack_match_torch():
    check_op([(2, 3), (4, 3)], lambda a, b: torch.cat([a, b], 0),
             lambda a, b: tn.cat([a, b], 0))
    check_op([(2, 3), (2, 3)], lambda a, b: torch.stack([a, b], 1),
             lambda a, b: tn.stack([a, b], 1))


def test_repeated_integer_index_accumulates_gradient():
    check_op([(5, 2)], lambda a: a[[0, 0, 3, 0]], lambda a: a[[0, 0, 3, 0]])


def test_tensor_used_twice_accumulates_both_paths():
    check_op([(3, 3)], lambda a: a * a.exp() + a @ a, lambda a: a * a.exp() + a @ a)


@pytest.mark.parametrize("name", list(UNARY) + list(REDUCE) + list(MOVEMENT))
def test_op_passes_gradcheck(name):
    fn = {**UNARY, **REDUCE, **MOVEMENT}[name]
    shape = (3, 5) if name in UNARY else (2, 3, 4)
    x = tn.randn(*shape, dtype=np.float64, requires_grad=True)
    assert tn.gradcheck(fn, (x,))


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_op_passes_gradcheck_with_broadcasting(name):
    a = tn.randn(3, 1, dtype=np.float64, requires_grad=True)
    b = tn.randn(1, 4, dtype=np.float64, requires_grad=True)
    assert tn.gradcheck(BINARY[name], (a, b))


def test_float32_scalar_arithmetic_keeps_float32():
    x = tn.ones(3)
    for out in (x + 1.5, 2 * x, x / 3, 1 - x, x**2, -x, x.mean(), x.var()):
        assert out.dtype == np.float32


def test_mixed_dtypes_promote_like_torch():
    assert (tn.ones(2) + tn.ones(2, dtype=np.float64)).dtype == np.float64


def test_float_tensor_with_integer_tensor_keeps_the_float_dtype_like_torch():
    x = tn.Tensor(np.ones(3, np.float32), requires_grad=True)
    labels = tn.Tensor(np.arange(3))
    for out, theirs in [(x * labels, torch.ones(3) * torch.arange(3)),
                        (x * (labels > 0), torch.ones(3) * (torch.arange(3) > 0))]:
        assert out.dtype == np.float32 and theirs.dtype == torch.float32
        np.testing.assert_array_equal(out.detach().numpy(), theirs.numpy())
    (x * labels).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 1, 2])
