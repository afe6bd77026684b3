"""Module behaviour against PyTorch on the same nested model: names, traversal, modes,
dtype casts, state_dict round trips both ways, strict loading, hooks and attribute rules."""

import numpy as np
import pytest
import torch

import tinygrad_norm as tn
from tinygrad_norm import nn


def make_block(lib, tensor_fn):
    """A custom Module with a submodule, a buffer and a Parameter, for either library.

    The Parameter is assigned after the submodule: both libraries still list a module's own
    parameters before its children's.
    """

    class Block(lib.Module):
        def __init__(self):
            super().__init__()
            self.conv = lib.Conv2d(2, 3, 3, padding=1)
            self.gain = lib.Parameter(tensor_fn(np.full((3, 1, 1), 1.5)))
            self.register_buffer("offset", tensor_fn(np.linspace(-1, 1, 3).reshape(3, 1, 1)))

        def forward(self, x):
            return self.conv(x.reshape(x.shape[0], 2, 4, 4)) * self.gain + self.offset

    return Block()


def make_model(lib, tensor_fn):
    return lib.Sequential(
        lib.Linear(6, 32), lib.BatchNorm1d(32), lib.ReLU(), make_block(lib, tensor_fn),
        lib.Conv2d(3, 4, 3), lib.BatchNorm2d(4), lib.Flatten(), lib.Linear(16, 5),
    )


def ours_model():
    return make_model(nn, lambda a: tn.Tensor(a.astype(np.float32)))


def torch_model():
    return make_model(torch.nn, lambda a: torch.tensor(a, dtype=torch.float32))


def twin_models():
    """(ours, theirs) with the same weights, copied from the torch model."""
    torch.manual_seed(0)
    theirs, ours = torch_model(), ours_model()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def forward_both(ours, theirs, dtype=np.float32, seed=0):
    x = np.random.default_rng(seed).standard_normal((4, 6)).astype(dtype)
    return ours(tn.Tensor(x)), theirs(torch.tensor(x))


