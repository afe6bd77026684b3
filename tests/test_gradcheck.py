"""gradcheck itself: it accepts right gradients and names what is wrong in wrong ones."""

import numpy as np
import pytest

import tinygrad_norm as tn


class WrongSquare(tn.Function):
    """x^2 with a deliberately wrong backward (3x instead of 2x)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return (3 * a * grad,)


def test_correct_gradients_pass():
    x = tn.randn(3, 4, dtype=np.float64, requires_grad=True)
    w = tn.randn(4, 2, dtype=np.float64, requires_grad=True)
    assert tn.gradcheck(lambda x, w: (x @ w).tanh(), (x, w))


def test_wrong_gradient_raises_with_input_element_and_values():
    x = tn.Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    with pytest.raises(tn.GradcheckError) as info:
        tn.gradcheck(WrongSquare.apply, (x,))
    message = str(info.value)
    assert "input 0" in message and "element (2,)" in message
    assert "analytic 9" in message and "numerical 6" in message


def test_only_inputs_requiring_grad_are_checked_and_grads_are_restored():
    x = tn.randn(3, dtype=np.float64, requires_grad=True)
    x.grad = tn.ones(3, dtype=np.float64)
    constant = tn.randn(3, dtype=np.float64)
    assert tn.gradcheck(lambda a, b: a * b, (x, constant))
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def test_float32_inputs_are_refused_with_advice():
    with pytest.raises(TypeError, match=r"float64.*\.double\(\)"):
        tn.gradcheck(lambda a: a * 2, (tn.ones(2, requires_grad=True),))


def test_nothing_to_check_is_an_error():
    with pytest.raises(ValueError, match="requires_grad"):
        tn.gradcheck(lambda a: a * 2, (tn.ones(2, dtype=np.float64),))


def test_tolerances_are_respected():
    x = tn.Tensor(np.array([1.0]), requires_grad=True)
    # analytic 3 vs numerical 2: fails at default tolerances, passes when rtol allows 50 %
    assert tn.gradcheck(WrongSquare.apply, (x,), rtol=0.6)


def test_multiple_outputs_are_all_checked():
    x = tn.randn(4, dtype=np.float64, requires_grad=True)
    assert tn.gradcheck(lambda a: (a.exp(), a.sum()), (x,))
