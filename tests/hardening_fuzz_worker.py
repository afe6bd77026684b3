"""Subprocess side of the fuzz tests (tests/test_hardening_fuzz.py): runs one drawn case at a time.

The parent draws cases with hypothesis and sends each one as a JSON line on stdin; this process
builds the input (dtype, memory layout, special values), runs tinygrad_norm's layer or
functional form and PyTorch's float64 twin, and answers one JSON line with a verdict:
  "match"        ours equals the float64 reference (outputs, gradients, running statistics);
  "clear_error"  ours raised TypeError/ValueError/RuntimeError with a message;
  anything else  a failure, with details.
It is a separate process so that a segfault in a kernel ends this process, which the parent
reports as a failed draw, instead of killing the test run. `kernel` cases call kernels.cpu
directly with arrays of random rank, dtype, shape and layout, against kernels.reference.
"""

from __future__ import annotations

import copy
import ctypes
import json
import sys
import traceback
import warnings

import numpy as np
import torch

import kernels.reference as reference
import tinygrad_norm as tn
from kernels import api, cpu
from kernels.cases import CASES
from tinygrad_norm.nn import functional as F

CLEAR_ERRORS = (TypeError, ValueError, RuntimeError)


class Mismatch(AssertionError):
    pass


# torch.nn.functional.group_norm refuses N·(C/G)·spatial == 1 with BatchNorm's "more than 1
# value per channel" message, which has no meaning for GroupNorm (each set is normalized on
# its own; the output is the bias). Ours computes it; so does the ATen op that group_norm
# wraps, which is the reference (torch.nn.GroupNorm's forward calls it through here too).
def _group_norm_reference(input, num_groups, weight=None, bias=None, eps=1e-5):
    return torch.group_norm(input, num_groups, weight, bias, eps)


torch.nn.functional.group_norm = _group_norm_reference


# ---------------------------------------------------------------------------- building inputs