def assert_state_dicts_equal(ours: dict, theirs: dict, exact=True):
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        value = value.detach().numpy() if isinstance(value, torch.Tensor) else value
        assert ours[key].dtype == value.dtype, key
        assert ours[key].shape == value.shape, key
        if exact:
            np.testing.assert_array_equal(ours[key], value, err_msg=key)
        else:
            np.testing.assert_allclose(ours[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


# ---------------------------------------------------------------- names and traversal


def test_named_parameters_names_order_and_shapes_match_torch():
    ours, theirs = ours_model(), torch_model()
    names = [(n, p.shape) for n, p in ours.named_parameters()]
    assert names == [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    assert names[4][0] == "3.gain" and names[5][0] == "3.conv.weight"
    assert [p.shape for p in ours.parameters()] == [s for _, s in names]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in ours.parameters())


def test_named_buffers_match_torch():
    ours, theirs = ours_model(), torch_model()
    assert [(n, b.shape, b.dtype) for n, b in ours.named_buffers()] == [
        (n, tuple(b.shape), np.dtype(str(b.dtype).replace("torch.", "")))
        for n, b in theirs.named_buffers()]
    assert len(list(ours.buffers())) == len(list(theirs.buffers())) == 7


def test_children_and_modules_match_torch():
    ours, theirs = ours_model(), torch_model()

    def kinds(modules):
        return [type(m).__name__ for m in modules]

    assert kinds(ours.children()) == kinds(theirs.children())
    assert kinds(ours.modules()) == kinds(theirs.modules())
    assert [(n, type(m).__name__) for n, m in ours.named_modules()] == [
        (n, type(m).__name__) for n, m in theirs.named_modules()]
    assert next(iter(ours.modules())) is ours
    assert list(ours[3].children()) == [ours[3].conv]


def test_shared_module_and_parameter_are_listed_once_like_torch():
    def build(lib):
        shared = lib.Linear(3, 3)
        return lib.Sequential(shared, lib.ReLU(), shared)

    ours, theirs = build(nn), build(torch.nn)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert len(list(ours.children())) == len(list(theirs.children())) == 2
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_recurse_false_lists_only_own_members():
    ours, theirs = ours_model(), torch_model()
    assert [n for n, _ in ours[3].named_parameters(recurse=False)] == ["gain"]
    assert [n for n, _ in ours[3].named_parameters(recurse=False)] == [
        n for n, _ in theirs[3].named_parameters(recurse=False)]
    assert [n for n, _ in ours[3].named_buffers(recurse=False)] == ["offset"]
    assert [n for n, _ in ours.named_parameters(prefix="model")][0] == "model.0.weight"


# ---------------------------------------------------------------- forward, modes, gradients


def test_forward_matches_torch_in_train_and_eval_mode():
    ours, theirs = twin_models()
    out, expected = forward_both(ours, theirs)
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    # the training forward updated BatchNorm's running statistics in both
    assert_state_dicts_equal(ours.state_dict(), theirs.state_dict(), exact=False)
    assert ours.state_dict()["1.num_batches_tracked"] == 1
    ours.eval()
    theirs.eval()
    out, expected = forward_both(ours, theirs, seed=1)
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    assert ours.state_dict()["1.num_batches_tracked"] == 1


def test_train_and_eval_recurse_and_return_self():
    ours, theirs = ours_model(), torch_model()
    assert ours.training and all(m.training for m in ours.modules())
    assert ours.eval() is ours
    theirs.eval()
    assert [m.training for m in ours.modules()] == [m.training for m in theirs.modules()]
    assert not any(m.training for m in ours.modules())
    ours[3].train()
    assert ours[3].training and ours[3].conv.training and not ours.training
    assert ours.train() is ours and all(m.training for m in ours.modules())
    ours.train(False)
    assert not any(m.training for m in ours.modules())
    with pytest.raises(TypeError, match="bool"):
        ours.train("yes")


def test_zero_grad_sets_gradients_to_none_or_zero():
    ours, _ = twin_models()
    out, _ = forward_both(ours, torch_model())
    out.sum().backward()
    assert all(p.grad is not None for p in ours.parameters())
    ours.zero_grad(set_to_none=False)
    for param in ours.parameters():
        assert param.grad.shape == param.shape
        assert not param.grad.numpy().any()
    ours.zero_grad()  # PyTorch's default: set_to_none=True
    assert all(p.grad is None for p in ours.parameters())


def test_parameter_gradients_match_torch():
    ours, theirs = twin_models()
    out, expected = forward_both(ours, theirs)
    upstream = np.random.default_rng(5).standard_normal(out.shape).astype(np.float32)
    out.backward(upstream)
    expected.backward(torch.from_numpy(upstream))
    torch_params = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        np.testing.assert_allclose(param.grad.numpy(), torch_params[name].grad.numpy(),
                                   rtol=1e-4, atol=1e-5, err_msg=name)


# ---------------------------------------------------------------- dtype casts


@pytest.mark.parametrize("cast", ["double", "to_dtype", "to_keyword"])
def test_double_casts_floats_keeps_integer_buffers_and_parameter_identity(cast):
    ours, theirs = twin_models()
    before = [id(p) for p in ours.parameters()]
    returned = {"double": lambda m: m.double(), "to_dtype": lambda m: m.to(np.float64),
                "to_keyword": lambda m: m.to(dtype=tn.float64)}[cast](ours)
    assert returned is ours
    assert [id(p) for p in ours.parameters()] == before
    theirs.double()
    assert_state_dicts_equal(ours.state_dict(), theirs.state_dict())
    assert ours.state_dict()["1.num_batches_tracked"].dtype == np.int64
    assert ours[3].offset.dtype == np.float64
    out, expected = forward_both(ours, theirs, dtype=np.float64)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-10,
                               atol=1e-12)


def test_float_casts_back_to_float32():
    ours, _ = twin_models()
    ours.double().float()
    for key, value in ours.state_dict().items():
        expected = np.int64 if key.endswith("num_batches_tracked") else np.float32
        assert value.dtype == expected, key


def test_optimizer_built_before_a_cast_still_updates_the_module():
    ours, theirs = twin_models()
    optimizer = tn.optim.SGD(ours.parameters(), lr=0.1)
    torch_optimizer = torch.optim.SGD(theirs.parameters(), lr=0.1)
    ours.double()
    theirs.double()
    for _ in range(2):
        optimizer.zero_grad()
        torch_optimizer.zero_grad()
        out, expected = forward_both(ours, theirs, dtype=np.float64)
        (out * out).mean().backward()
        (expected * expected).mean().backward()
        optimizer.step()
        torch_optimizer.step()
    assert ours.state_dict()["0.weight"].dtype == np.float64
    assert_state_dicts_equal(ours.state_dict(), theirs.state_dict(), exact=False)
    changed = ours.state_dict()["7.bias"] - twin_models()[0].state_dict()["7.bias"]
    assert np.abs(changed).max() > 1e-4


def test_to_rejects_integer_dtype_and_unknown_device():
    ours = ours_model()
    with pytest.raises(TypeError, match="floating point"):
        ours.to(np.int32)
    with pytest.raises((ValueError, RuntimeError)):
        ours.to("tpu")


# ---------------------------------------------------------------- state_dict


def test_state_dict_keys_order_shapes_and_dtypes_match_torch():
    ours, theirs = ours_model(), torch_model()
    state = ours.state_dict()
    assert list(state)[:7] == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                               "1.running_var", "1.num_batches_tracked"]
    assert "3.offset" in state and "3.gain" in state
    assert all(isinstance(v, np.ndarray) for v in state.values())
    theirs_state = theirs.state_dict()
    assert [(k, v.shape, v.dtype) for k, v in state.items()] == [
        (k, tuple(v.shape), v.numpy().dtype) for k, v in theirs_state.items()]


