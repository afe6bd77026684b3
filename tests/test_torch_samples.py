"""PyTorch's own test samples for every normalization, run against ours.

The generators are the ones PyTorch's test suite uses, shipped in the torch wheel:
`op_db` (OpInfo: sample, reference and error inputs of each functional form) and `module_db`
(ModuleInfo: constructor and forward inputs, error inputs). Each sample runs in float32 and
float64, in three layouts of its input (contiguous; non-contiguous, every other element of a
twice-as-wide array, as PyTorch's test_noncontiguous_samples; channels-last strides for 4-D and
5-D inputs, as test_memory_format), twice in a row, and compares with PyTorch on the same
values (PyTorch computing in float64, so that its float32 rounding is not the yardstick):
outputs, the gradients of every tensor that requires grad (input, weight, bias) and
the running buffers after each call; modules also in train and eval mode, and their freshly
constructed state_dicts. Error inputs must raise, with PyTorch's exception type.

A sample that cannot be expressed is counted and skipped with a reason from ALLOWED_SKIPS,
which each test checks; nothing is dropped silently. For the aten `native_*` ops only the
normalized output is compared: their saved mean/rstd outputs are internals we do not expose.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")
common_methods_invocations = pytest.importorskip(
    "torch.testing._internal.common_methods_invocations")
common_modules = pytest.importorskip("torch.testing._internal.common_modules")

import tinygrad_norm as tn  # noqa: E402  (after torch: see conftest.py)
from tinygrad_norm import nn  # noqa: E402
from tinygrad_norm.nn import functional as F  # noqa: E402

DTYPES = {"float32": torch.float32, "float64": torch.float64}
LAYOUTS = ("contiguous", "noncontiguous", "channels_last")
TOLERANCE = {torch.float32: dict(rtol=2e-4, atol=2e-4), torch.float64: dict(rtol=1e-9, atol=1e-9)}

ALLOWED_SKIPS = {
    "channels_last": "channels-last strides exist only for 4-D and 5-D inputs",
}


def _native_batch_norm_legit(x, weight, bias, *rest):
    """The aten overloads: (running_mean, running_var, training, momentum, eps) or, without
    running statistics, (training, momentum, eps)."""
    running = rest[:2] if len(rest) == 5 else (None, None)
    training, momentum, eps = rest[-3:]
    return F.batch_norm(x, *running, weight, bias, training, momentum, eps)


# our function for each OpInfo, and whether PyTorch's returns (output, *saved statistics)
OURS = {
    "nn.functional.batch_norm": (F.batch_norm, False),
    "nn.functional.instance_norm": (F.instance_norm, False),
    "nn.functional.layer_norm": (F.layer_norm, False),
    "nn.functional.group_norm": (F.group_norm, False),
    "nn.functional.rms_norm": (F.rms_norm, False),
    "nn.functional.local_response_norm": (F.local_response_norm, False),
    "native_layer_norm": (F.layer_norm, True),
    "native_group_norm": (lambda x, w, b, n, c, hxw, groups, eps:
                          F.group_norm(x, groups, w, b, eps), True),
    "native_batch_norm": (lambda x, w, b, rm, rv, training, momentum, eps:
                          F.batch_norm(x, rm, rv, w, b, training, momentum, eps), True),
    "_native_batch_norm_legit": (_native_batch_norm_legit, True),
    "_batch_norm_with_update": (lambda x, w, b, rm, rv, momentum, eps:
                                F.batch_norm(x, rm, rv, w, b, True, momentum, eps), True),
}
# aten ops that refuse strided input themselves ("Expected X.is_contiguous"): PyTorch gets the
# same values contiguous, ours the strided layout
THEIRS_CONTIGUOUS = {"native_group_norm"}
OPINFOS = {(op.name, op.variant_test_name): op for op in common_methods_invocations.op_db
           if op.name in OURS}
NORM_MODULES = [info for info in common_modules.module_db
                if info.module_cls.__module__.startswith("torch.nn.modules.")
                and hasattr(nn, info.module_cls.__name__)
                and "norm" in info.module_cls.__module__]


def test_every_normalization_opinfo_and_moduleinfo_is_covered():
    """New norm OpInfos/ModuleInfos in a later torch would show up here, not be ignored."""
    op_names = {op.name for op in common_methods_invocations.op_db
                if op.name.endswith(("_norm", "_norm_legit", "norm_with_update"))
                and "linalg" not in op.name and not op.name.startswith(("norm", "masked."))}
    assert op_names == set(OURS)
    module_names = {info.module_cls.__name__ for info in common_modules.module_db
                    if "norm" in info.module_cls.__module__}
    assert module_names == {info.module_cls.__name__ for info in NORM_MODULES}
    assert len(module_names) == 10  # BatchNorm, InstanceNorm 1d/2d/3d, Group, Layer, RMS, LRN


# ------------------------------------------------------------------------------- layouts


def _layout(array: np.ndarray, layout: str) -> np.ndarray:
    """A copy of `array` with the same values in the requested memory layout."""
    if layout == "noncontiguous" and array.ndim:
        wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
        wide[..., ::2] = array
        return wide[..., ::2]
    if layout == "channels_last" and array.ndim in (4, 5):
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(array, 1, -1)), -1, 1)
    return array.copy()


class _Pair:
    """Builds each tensor of a sample twice, ours and PyTorch's, with the same values and
    layout; remembers the ones that require grad to compare their gradients."""

    def __init__(self, layout: str, theirs_contiguous: bool = False) -> None:
        self.layout = layout
        self.theirs_contiguous = theirs_contiguous
        self.grads: list[tuple[tn.Tensor, torch.Tensor]] = []
        self.buffers: list[tuple[tn.Tensor, torch.Tensor]] = []

    def convert(self, value, is_input: bool = False):
        """(ours, theirs) for a sample value; tensors inside tuples/lists/dicts too."""
        if isinstance(value, torch.Tensor):
            base = value.detach().numpy()
            layout = self.layout if (is_input or self.layout == "noncontiguous") else "contiguous"
            ours_array = _layout(base, layout)
            theirs_array = _layout(base.astype(np.float64),
                                   "contiguous" if self.theirs_contiguous else layout)
            ours = tn.Tensor(ours_array, requires_grad=value.requires_grad)
            theirs = torch.from_numpy(theirs_array).requires_grad_(value.requires_grad)
            (self.grads if value.requires_grad else self.buffers).append((ours, theirs))
            return ours, theirs
        if isinstance(value, (list, tuple)):
            pairs = [self.convert(v) for v in value]
            return type(value)(p[0] for p in pairs), type(value)(p[1] for p in pairs)
        if isinstance(value, dict):
            pairs = {k: self.convert(v) for k, v in value.items()}
            return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}
        return value, value


def _assert_close(what: str, ours, theirs, dtype) -> None:
    """`ours` in the sample's dtype against PyTorch's float64 result."""
    ours = ours.detach().numpy() if isinstance(ours, tn.Tensor) else np.asarray(ours)
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != PyTorch's {theirs.shape}"
    if theirs.dtype.kind == "f":
        expected = torch.empty(0, dtype=dtype).numpy().dtype
        assert ours.dtype == expected, f"{what}: dtype {ours.dtype} != {expected}"
    np.testing.assert_allclose(ours, theirs, equal_nan=True, err_msg=what, **TOLERANCE[dtype])


def _unexpressible(input_tensor, layout: str) -> str | None:
    if layout == "channels_last" and input_tensor.ndim not in (4, 5):
        return ALLOWED_SKIPS["channels_last"]
    return None


def _check_skips(skipped: Counter, ran: int, layout: str) -> None:
    assert set(skipped) <= set(ALLOWED_SKIPS.values()), f"unexplained skips: {skipped}"
    if layout != "channels_last":
        assert ran > 0, "no sample ran"


# ------------------------------------------------------------------------------- OpInfo


def _run_twice(ours_fn, theirs_fn, args: tuple, kwargs: dict, pair: _Pair, dtype,
               rng: np.random.Generator) -> None:
    """Two calls (running buffers move twice), each followed by a backward; after each, the
    output, every gradient (accumulated) and every buffer must match."""
    (ours_args, theirs_args), (ours_kwargs, theirs_kwargs) = args, kwargs
    for call in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = theirs_fn(*theirs_args, **theirs_kwargs)
        got = ours_fn(*ours_args, **ours_kwargs)
        _assert_close(f"call {call}: output", got, expected, dtype)
        if expected.requires_grad:
            upstream = rng.standard_normal(expected.shape).astype(got.dtype)
            expected.backward(torch.from_numpy(upstream.astype(np.float64)))
            got.backward(tn.Tensor(upstream))
        for i, (ours, theirs) in enumerate(pair.grads):
            if theirs.grad is not None:
                assert ours.grad is not None, f"call {call}: tensor {i} got no gradient"
                _assert_close(f"call {call}: gradient of tensor {i}", ours.grad, theirs.grad,
                              dtype)
        for i, (ours, theirs) in enumerate(pair.buffers):
            _assert_close(f"call {call}: buffer {i} (running statistics)", ours, theirs, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("key", sorted(OPINFOS), ids=lambda k: "-".join(filter(None, k)))
def test_opinfo_reference_inputs(key, dtype_name, layout):
    op, dtype = OPINFOS[key], DTYPES[dtype_name]
    ours_fn, returns_stats = OURS[op.name]
    theirs_fn = (lambda *a, **k: op.op(*a, **k)[0]) if returns_stats else op.op
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    skipped, ran = Counter(), 0
    for index, sample in enumerate(op.reference_inputs("cpu", dtype, requires_grad=True)):
        reason = _unexpressible(sample.input, layout)
        if reason:
            skipped[reason] += 1
            continue
        pair = _Pair(layout, theirs_contiguous=op.name in THEIRS_CONTIGUOUS)
        x = pair.convert(sample.input, is_input=True)
        args, kwargs = pair.convert(tuple(sample.args)), pair.convert(dict(sample.kwargs))
        try:
            _run_twice(ours_fn, theirs_fn, ((x[0], *args[0]), (x[1], *args[1])), kwargs, pair,
                       dtype, rng)
        except Exception as err:
            raise AssertionError(f"sample {index} ({sample.summary()}): {err}") from err
        ran += 1
    _check_skips(skipped, ran, layout)


ERROR_OPS = sorted(k for k, op in OPINFOS.items() if op.error_inputs_func is not None)


@pytest.mark.parametrize("key", ERROR_OPS, ids=lambda k: "-".join(filter(None, k)))
def test_opinfo_error_inputs_raise_pytorchs_exception_type(key):
    op = OPINFOS[key]
    ours_fn, _ = OURS[op.name]
    count = 0
    for error in op.error_inputs("cpu"):
        sample = error.sample_input
        pair = _Pair("contiguous")
        x, _ = pair.convert(sample.input, is_input=True)
        args, _ = pair.convert(tuple(sample.args))
        kwargs, _ = pair.convert(dict(sample.kwargs))
        with pytest.raises(error.error_type):
            ours_fn(x, *args, **kwargs)
        count += 1
    assert count > 0


# ------------------------------------------------------------------------------- ModuleInfo


def _randomize(module, rng: np.random.Generator, dtype: str) -> None:
    """Non-trivial parameters and running statistics, so that affine maps and eval mode are
    actually exercised (a fresh module has weight 1, bias 0, mean 0, var 1)."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.dtype.is_floating_point:
                values = rng.uniform(0.5, 2.0, tensor.shape) if name.endswith("running_var") \
                    else rng.standard_normal(tensor.shape)
                tensor.copy_(torch.from_numpy(values.astype(dtype).astype(np.float64)))


