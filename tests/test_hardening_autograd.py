"""Autograd edges against PyTorch's behaviour: truth values and Python conversions, grad mode
per entry (recursion, threads, generators), the version counter that catches in-place changes
before backward, released graphs freeing their activations, and custom Functions."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest
import torch

import tinygrad_norm as tn
from tinygrad_norm.nn import functional as F

INPLACE_MESSAGE = ("one of the variables needed for gradient computation has been modified "
                   "by an inplace operation")

# ---------------------------------------------------------------- truth values, conversions


@pytest.mark.parametrize("values", [[-1.0], [0.0], [2.5], 3.0, [[True]], 0, [float("nan")]])
def test_one_element_tensors_convert_like_torch(values):
    ours, theirs = tn.Tensor(values), torch.tensor(values)
    assert bool(ours) == bool(theirs)
    assert bool(ours > 0) == bool(theirs > 0)
    if not np.isnan(np.asarray(values, dtype=float)).any():
        assert int(ours) == int(theirs)
    assert float(ours) == float(theirs) or np.isnan(float(theirs))


@pytest.mark.parametrize("values", [[1.0, 2.0], [], [[1.0], [2.0]]])
def test_bool_of_many_or_no_elements_is_ambiguous_and_float_refused(values):
    ours, theirs = tn.Tensor(values), torch.tensor(values)
    with pytest.raises(RuntimeError) as torch_error:
        bool(theirs)
    with pytest.raises(RuntimeError, match="ambiguous") as our_error:
        bool(ours)
    assert str(our_error.value) == str(torch_error.value)
    with pytest.raises(ValueError, match="only one element tensors"):
        float(ours)
    with pytest.raises(ValueError, match="only one element tensors"):
        int(ours)


def test_zero_d_loss_in_if_and_format_spec():
    loss = (tn.Tensor([1.0, 2.0], requires_grad=True) * 2).sum()
    assert f"{loss:.3f}" == f"{torch.tensor(6.0):.3f}" == "6.000"
    assert not (loss < 0)
    with pytest.raises(TypeError):
        f"{tn.Tensor([2.5]):.3f}"  # like PyTorch: a format spec needs a 0-d tensor
    assert [10, 20, 30][tn.Tensor(1)] == 20
    with pytest.raises(TypeError, match="integer tensors of a single element"):
        [10, 20, 30][tn.Tensor(1.0)]


# ---------------------------------------------------------------- grad mode per entry


def test_decorated_recursion_restores_grad_mode():
    @tn.no_grad()
    def depth(n):
        assert not tn.is_grad_enabled()
        return 0 if n == 0 else 1 + depth(n - 1)

    depth(3)
    assert tn.is_grad_enabled()


def test_one_no_grad_instance_entered_from_two_threads():
    guard = tn.no_grad()
    inside, release = threading.Barrier(2), threading.Event()
    states = []

    def worker(wait):
        with guard:
            inside.wait()
            if wait:
                release.wait()
        states.append(tn.is_grad_enabled())

    waiter = threading.Thread(target=worker, args=(True,))
    waiter.start()
    worker(False)  # this thread leaves first
    release.set()
    waiter.join()
    assert states == [True, True]


def test_a_decorated_generator_runs_without_grad_and_leaves_the_caller_alone():
    x = tn.Tensor([1.0], requires_grad=True)

    @tn.no_grad()
    def batches():
        for _ in range(2):
            yield (x * 2).requires_grad, tn.is_grad_enabled()

    for requires_grad, enabled in batches():
        assert (requires_grad, enabled) == (False, False)
        assert tn.is_grad_enabled()  # the caller's mode between yields

    @tn.enable_grad()
    def with_grad():
        yield tn.is_grad_enabled()

    with tn.no_grad():
        assert next(with_grad()) is True
        assert not tn.is_grad_enabled()


def test_no_grad_without_parentheses_decorates_like_torch():
    @tn.no_grad
    def f():
        return tn.is_grad_enabled()

    assert f() is False and tn.is_grad_enabled()


# ---------------------------------------------------------------- version counter


def _leaf():
    return tn.Tensor([1.0, 2.0, 3.0], requires_grad=True)


def _through_layer_norm(x):
    return F.layer_norm(x.reshape(1, 3), (3,)).sum() * 1.0


MODIFICATIONS = {
    "zero_": lambda t: t.zero_(),
    "fill_": lambda t: t.fill_(5.0),
    "copy_": lambda t: t.copy_(tn.Tensor([4.0, 5.0, 6.0])),
    "setitem": lambda t: t.__setitem__(0, 9.0),
    "view": lambda t: t.reshape(3)[1:].zero_(),
}


@pytest.mark.parametrize("modify", MODIFICATIONS)
@pytest.mark.parametrize("graph", ["square", "layer_norm", "exp_output"])
def test_inplace_change_of_a_saved_tensor_makes_backward_raise(modify, graph):
    x = _leaf()
    if graph == "exp_output":
        saved = x.exp()  # Exp saves its output
        out = saved.sum()
        target = saved
    else:
        target = x.detach()  # shares x's version counter, like PyTorch
        out = (x * x).sum() if graph == "square" else _through_layer_norm(x)
    with tn.no_grad():
        MODIFICATIONS[modify](target)
    with pytest.raises(RuntimeError, match=INPLACE_MESSAGE):
        out.backward()


def test_unsaved_inplace_changes_are_fine_and_torch_agrees():
    x = _leaf()
    out = (x + 1).sum()  # Add saves nothing
    with tn.no_grad():
        x.detach().zero_()
    out.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0, 1.0])


def test_changing_an_input_whose_memory_nothing_saved_is_fine_and_torch_agrees():
    # Exp saves its output, not its input: x may change before backward (the input's
    # counter moves, but no saved array uses its memory); PyTorch allows it too
    grads = []
    for lib in (tn, torch):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        hidden = x * 1.0
        out = hidden.exp().sum()
        with lib.no_grad():
            hidden.detach().zero_()  # shares hidden's version counter in both
        out.backward()
        grads.append(x.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)


def test_optimizer_step_between_forward_and_backward_raises():
    w = tn.Tensor([1.0, 2.0], requires_grad=True)
    out = (w * w).sum()
    out.backward(retain_graph=True)
    tn.optim.SGD([w], lr=0.1).step()
    with pytest.raises(RuntimeError, match=INPLACE_MESSAGE):
        out.backward()


@pytest.mark.parametrize("modify", ["zero_", "fill_", "copy_", "setitem"])
def test_inplace_on_a_leaf_requiring_grad_is_refused_outside_no_grad(modify):
    x = _leaf()
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        MODIFICATIONS[modify](x)
    y = x * 2  # a non-leaf: ours cannot differentiate in-place ops, so it refuses too
    with pytest.raises(RuntimeError, match="in-place"):
        MODIFICATIONS[modify](y)
    with tn.no_grad():
        MODIFICATIONS[modify](x)
    assert x._version == 1


def test_version_counts_like_torch():
    ours, theirs = tn.zeros(3), torch.zeros(3)
    for t in (ours, theirs):
        t.zero_()
        t.fill_(1.0)
        t[0] = 2.0
        t.detach().zero_()
    assert ours._version == theirs._version == 4


# ---------------------------------------------------------------- released graphs


def test_a_held_loss_does_not_keep_its_activations_alive():
    x = tn.randn(8, 16, requires_grad=True)
    hidden = (x * 2).relu()
    alive = weakref.ref(hidden)
    loss = (hidden * hidden).sum()
    del hidden
    loss.backward()
    gc.collect()
    assert alive() is None  # the loss is still held


def test_memory_stays_flat_while_losses_are_kept():
    import tracemalloc

    model = tn.nn.Sequential(tn.nn.Linear(256, 256), tn.nn.LayerNorm(256),
                             tn.nn.Linear(256, 256), tn.nn.LayerNorm(256))
    losses = []
    tracemalloc.start()
    try:
        for step in range(6):
            if step == 2:
                base = tracemalloc.get_traced_memory()[0]
            loss = model(tn.randn(64, 256)).square().mean() if hasattr(tn.Tensor, "square") \
                else (model(tn.randn(64, 256)) ** 2).mean()
            loss.backward()
            losses.append(loss)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 1 << 20, f"{grown / 2**20:.1f} MiB kept by 4 held losses"


# ---------------------------------------------------------------- custom Functions


class _TwoInputsOneGradient(tn.Function):
    @staticmethod
    def forward(ctx, a, b):
        return a * b

    @staticmethod
    def backward(ctx, grad):
        return (grad,)


def test_a_backward_returning_the_wrong_number_of_gradients_is_refused():
    a, b = _leaf(), _leaf()
    out = _TwoInputsOneGradient.apply(a, b).sum()
    with pytest.raises(RuntimeError, match="returned an incorrect number of gradients"):
        out.backward()