def test_state_dict_values_are_copies():
    ours = ours_model()
    state = ours.state_dict()
    state["0.weight"][...] = 7.0
    assert not np.any(ours.state_dict()["0.weight"] == 7.0)


def test_non_persistent_buffer_is_not_saved_like_torch():
    ours, theirs = nn.Linear(2, 2), torch.nn.Linear(2, 2)
    ours.register_buffer("cache", tn.zeros(2), persistent=False)
    theirs.register_buffer("cache", torch.zeros(2), persistent=False)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight", "bias"]
    assert [n for n, _ in ours.named_buffers()] == ["cache"]


def test_torch_state_dict_loads_into_ours_as_tensors_or_arrays():
    torch.manual_seed(1)
    theirs = torch_model()
    theirs(torch.randn(4, 6))  # non-trivial running statistics
    for values in (theirs.state_dict(), {k: v.numpy() for k, v in theirs.state_dict().items()}):
        ours = ours_model()
        result = ours.load_state_dict(values)
        assert result.missing_keys == [] and result.unexpected_keys == []
        assert_state_dicts_equal(ours.state_dict(), theirs.state_dict())


def test_our_state_dict_loads_into_torch():
    tn.manual_seed(2)
    ours = ours_model()
    ours(tn.randn(4, 6))
    theirs = torch_model()
    result = theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert_state_dicts_equal(ours.state_dict(), theirs.state_dict())
    ours.eval()
    theirs.eval()
    out, expected = forward_both(ours, theirs)
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(),
                               rtol=1e-4, atol=1e-5)


def test_state_dict_round_trips_through_a_checkpoint_file(tmp_path):
    ours, theirs = twin_models()
    tn.save(ours.state_dict(), tmp_path / "model.npz")
    loaded = tn.load(tmp_path / "model.npz")
    fresh = ours_model()
    fresh.load_state_dict(loaded)
    assert_state_dicts_equal(fresh.state_dict(), theirs.state_dict())


def test_load_state_dict_casts_to_the_model_dtype_and_writes_in_place():
    ours, theirs = twin_models()
    ours.double()
    weight = ours[0].weight
    data = weight.data
    ours.load_state_dict(theirs.state_dict())  # float32 values into a float64 model
    assert ours[0].weight is weight and weight.data is data and weight.dtype == np.float64
    np.testing.assert_array_equal(weight.data, theirs[0].weight.detach().numpy())