def _values(case: dict, rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """float64 values of the drawn kind; NaN/Inf land at a few random positions."""
    fill = case["fill"]
    if fill == "offset":
        values = 1e4 + 0.01 * rng.standard_normal(shape)
    elif fill == "tiny":
        values = 1e-3 * rng.standard_normal(shape)
    elif fill == "huge":
        values = 1e18 * rng.standard_normal(shape)
    elif fill == "const":
        values = np.full(shape, 3.25)
    else:
        values = rng.standard_normal(shape)
    if fill in ("nan", "inf") and values.size:
        special = {"nan": np.nan, "inf": np.inf}[fill]
        flat = values.reshape(-1)
        for _ in range(1 + values.size // 50):
            flat[rng.integers(values.size)] = special * rng.choice([-1, 1])
    return values


def _cast(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bool":
        return values > 0
    if dtype.startswith("int"):
        return np.nan_to_num(np.round(values * 3), posinf=7, neginf=-7).astype(dtype)
    return values.astype(dtype)


def _in_layout(values: np.ndarray, layout: str) -> np.ndarray:
    """The same values, stored in the drawn memory layout (not C-contiguous except "c")."""
    if values.ndim == 0 or layout == "c":
        return values
    if layout == "fortran":
        return np.asfortranarray(values)
    if layout == "transposed":
        return np.ascontiguousarray(values.T).T
    if layout == "negative":
        flip = (slice(None, None, -1),) * values.ndim
        return np.ascontiguousarray(values[flip])[flip]
    if layout == "strided":
        buffer = np.zeros(values.shape[:-1] + (2 * values.shape[-1],), values.dtype)
        buffer[..., ::2] = values
        return buffer[..., ::2]
    raise ValueError(layout)


def make_input(case: dict, rng: np.random.Generator) -> np.ndarray:
    shape = tuple(case["shape"])
    if case["layout"] == "broadcast" and shape:
        # zero strides: one random axis is a broadcast of length-1 data
        axis = case["seed"] % len(shape)
        small = shape[:axis] + (1,) + shape[axis + 1:]
        values = _cast(_values(case, rng, small), case["dtype"])
        return np.broadcast_to(values, shape)
    return _in_layout(_cast(_values(case, rng, shape), case["dtype"]), case["layout"])


def _upstream(rng, y, case: dict) -> np.ndarray:
    """The gradient fed to backward, in the drawn layout too (C order for broadcast cases)."""
    layout = "c" if case["layout"] == "broadcast" else case["layout"]
    return _in_layout(_cast(rng.standard_normal(y.shape), str(y.dtype)), layout)


def _param(rng, shape, dtype) -> np.ndarray:
    return (1.0 + 0.5 * rng.standard_normal(shape)).astype(dtype)


# ---------------------------------------------------------------------------- comparing

def _tolerance(dtype: np.dtype) -> tuple[float, float]:
    """(rtol, atol relative to the reference's largest finite magnitude)."""
    return (1e-6, 1e-8) if dtype == np.float64 else (1e-3, 2e-4)


def assert_close(name: str, ours, theirs, dtype: np.dtype, yardstick=None,
                 gradient: bool = False) -> None:
    """ours == theirs (the float64 reference) within float32/float64 tolerance, or within
    twice PyTorch's own float32 error on the same input (`yardstick`, given for gradients
    only): an ill-conditioned gradient (e.g. dx of a two-element set with eps=0, where
    r·|dy|·2^-24 is the rounding floor) cannot be closer than the terms it cancels from.
    Outputs get no yardstick: they are well conditioned, and PyTorch's float32 output is
    0.16 off at x = 1e4 + 0.01·N(0,1), which must not become our tolerance.
    For a `gradient`, NaN and ±inf count as one "non-finite" class: with r = inf (eps = 0 on
    a set of equal values) the gradient is 0·inf, which PyTorch reports as inf in some places
    and NaN in others; outputs must match NaN for NaN and inf for inf."""
    ours = np.asarray(ours)
    theirs = np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape:
        raise Mismatch(f"{name}: shape {ours.shape} != reference {theirs.shape}")
    if ours.dtype != dtype:
        raise Mismatch(f"{name}: dtype {ours.dtype}, expected {dtype}")
    ours = ours.astype(np.float64)
    if gradient:
        both_non_finite = ~np.isfinite(ours) & ~np.isfinite(theirs)
        ours, theirs = np.where(both_non_finite, 0, ours), np.where(both_non_finite, 0, theirs)
    finite = theirs[np.isfinite(theirs)]
    scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    rtol, atol = _tolerance(dtype)
    atol = atol * scale
    if yardstick is not None:
        both = np.isfinite(yardstick) & np.isfinite(theirs)
        if both.any():
            atol = max(atol, 2 * float(np.abs(yardstick[both] - theirs[both]).max()))
    try:
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol,
                                   equal_nan=True, err_msg=name)
    except AssertionError as err:
        raise Mismatch(str(err)[:1500]) from None


def _sum_over(x: np.ndarray, grad_ref: np.ndarray) -> np.ndarray:
    """A parameter gradient is a sum over the input: zero for an empty input (PyTorch's
    GroupNorm returns NaN there, from the NaN statistics of empty sets)."""
    return np.zeros_like(grad_ref) if x.size == 0 else grad_ref


def _running_expected(x: np.ndarray, reference: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """An empty batch leaves running statistics as they were (PyTorch's BatchNorm does the
    same; its InstanceNorm overwrites them with NaN, the mean of nothing)."""
    return prior if x.size == 0 else reference


def _check_refused_by_torch_only(err: Exception, x: np.ndarray, y_ours) -> None:
    """PyTorch fails on some empty inputs (e.g. BatchNorm with zero channels: IndexError from
    select()); ours returns an empty output of the input's shape, the only sensible answer.
    Any other case that PyTorch refuses and ours accepts is a mismatch."""
    if x.size == 0 and y_ours.shape == x.shape:
        return
    raise Mismatch(f"PyTorch refused ({type(err).__name__}: {err}), ours accepted") from None


# ---------------------------------------------------------------------------- modules

def _torch_module(case: dict):
    name, args = case["kind"], case["args"]
    return getattr(torch.nn, name)(*args, **case["kwargs"], dtype=torch.float64)


def _our_module(case: dict):
    name, args = case["kind"], case["args"]
    return getattr(tn.nn, name)(*args, **case["kwargs"], dtype=case["param_dtype"])


def _reference_scale(case: dict) -> float:
    """Normalization is scale invariant: y(x, eps) = y(x/s, eps/s^2). PyTorch's float64 mean of
    values near 1e18 is off by more than an ulp, which for a one-element set (var = 0) is a
    visible xhat; the reference therefore runs on x/2^60 (exact) and is scaled back."""
    return 2.0**60 if case["fill"] == "huge" else 1.0


def _share_state(ours, theirs, rng, param_dtype, scale: float) -> None:
    """Random affine parameters and running statistics, the same values in both modules."""
    for name in ("weight", "bias"):
        param = getattr(theirs, name, None)
        if param is not None:
            values = _param(rng, tuple(param.shape), param_dtype)
            getattr(ours, name).data[...] = values
            with torch.no_grad():
                param.copy_(torch.from_numpy(values.astype(np.float64)))
    if getattr(theirs, "running_mean", None) is not None:
        channels = theirs.running_mean.shape[0]
        mean = rng.standard_normal(channels).astype(param_dtype)
        var = rng.uniform(0.5, 2.0, channels).astype(param_dtype)
        tracked = int(rng.integers(0, 4))
        ours.running_mean.data[...] = mean
        ours.running_var.data[...] = var
        ours.num_batches_tracked.data[...] = tracked
        theirs.running_mean.copy_(torch.from_numpy(mean.astype(np.float64) / scale))
        theirs.running_var.copy_(torch.from_numpy(var.astype(np.float64) / scale**2))
        theirs.num_batches_tracked.fill_(tracked)


def _torch_forward_backward(fn, x_values: np.ndarray, upstream: np.ndarray, params: list):
    x = torch.tensor(x_values, requires_grad=True)
    y = fn(x)
    y.backward(torch.from_numpy(np.ascontiguousarray(upstream, dtype=x_values.dtype)))
    return y.detach().numpy(), x.grad.numpy(), [None if p.grad is None else p.grad.numpy()
                                                 for p in params]


def _contiguous64(x: np.ndarray) -> np.ndarray:
    """The reference's input: C order. astype keeps a strided layout, and PyTorch 2.13's CPU
    batch_norm backward in eval mode returns a wrong input gradient for some of them (an
    N, C, H, 1 tensor with strides (4, 1, 2, 1)); the layouts under test are ours."""
    return np.ascontiguousarray(x, dtype=np.float64)


def _float32_yardstick(fn, x: np.ndarray, upstream: np.ndarray, params: list, scale: float):
    """PyTorch's float32 (y, dx, param grads) on the same input, or None for float64 input."""
    if x.dtype != np.float32:
        return None
    try:
        y, dx, grads = _torch_forward_backward(
            fn, (_contiguous64(x) / scale).astype(np.float32), upstream, params)
    except Exception:
        return None
    return y, dx / scale, grads


def run_module(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    x = make_input(case, rng)
    scale = _reference_scale(case)
    try:
        theirs = _torch_module(case)
    except Exception:  # PyTorch refuses the configuration: ours must refuse it too
        theirs = None
    ours = _our_module(case)  # raises a clear error or builds
    if theirs is None:
        raise Mismatch("PyTorch refused this configuration, ours accepted it")
    _share_state(ours, theirs, rng, np.dtype(case["param_dtype"]), scale)
    priors = {name: getattr(ours, name).numpy().copy() for name in ("running_mean", "running_var")
              if getattr(ours, name, None) is not None}
    ours.train(case["training"])
    theirs.train(case["training"])
    float_input = x.dtype.kind == "f"
    x_ours = tn.Tensor(x, requires_grad=float_input)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y_ours = ours(x_ours)  # a clear error ends the case here
    if not float_input or x.dtype == np.float16:
        raise Mismatch(f"accepted input of dtype {x.dtype}")
    eps = case["kwargs"]["eps"]
    # RMSNorm's eps=None is finfo of the input's dtype, not of the float64 reference's
    theirs.eps = (float(np.finfo(x.dtype).eps) if eps is None else eps) / scale**2
    theirs32 = copy.deepcopy(theirs).float()
    upstream = _upstream(rng, y_ours, case)
    y_ours.backward(upstream)
    params = [p for p in (getattr(theirs, "weight", None), getattr(theirs, "bias", None))
              if p is not None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            y_ref, dx_ref, param_grads = _torch_forward_backward(
                theirs, _contiguous64(x) / scale, upstream, params)
        except Exception as err:
            _check_refused_by_torch_only(err, x, y_ours)
            return
        params32 = [p for p in (getattr(theirs32, "weight", None),
                                getattr(theirs32, "bias", None)) if p is not None]
        yard = _float32_yardstick(theirs32, x, upstream, params32, scale) or (None,) * 3
    dtype = x.dtype
    assert_close("output", y_ours.detach().numpy(), y_ref, dtype)
    assert_close("input grad", x_ours.grad.numpy(), dx_ref / scale, dtype, yard[1], True)
    for i, (name, grad_ref) in enumerate(zip(("weight", "bias"), param_grads)):
        param = getattr(ours, name)
        assert_close(f"{name} grad", param.grad.numpy(), _sum_over(x, grad_ref), param.dtype,
                     None if yard[2] is None else yard[2][i], True)
    for name, power in (("running_mean", 1), ("running_var", 2)):
        buffer = getattr(theirs, name, None)
        if buffer is not None:
            expected = _running_expected(x, buffer.numpy() * scale**power, priors[name])
            assert_close(name, getattr(ours, name).detach().numpy(), expected,
                         getattr(ours, name).dtype)
    if getattr(theirs, "num_batches_tracked", None) is not None:
        if int(ours.num_batches_tracked.numpy()) != int(theirs.num_batches_tracked):
            raise Mismatch("num_batches_tracked differs")


# ---------------------------------------------------------------------------- functional forms

def _functional_call(module, case: dict, x, weight, bias, running, eps):
    kind, extra = case["kind"], case["args"]
    if kind == "layer_norm":
        return module.layer_norm(x, extra[0], weight, bias, eps)
    if kind == "rms_norm":
        return module.rms_norm(x, extra[0], weight, eps)
    if kind == "group_norm":
        return module.group_norm(x, extra[0], weight, bias, eps)
    mean, var = running if running is not None else (None, None)
    if kind == "batch_norm":
        return module.batch_norm(x, mean, var, weight, bias, case["training"],
                                 case["momentum"], eps)
    return module.instance_norm(x, mean, var, weight, bias, case["training"],
                                case["momentum"], eps)


def _param_shape(case: dict, x_shape: tuple) -> tuple | None:
    if case["kind"] in ("layer_norm", "rms_norm"):
        extra = case["args"][0]
        return (extra,) if isinstance(extra, int) else tuple(extra)
    return (x_shape[1],) if len(x_shape) > 1 else None


def _param_in_layout(values: np.ndarray, layout: str) -> np.ndarray:
    if layout == "broadcast":  # a zero-stride weight: one value repeated
        return np.broadcast_to(values.reshape(-1)[:1].reshape((1,) * values.ndim), values.shape)
    return _in_layout(values, layout)


def run_functional(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    x = make_input(case, rng)
    scale = _reference_scale(case)
    float_input = x.dtype.kind == "f"
    param_dtype = case["param_dtype"]
    shape = _param_shape(case, x.shape)
    weight = bias = running = None
    if case["affine"] and shape is not None and 0 not in shape:
        weight = _param_in_layout(_param(rng, shape, param_dtype), case["layout"])
        if case["kind"] != "rms_norm":
            bias = _param_in_layout(_param(rng, shape, param_dtype), case["layout"])
    if case["track_running_stats"] and shape is not None:
        running = (rng.standard_normal(shape).astype(param_dtype),
                   rng.uniform(0.5, 2.0, shape).astype(param_dtype))
    ours_w = None if weight is None else tn.Tensor(weight, requires_grad=True)
    ours_b = None if bias is None else tn.Tensor(bias, requires_grad=True)
    ours_running = None if running is None else tuple(r.copy() for r in running)
    x_ours = tn.Tensor(x, requires_grad=float_input)
    y_ours = _functional_call(F, case, x_ours, ours_w, ours_b, ours_running, case["eps"])
    if not float_input or x.dtype == np.float16:
        raise Mismatch(f"accepted input of dtype {x.dtype}")
    upstream = _upstream(rng, y_ours, case)
    y_ours.backward(upstream)

    def torch_call(dtype):
        """PyTorch's functional form with its own copies of the parameters, in `dtype`."""
        def tensor(a, divisor=1.0, grad=False):
            return None if a is None else torch.tensor(a.astype(np.float64) / divisor,
                                                       dtype=dtype, requires_grad=grad)
        w, b = tensor(weight, grad=True), tensor(bias, grad=True)
        stats = None if running is None else (tensor(running[0], scale),
                                              tensor(running[1], scale**2))
        return (lambda t: _functional_call(torch.nn.functional, case, t, w, b, stats,
                                           case["eps"] / scale**2),
                [p for p in (w, b) if p is not None], stats)

    fn, params, th_running = torch_call(torch.float64)
    try:
        y_ref, dx_ref, grads = _torch_forward_backward(fn, _contiguous64(x) / scale,
                                                       upstream, params)
    except Exception as err:
        _check_refused_by_torch_only(err, x, y_ours)
        return
    fn32, params32, _ = torch_call(torch.float32)
    yard = _float32_yardstick(fn32, x, upstream, params32, scale) or (None,) * 3
    dtype = x.dtype
    assert_close("output", y_ours.detach().numpy(), y_ref, dtype)
    assert_close("input grad", x_ours.grad.numpy(), dx_ref / scale, dtype, yard[1], True)
    ours_params = [p for p in (ours_w, ours_b) if p is not None]
    for i, (name, ours_p, grad_ref) in enumerate(zip(("weight", "bias"), ours_params, grads)):
        assert_close(f"{name} grad", ours_p.grad.numpy(), _sum_over(x, grad_ref), ours_p.dtype,
                     None if yard[2] is None else yard[2][i], True)
    if running is not None:
        for name, power, ours_r, ref_r in zip(("running_mean", "running_var"), (1, 2),
                                              ours_running, th_running):
            prior = running[0] if name == "running_mean" else running[1]
            expected = _running_expected(x, ref_r.numpy() * scale**power, prior)
            assert_close(name, ours_r, expected, ours_r.dtype)


# ---------------------------------------------------------------------------- kernels

# What each argument of kernels/api.py is drawn as; "stats" stands for the statistics its
# forward returned. The fuzzed kernels are the ones every backend has (api.names("cuda")).
ROLES = {"weight": "features", "bias": "features", "mean": "stats", "inv_std": "stats",
         "inv_rms": "stats", "running_mean": "features", "running_var": "positive", "eps": "eps",
         "num_groups": "groups"}
KERNEL_ARGS = {kernel.name: tuple(("x2" if kernel.layout == "rows" else "x3")
                                  if name in ("x", "dy") else ROLES[name]
                                  for name in kernel.arguments if name != "param_grads")
               for kernel in api.KERNELS if kernel.name in api.names("cuda")}


def _forward_stats(case: dict, x: np.ndarray, weight: np.ndarray, rng) -> list:
    """The statistics a backward kernel takes, from the forward on the same x: the backward
    kernels refine the saved mean (they measure its rounding), so arbitrary values are not a
    meaningful input. With an invalid num_groups there is no forward; random stand-ins."""
    norm = next(c for c in CASES if c.backward == case["kind"])
    named = {"x": x, "weight": weight, "bias": None, "eps": 1e-5, "num_groups": case["groups"]}
    try:
        forward = norm.run_forward(cpu, named)
    except CLEAR_ERRORS:
        shape = (x.shape[0], max(1, case["groups"]))
        return [_param(rng, shape, x.dtype), _param(rng, shape, x.dtype)]
    return [forward[name] for name in api.BY_NAME[case["kind"]].arguments if name in forward]


def _corrupt(value, corruption: str, bad_dtype: str):
    if not isinstance(value, np.ndarray):  # num_groups or eps
        return {"wrong_dtype": "3", "wrong_size": 0.5, "negative": -1, "nan": float("nan"),
                "none_arg": None, "list": [value]}.get(corruption, value)
    if corruption == "wrong_dtype":
        return value.astype(bad_dtype)
    if corruption == "wrong_size":
        return np.resize(value, (value.shape[0] + 1,) + value.shape[1:])
    if corruption == "wrong_rank":
        return value.reshape(value.shape + (1,))
    if corruption == "non_contiguous":
        return _in_layout(value, "strided")
    if corruption == "negative":
        return _in_layout(value, "negative")
    if corruption == "nan":
        return np.full_like(value, np.nan)
    if corruption == "none_arg":
        return None
    if corruption == "list":
        return value.tolist()
    return value


def _kernel_arguments(case: dict, rng) -> list:
    """Right arguments for one kernel, then the drawn corruption applied to one of them."""
    x_shape = tuple(case["shape"])
    channels = x_shape[1]
    dtype = case["dtype"]
    by_role = {
        "x2": lambda: rng.standard_normal(x_shape[:2]).astype(dtype),
        "x3": lambda: rng.standard_normal(x_shape).astype(dtype),
        "features": lambda: _param(rng, (channels,), dtype),
        "positive": lambda: rng.uniform(0.5, 2, channels).astype(dtype),
        "groups": lambda: case["groups"],
        "eps": lambda: case["eps"],
        "stats": lambda: None,
    }
    roles = KERNEL_ARGS[case["kind"]]
    args = [by_role[role]() for role in roles]
    if "stats" in roles:
        stats = _forward_stats(case, args[1], args[-1], rng)
        first = roles.index("stats")
        args[first:first + len(stats)] = stats
    target = case["corrupt_arg"] % len(args)
    args[target] = _corrupt(args[target], case["corruption"], case["bad_dtype"])
    return args


def run_kernel(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    args = _kernel_arguments(case, rng)
    ours = getattr(cpu, case["kind"])(*args)  # a clear error ends the case here
    expected = getattr(reference, case["kind"])(*args)
    ours = ours if isinstance(ours, tuple) else (ours,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    dtype = args[0].dtype
    for i, (a, b) in enumerate(zip(ours, expected)):
        assert_close(f"result {i}", a, b, dtype)


# ---------------------------------------------------------------------------- round two
# metadata changes to results between calls, Python scalars in arithmetic, in-place changes
# before backward, and fork after a parallel kernel

TAMPERS = {
    "shape": lambda y: setattr(y, "shape", (y.size,)),
    "dtype": lambda y: setattr(y, "dtype", np.int32 if y.dtype == np.float32 else np.int64),
    "strides": lambda y: setattr(y, "strides", (0,) * y.ndim),
    "read_only": lambda y: setattr(y.flags, "writeable", False),
    "weakref": lambda y: _WEAK.append(__import__("weakref").ref(y)),
}
_WEAK: list = []


def run_metadata(case: dict) -> None:
    """A kernel result changed by the caller, then dropped: the next call is unaffected."""
    rng = np.random.default_rng(case["seed"])
    args = _kernel_arguments(case | {"corruption": "none"}, rng)
    kernel = getattr(cpu, case["kind"])
    first = kernel(*args)
    first = first if isinstance(first, tuple) else (first,)
    expected = [np.array(a, copy=True) for a in first]
    TAMPERS[case["tamper"]](first[case["output"] % len(first)])
    del first
    again = kernel(*args)
    again = again if isinstance(again, tuple) else (again,)
    for i, (a, b) in enumerate(zip(again, expected)):
        if a.shape != b.shape or a.dtype != b.dtype or not a.flags.writeable:
            raise Mismatch(f"result {i}: {a.shape} {a.dtype} writeable={a.flags.writeable}, "
                           f"expected {b.shape} {b.dtype}")
        if not np.array_equal(a, b, equal_nan=True):
            raise Mismatch(f"result {i} changed after tampering with an earlier result")


def _scalar(kind: str, value: float):
    return {"bool": bool(value > 0), "int": int(value * 3), "float": float(value),
            "np.float64": np.float64(value), "np.float32": np.float32(value),
            "np.int64": np.int64(value * 3), "np.int32": np.int32(value * 3),
            "np.bool_": np.bool_(value > 0)}[kind]


def run_scalar(case: dict) -> None:
    """tensor op scalar (either side) has PyTorch's dtype and values, or both refuse."""
    import operator

    rng = np.random.default_rng(case["seed"])
    values = _cast(rng.standard_normal(case["shape"]) * 2, case["dtype"])
    scalar = _scalar(case["scalar"], case["value"])
    op = getattr(operator, case["op"])
    pair = (lambda t: (scalar, t)) if case["reflected"] else (lambda t: (t, scalar))
    try:
        with np.errstate(all="ignore"):
            theirs = op(*pair(torch.from_numpy(np.array(values))))
    except RuntimeError:
        theirs = None
    try:
        with np.errstate(all="ignore"):
            ours = op(*pair(tn.Tensor(values)))
    except CLEAR_ERRORS:
        if theirs is None:
            raise
        raise Mismatch("ours refused, PyTorch computed") from None
    if theirs is None:
        raise Mismatch("PyTorch refused, ours computed")
    if str(ours.dtype) != str(theirs.dtype).replace("torch.", ""):
        raise Mismatch(f"dtype {ours.dtype}, PyTorch {theirs.dtype}")
    a, b = ours.numpy().astype(np.float64), theirs.numpy().astype(np.float64)
    finite = np.isfinite(b)
    if not (np.array_equal(np.isfinite(a), finite) and np.allclose(a[finite], b[finite],
                                                                    rtol=2e-3, atol=1e-6)):
        raise Mismatch(f"values {a.ravel()[:5]} != PyTorch {b.ravel()[:5]}")


INPLACE_GRAPHS = {
    "mul": lambda m, x, w: (x * w).sum(),
    "exp": lambda m, x, w: (x.exp() * w).sum(),
    "add": lambda m, x, w: (x + w).sum(),
    "layer_norm": lambda m, x, w: (m.layer_norm(x, (x.shape[-1],), w) * 1.0).sum(),
    "relu": lambda m, x, w: (x.relu() * w).sum(),
}


def run_inplace(case: dict) -> None:
    """An in-place change between forward and backward: ours raises PyTorch's message when
    the gradient would use the changed values, and otherwise gives the unchanged gradient."""
    rng = np.random.default_rng(case["seed"])
    x0 = rng.standard_normal((3, 4))
    w0 = rng.uniform(0.5, 1.5, 4)
    graph = INPLACE_GRAPHS[case["graph"]]
    x = tn.Tensor(x0.copy(), dtype=np.float64, requires_grad=True)
    w = tn.Tensor(w0.copy(), dtype=np.float64, requires_grad=True)
    out = graph(F, x, w)
    target = {"x": x, "w": w}[case["target"]].detach()
    with tn.no_grad():
        if case["change"] == "zero_":
            target.zero_()
        elif case["change"] == "fill_":
            target.fill_(2.0)
        elif case["change"] == "copy_":
            target.copy_(tn.Tensor(np.ones(target.shape)))
        else:
            target[0] = 5.0
    try:
        out.backward()
    except RuntimeError as err:
        if "modified by an inplace operation" not in str(err):
            raise
        raise RuntimeError(str(err)) from None  # a clear error: the values changed
    tx = torch.tensor(x0, requires_grad=True)
    tw = torch.tensor(w0, requires_grad=True)
    graph(torch.nn.functional, tx, tw).backward()
    for name, ours, theirs in (("x", x, tx), ("w", w, tw)):
        if not np.allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-6, atol=1e-9):
            raise Mismatch(f"{name}.grad ignores the in-place change without raising")


def _fork_child(case: dict) -> list:
    rng = np.random.default_rng(case["seed"])
    args = _kernel_arguments(case | {"corruption": "none"}, rng)
    result = getattr(cpu, case["kind"])(*args)
    return [np.array(a) for a in (result if isinstance(result, tuple) else (result,))]


def run_fork(case: dict) -> None:
    """After this process ran a parallel kernel, a forked child computes the same results."""
    import multiprocessing

    cpu.layer_norm_forward(np.ones((64, 2048), np.float32), None, None, 1e-5)  # parallel
    expected = _fork_child(case)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        ours = pool.apply_async(_fork_child, (case,)).get(timeout=60)
    for i, (a, b) in enumerate(zip(ours, expected)):
        if not np.array_equal(a, b, equal_nan=True):
            raise Mismatch(f"result {i} differs in the forked child")


# ---------------------------------------------------------------------------- protocol

def run_case(case: dict) -> dict:
    runner = {"module": run_module, "functional": run_functional, "kernel": run_kernel,
              "metadata": run_metadata, "scalar": run_scalar, "inplace": run_inplace,
              "fork": run_fork,
              "segfault": lambda case: ctypes.string_at(0)}  # checks the parent's harness
    try:
        runner[case["family"]](case)
    except Mismatch as err:
        return {"verdict": "mismatch", "detail": str(err)}
    except CLEAR_ERRORS as err:
        if not str(err).strip():
            return {"verdict": "unclear_error", "detail": f"{type(err).__name__} without message"}
        return {"verdict": "clear_error", "detail": f"{type(err).__name__}: {err}"[:300]}
    except Exception as err:
        return {"verdict": "unexpected_exception",
                "detail": "".join(traceback.format_exception(err))[-2000:]}
    return {"verdict": "match", "detail": ""}


def main() -> None:
    for line in sys.stdin:
        result = run_case(json.loads(line))
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