def _assert_state_dicts_match(what: str, ours, theirs, dtype, exact: bool = False) -> None:
    """Same keys in the same order and close values; `exact`: also PyTorch's dtypes."""
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state), f"{what}: keys differ"
    for key, value in theirs_state.items():
        _assert_close(f"{what}: {key}", ours_state[key], value, dtype)
        if exact:
            assert ours_state[key].dtype == value.numpy().dtype, f"{what}: {key} dtype"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("info", NORM_MODULES, ids=lambda i: i.module_cls.__name__)
def test_moduleinfo_inputs(info, dtype_name, training, layout):
    dtype = DTYPES[dtype_name]
    ours_cls = getattr(nn, info.module_cls.__name__)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    skipped, ran = Counter(), 0
    samples = info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True,
                                      training=training)
    for sample in samples:
        x_torch = sample.forward_input.args[0]
        reason = _unexpressible(x_torch, layout)
        if reason:
            skipped[reason] += 1
            continue
        c_args, c_kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        what = f"{info.module_cls.__name__}({c_args}, {c_kwargs}) on {sample.desc!r}"
        theirs = info.module_cls(*c_args, **c_kwargs).to(dtype)
        ours = ours_cls(*c_args, **c_kwargs).to(np.dtype(dtype_name))
        _assert_state_dicts_match(f"{what}: fresh state_dict", ours, theirs, dtype, exact=True)
        theirs.double()
        _randomize(theirs, rng, dtype_name)
        ours.load_state_dict(theirs.state_dict())
        theirs.train(training)
        ours.train(training)
        pair = _Pair(layout)
        x_ours, x_theirs = pair.convert(x_torch, is_input=True)
        params = [(getattr(ours, n), getattr(theirs, n)) for n, _ in theirs.named_parameters()]
        pair.grads.extend(params)
        try:
            _run_twice(ours, theirs, ((x_ours,), (x_theirs,)), ({}, {}), pair, dtype, rng)
            _assert_state_dicts_match(f"{what}: state_dict after two calls", ours, theirs,
                                      dtype)
        except AssertionError as err:
            raise AssertionError(f"{what}: {err}") from err
        ran += 1
    _check_skips(skipped, ran, layout)


ERROR_MODULES = [info for info in NORM_MODULES if info.module_error_inputs_func is not None]


@pytest.mark.parametrize("info", ERROR_MODULES, ids=lambda i: i.module_cls.__name__)
def test_moduleinfo_error_inputs_raise_pytorchs_exception_type(info):
    ours_cls = getattr(nn, info.module_cls.__name__)
    errors = info.module_error_inputs_func(info, device="cpu", dtype=torch.float32,
                                           requires_grad=True, training=True)
    assert errors
    for error in errors:
        sample = error.module_error_input
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        if error.error_on == common_modules.ModuleErrorEnum.CONSTRUCTION_ERROR:
            with pytest.raises(error.error_type):
                ours_cls(*args, **kwargs)
            continue
        module = ours_cls(*args, **kwargs)
        x = tn.Tensor(sample.forward_input.args[0].detach().numpy())
        with pytest.raises(error.error_type):
            module(x)