def _mutated(state: dict, drop=(), extra=(), reshape=()) -> dict:
    state = {k: v for k, v in state.items() if k not in drop}
    for key in extra:
        state[key] = np.zeros(2, np.float32)
    for key in reshape:
        state[key] = np.zeros(state[key].shape + (1,), state[key].dtype)
    return {k: np.asarray(v) for k, v in state.items()}


@pytest.mark.parametrize("change, message", [
    (dict(drop=("3.gain",)), r'Missing key\(s\) in state_dict: "3.gain"'),
    # num_batches_tracked may be absent, as in PyTorch (BatchNorm keeps its own count)
    (dict(drop=("1.num_batches_tracked", "7.bias")), r'Missing key\(s\) in state_dict: "7.bias"'),
    (dict(extra=("8.weight",)), r'Unexpected key\(s\) in state_dict: "8.weight"'),
    (dict(reshape=("3.conv.weight",)), r"size mismatch for 3.conv.weight.*\(3, 2, 3, 3, 1\)"),
    (dict(reshape=("5.running_var",)), r"size mismatch for 5.running_var"),
])
def test_strict_load_errors_name_the_key_and_change_nothing(change, message):
    ours, theirs = twin_models()
    before = ours.state_dict()
    bad = _mutated({k: v.numpy() + 1 for k, v in theirs.state_dict().items()}, **change)
    with pytest.raises(RuntimeError, match=message):
        ours.load_state_dict(bad)
    assert_state_dicts_equal(ours.state_dict(), before)
    with pytest.raises(RuntimeError, match=message.split(r"\(s\)")[0].split(" for")[0]):
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in bad.items()})


def test_non_strict_load_returns_missing_and_unexpected_keys_like_torch():
    ours, theirs = twin_models()
    state = _mutated(theirs.state_dict(), drop=("0.bias", "5.running_mean"),
                     extra=("extra.weight", "3.scale"))
    state = {k: torch.as_tensor(v) for k, v in state.items()}
    state["0.weight"] = state["0.weight"] * 2
    result = ours.load_state_dict(state, strict=False)
    expected = theirs.load_state_dict(state, strict=False)
    assert result.missing_keys == expected.missing_keys == ["0.bias", "5.running_mean"]
    assert result.unexpected_keys == expected.unexpected_keys
    assert result == tuple(expected)
    missing, unexpected = result
    assert unexpected == ["extra.weight", "3.scale"]
    np.testing.assert_array_equal(ours[0].weight.data, theirs[0].weight.detach().numpy())


def test_non_strict_load_still_rejects_wrong_shapes():
    ours, theirs = twin_models()
    bad = _mutated(ours.state_dict(), reshape=("0.bias",))
    with pytest.raises(RuntimeError, match="size mismatch for 0.bias"):
        ours.load_state_dict(bad, strict=False)
    with pytest.raises(RuntimeError, match="size mismatch for 0.bias"):
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in bad.items()}, strict=False)


# ---------------------------------------------------------------- hooks


def _record_hooks(model, log, lib_name):
    handles = []
    for name, module in model.named_modules():
        if name in ("", "2", "3", "3.conv"):
            handles.append(module.register_forward_pre_hook(
                lambda m, args, name=name: log.append(("pre", name, len(args)))))
            handles.append(module.register_forward_hook(
                lambda m, args, out, name=name: log.append(("post", name, tuple(out.shape)))))
    return handles


def test_hook_call_order_matches_torch_and_remove_unregisters():
    ours, theirs = twin_models()
    our_log, torch_log = [], []
    our_handles = _record_hooks(ours, our_log, "ours")
    torch_handles = _record_hooks(theirs, torch_log, "torch")
    forward_both(ours, theirs)
    assert our_log == torch_log
    assert our_log[0] == ("pre", "", 1) and our_log[-1] == ("post", "", (4, 5))
    for handle in our_handles + torch_handles:
        handle.remove()
    our_handles[0].remove()  # removing twice is fine
    our_log.clear()
    forward_both(ours, theirs)
    assert our_log == []


