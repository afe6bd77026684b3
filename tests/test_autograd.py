"""The autograd engine: graph walk, accumulation, no_grad, freeing, error messages."""

import numpy as np
import pytest

import tinygrad_norm as tn


def test_long_chain_does_not_hit_recursion_limit():
    x = tn.ones(1, dtype=np.float64, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001**10_000 / 1.0001 * 1.0001], rtol=1e-9)


def test_gradients_accumulate_across_backward_calls():
    x = tn.Tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    assert x.grad.tolist() == [3 + 2.0, 3 + 4.0]


def test_diamond_graph_sums_both_paths_once():
    x = tn.Tensor([2.0], requires_grad=True)
    a = x * 3
    (a * a + a).sum().backward()  # d/dx (9x^2 + 3x) = 18x + 3
    assert x.grad.tolist() == [39.0]


def test_each_node_runs_once_after_all_of_its_consumers():
    """backward orders nodes by creation (autograd.run_backward): a node used by a long and a
    short branch runs once, last, with both branches' gradients summed."""
    calls = []

    class Tag(tn.Function):  # the identity, recording when its backward runs
        @staticmethod
        def forward(ctx, a, name):
            ctx.name = name
            return a.copy()

        @staticmethod
        def backward(ctx, grad):
            calls.append(ctx.name)
            return grad, None

    x = tn.Tensor([1.0], requires_grad=True)
    shared = Tag.apply(x, "shared")
    long = shared
    for i in range(5):
        long = Tag.apply(long * 2, f"long {i}")
    short = Tag.apply(shared * 3, "short")
    (long + short).sum().backward()
    assert sorted(calls) == sorted(["shared", "short"] + [f"long {i}" for i in range(5)])
    assert calls[-1] == "shared"
    assert calls.index("long 0") > calls.index("long 4")
    assert x.grad.tolist() == [2.0**5 + 3.0]


def test_broadcast_gradient_is_summed_back_to_input_shape():
    bias = tn.zeros(4, requires_grad=True)
    (tn.ones(3, 4) + bias).sum().backward()
    assert bias.grad.tolist() == [3.0] * 4


def test_no_grad_context_and_decorator():
    x = tn.ones(2, requires_grad=True)
    with tn.no_grad():
        assert not (x * 2).requires_grad

    @tn.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad and (x * 2).requires_grad and tn.is_grad_enabled()


def test_non_scalar_backward_needs_gradient():
    y = tn.ones(3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        y.backward()
    with pytest.raises(RuntimeError, match="expected the output's shape"):
        y.backward(np.ones(4))


def test_backward_twice_without_retain_graph_is_an_error():
    x = tn.ones(2, requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * 2 * np.e * np.ones(2), rtol=1e-6)


def test_backward_frees_saved_buffers():
    x = tn.ones(1000, requires_grad=True)
    y = x.exp()
    ctx = y._ctx
    y.sum().backward()
    assert ctx.saved_tensors == () and ctx.released


def test_backward_on_tensor_without_grad_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        tn.ones(2).sum().backward()


def test_detach_cuts_the_graph():
    x = tn.ones(2, requires_grad=True)
    y = (x * 2).detach()
    assert not y.requires_grad and y.is_leaf


def test_custom_function_subclass():
    class Cube(tn.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a**3

        @staticmethod
        def backward(ctx, grad):
            (a,) = ctx.saved_tensors
            return (3 * a * a * grad,)

    x = tn.randn(5, dtype=np.float64, requires_grad=True)
    assert tn.gradcheck(Cube.apply, (x,))


# ------------------------------------------------------------ gradient accumulation, no copies

def test_two_leaves_fed_the_same_gradient_array_get_separate_grads():
    """Add.backward hands one array to both inputs: neither .grad may alias the other."""
    a, b = tn.Tensor(np.ones(3), requires_grad=True), tn.Tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()
    assert not np.shares_memory(a.grad.data, b.grad.data)
    a.grad.data[0] = 5.0
    assert b.grad.data.tolist() == [1.0, 1.0, 1.0]


def test_grad_never_aliases_the_gradient_the_user_passed():
    a = tn.Tensor(np.ones((2, 3)), requires_grad=True)
    upstream = np.arange(6.0)
    a.reshape(6).backward(upstream)  # Reshape.backward returns a view of `upstream`
    assert not np.shares_memory(a.grad.data, upstream)
    upstream[:] = 0
    assert a.grad.data.reshape(-1).tolist() == list(np.arange(6.0))


def test_a_pooled_kernel_output_leaves_the_pool_for_grad(monkeypatch):
    """LayerNorm's dx of a large input comes from kernels/cpu/buffers.py's pool, which hands
    its buffers to later calls: the leaf takes dx out of the pool (no copy), and its .grad
    keeps its own values through the next backward."""
    from kernels.cpu import buffers
    from tinygrad_norm import nn

    rng = np.random.default_rng(0)
    layer = nn.LayerNorm(512)
    x = tn.Tensor(rng.standard_normal((1024, 512)).astype(np.float32), requires_grad=True)
    claims = []
    claim = buffers.claim
    monkeypatch.setattr(buffers, "claim", lambda a: claims.append(claim(a)) or claims[-1])
    layer(x).backward(rng.standard_normal((1024, 512)).astype(np.float32))
    assert claims == [True]  # dx (a reshape of a pooled buffer) left the pool, not copied
    first = x.grad
    kept = first.data.copy()
    x.grad = None
    layer(x).backward(rng.standard_normal((1024, 512)).astype(np.float32))
    assert not np.shares_memory(first.data, x.grad.data)
    np.testing.assert_array_equal(first.data, kept)


def test_accumulation_updates_the_existing_grad_in_place_like_torch():
    import torch

    ours = tn.Tensor(np.ones(3), requires_grad=True)
    theirs = torch.ones(3, dtype=torch.float64, requires_grad=True)
    for t, backward in ((ours, lambda: (ours * 2).sum().backward()),
                        (theirs, lambda: (theirs * 2).sum().backward())):
        backward()
        held = t.grad
        backward()
        assert t.grad is held  # the same tensor, summed in place
    np.testing.assert_array_equal(ours.grad.data, theirs.grad.numpy())


def test_a_read_only_grad_set_by_the_user_is_replaced_not_written():
    a = tn.Tensor(np.ones(3), requires_grad=True)
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    a.grad = tn.Tensor(frozen)
    (a * 3).sum().backward()
    assert a.grad.data.tolist() == [3.0, 3.0, 3.0] and frozen.tolist() == [0.0, 0.0, 0.0]


def test_a_fresh_gradient_becomes_grad_without_a_copy():
    """As PyTorch steals a gradient nobody else holds: the array backward made is .grad."""
    made = []

    class Twice(tn.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, grad):
            out = grad * 2
            made.append(id(out))
            return out

    a = tn.Tensor(np.ones(3), requires_grad=True)
    Twice.apply(a).sum().backward()
    assert id(a.grad.data) == made[0] and a.grad.data.tolist() == [2.0, 2.0, 2.0]