def test_forward_hooks_can_replace_input_and_output_like_torch():
    ours, theirs = twin_models()
    for model in (ours, theirs):
        model.eval()
        model[2].register_forward_pre_hook(lambda m, args: (args[0] * 0.5,))
        model[7].register_forward_hook(lambda m, args, out: out * 2.0 + 1.0)
        model[7].register_forward_hook(lambda m, args, out: None)  # None keeps the output
    out, expected = forward_both(ours, theirs)
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(),
                               rtol=1e-4, atol=1e-5)


def test_forward_hook_sees_the_replaced_input():
    layer = nn.Identity()
    seen = []
    layer.register_forward_pre_hook(lambda m, args: args[0] + 1)  # a bare value is wrapped
    layer.register_forward_hook(lambda m, args, out: seen.append((args[0].item(), out.item())))
    assert layer(tn.tensor(1.0)).item() == 2.0
    assert seen == [(2.0, 2.0)]


# ---------------------------------------------------------------- repr


def test_repr_matches_torch_for_simple_layers_and_nesting():
    def build(lib):
        return lib.Sequential(lib.Linear(6, 4), lib.ReLU(),
                              lib.Sequential(lib.Conv2d(1, 2, 3, stride=2, padding=1),
                                             lib.MaxPool2d(2), lib.Flatten()),
                              lib.Identity(), lib.Softmax(dim=1),
                              lib.Conv2d(2, 2, (3, 2), padding="same", dilation=2, bias=False),
                              lib.Conv2d(2, 2, 1, padding="valid"), lib.AvgPool2d(2, padding=1),
                              lib.Sigmoid(), lib.LogSoftmax(dim=-1))

    assert repr(build(nn)) == repr(build(torch.nn))


def test_repr_of_the_nested_model_lists_every_child():
    text = repr(ours_model())
    assert text.startswith("Sequential(\n  (0): Linear(in_features=6, out_features=32")
    assert "(3): Block(\n    (conv): Conv2d(2, 3, kernel_size=(3, 3)" in text
    assert "(5): BatchNorm2d(4" in text and text.endswith(")")
    assert text.count("\n") == repr(torch_model()).count("\n")


# ---------------------------------------------------------------- attribute registration


def test_assigning_a_parameter_registers_it_like_torch():
    for lib, wrap in ((nn, tn.zeros), (torch.nn, torch.zeros)):
        module = lib.Linear(2, 2)
        module.scale = lib.Parameter(wrap(3))
        module.plain = wrap(3)  # a plain tensor is just an attribute
        assert [n for n, _ in module.named_parameters()] == ["weight", "bias", "scale"]
        assert list(module.state_dict()) == ["weight", "bias", "scale"]
        assert "plain" not in module.state_dict()


def test_setting_a_parameter_to_none_drops_it_from_state_dict_like_torch():
    for lib in (nn, torch.nn):
        module = lib.Linear(2, 2)
        module.bias = None
        assert module.bias is None
        assert list(module.state_dict()) == ["weight"]
        assert [n for n, _ in module.named_parameters()] == ["weight"]
    ours = nn.Linear(2, 3)
    ours.bias = None
    ours.weight.data[...] = 1.0
    np.testing.assert_array_equal(ours(tn.ones(1, 2)).detach().numpy(), [[2.0, 2.0, 2.0]])


def test_assigning_a_plain_tensor_to_a_parameter_name_is_a_type_error_like_torch():
    with pytest.raises(TypeError, match="weight"):
        nn.Linear(2, 2).weight = tn.zeros(2, 2)
    with pytest.raises(TypeError):
        torch.nn.Linear(2, 2).weight = torch.zeros(2, 2)
    with pytest.raises(TypeError, match="buffer"):
        nn.BatchNorm1d(2).running_mean = np.zeros(2)


def test_deleting_attributes_unregisters_them_like_torch():
    for lib in (nn, torch.nn):
        model = lib.Sequential(lib.Linear(2, 2), lib.BatchNorm1d(2))
        del model[0].bias
        del model[1].running_var
        del model[1]
        assert list(model.state_dict()) == ["0.weight"]
        assert not hasattr(model[0], "bias")
        with pytest.raises(AttributeError):
            model[0].bias  # noqa: B018


def test_assigning_a_buffer_a_module_or_replacing_a_kind():
    module = nn.Linear(2, 2)
    module.register_buffer("steps", tn.Tensor(np.array(0, dtype=np.int64)))
    module.steps = tn.Tensor(np.array(5, dtype=np.int64))
    assert module.state_dict()["steps"] == 5
    module.child = nn.Linear(2, 1)
    assert list(module.state_dict()) == ["weight", "bias", "steps", "child.weight", "child.bias"]
    module.child = None
    assert list(module.state_dict()) == ["weight", "bias", "steps"]
    module.steps = nn.Parameter(tn.zeros(1))  # a name changes kind: no duplicate entry
    assert [n for n, _ in module.named_buffers()] == []
    assert [n for n, _ in module.named_parameters()] == ["weight", "bias", "steps"]


def test_registration_before_init_and_bad_names_are_clear_errors():
    class Broken(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(tn.zeros(1))

    with pytest.raises(AttributeError, match="__init__"):
        Broken()
    module = nn.Linear(2, 2)
    with pytest.raises(KeyError, match="'.'"):
        module.register_buffer("a.b", tn.zeros(1))
    with pytest.raises(KeyError, match="already exists"):
        module.register_buffer("forward", tn.zeros(1))
    with pytest.raises(TypeError, match="Parameter"):
        module.register_parameter("scale", tn.zeros(1))
    with pytest.raises(AttributeError, match="Linear.*missing"):
        module.missing  # noqa: B018


# ---------------------------------------------------------------- Sequential and helpers


def test_sequential_indexing_slicing_deletion_and_append_match_torch():
    def build(lib):
        return lib.Sequential(lib.Linear(2, 3), lib.ReLU(), lib.Linear(3, 4), lib.Tanh())

    ours, theirs = build(nn), build(torch.nn)

    def names(model):
        return [(n, type(m).__name__) for n, m in model.named_children()]

    assert len(ours) == len(theirs) == 4
    assert type(ours[-2]).__name__ == "Linear" and ours[-2] is list(ours)[2]
    assert list(ours[1:3].state_dict()) == list(theirs[1:3].state_dict()) == ["2.weight",
                                                                              "2.bias"]
    del ours[0]
    del theirs[0]
    assert names(ours) == names(theirs)  # renumbered from "0"
    ours.append(nn.Sigmoid())
    theirs.append(torch.nn.Sigmoid())
    assert names(ours) == names(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["1.weight", "1.bias"]
    del ours[::2]
    del theirs[::2]
    assert names(ours) == names(theirs)
    with pytest.raises(IndexError):
        ours[5]


def test_sequential_with_named_modules_keeps_the_names():
    from collections import OrderedDict

    ours = nn.Sequential(OrderedDict(fc=nn.Linear(2, 2), act=nn.ReLU()))
    theirs = torch.nn.Sequential(OrderedDict(fc=torch.nn.Linear(2, 2), act=torch.nn.ReLU()))
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["fc.weight", "fc.bias"]
    assert repr(ours) == repr(theirs)


def test_apply_visits_children_first_like_torch():
    ours, theirs = ours_model(), torch_model()
    our_order, torch_order = [], []
    assert ours.apply(lambda m: our_order.append(type(m).__name__)) is ours
    theirs.apply(lambda m: torch_order.append(type(m).__name__))
    assert our_order == torch_order


def test_requires_grad_false_freezes_every_parameter():
    ours = ours_model()
    assert ours.requires_grad_(False) is ours
    assert not any(p.requires_grad for p in ours.parameters())
    ours[7].requires_grad_()
    assert [n for n, p in ours.named_parameters() if p.requires_grad] == ["7.weight", "7.bias"]


def test_deepcopy_gives_an_independent_model_with_equal_state():
    import copy

    ours, _ = twin_models()
    clone = copy.deepcopy(ours)
    assert_state_dicts_equal(clone.state_dict(), ours.state_dict())
    assert all(isinstance(p, nn.Parameter) for p in clone.parameters())
    assert not {id(p) for p in clone.parameters()} & {id(p) for p in ours.parameters()}
    clone[0].weight.data[...] = 0.0
    assert np.abs(ours[0].weight.data).max() > 0
