"""Every public kernel in kernels.cpu refuses bad arguments before any Numba code runs.

A Numba kernel checks no bounds, so a wrong shape, dtype or layout that reached one would be a
crash or silent garbage. Each test here wraps every Numba dispatcher of the kernel modules in a
spy: a refused call must raise TypeError/ValueError naming the argument and must not have
reached any dispatcher; an accepted call must hand the dispatchers only C-contiguous arrays of
x's dtype (or float64 scratch).

Audit (kernels/cpu/*.py, every public name): kernels.cpu exports exactly the twelve wrappers below,
and each validates all of its arguments with kernels/cpu/validation.py before allocating or
dispatching. The jitted helpers in stats.py (shifted_moments, shifted_sums, gradient_sums,
weighted_gradient_sums, sum_partials, chunk_bounds) are building blocks that take already
checked arrays; they are called only from those wrappers and their jitted drivers, and are not
exported. `test_exported_kernels_are_exactly_the_validated_wrappers` keeps it that way.
"""

from __future__ import annotations

import inspect

import numba
import numpy as np
import pytest

from kernels import cpu
from kernels.cpu import batch_norm, batch_renorm, group_norm, layer_norm, rms_norm, stats

KERNEL_MODULES = (batch_norm, batch_renorm, group_norm, layer_norm, rms_norm, stats)
OPTIONAL = {"weight", "bias"}  # None means "no affine"; every other array is required
SHAPE = (4, 6, 5)  # (N, C, S); LayerNorm/RMSNorm take (N, C)
GROUPS = 3
LARGE_SHAPE = (4, 6, 2731)  # > 65536 elements: the parallel drivers


def _valid_arguments(name: str, dtype, shape=SHAPE) -> dict:
    """Arguments that the kernel accepts, as the forward kernels would produce them."""
    rng = np.random.default_rng(0)
    n, c, s = shape
    x3 = rng.standard_normal(shape).astype(dtype)
    x2 = rng.standard_normal((n, c)).astype(dtype)
    vec = (1 + 0.1 * rng.standard_normal(c)).astype(dtype)
    if name.startswith(("layer_norm", "rms_norm")):
        x, dy = x2, rng.standard_normal((n, c)).astype(dtype)
    else:
        x, dy = x3, rng.standard_normal(shape).astype(dtype)
    args = {"x": x, "dy": dy, "weight": vec, "bias": vec.copy(), "eps": 1e-5,
            "num_groups": GROUPS, "running_mean": vec * 0.1,
            "running_var": np.abs(vec) + 0.5, "rmax": 2.0, "dmax": 1.0}
    forward_stats = {
        "layer_norm_backward": lambda: cpu.layer_norm_forward(x, vec, None, 1e-5)[1:3],
        "group_norm_backward": lambda: cpu.group_norm_forward(x, GROUPS, vec, None, 1e-5)[1:3],
        "batch_norm_backward": lambda: cpu.batch_norm_forward_train(x, vec, None, 1e-5)[1:3],
    }
    if name in forward_stats:
        args["mean"], args["inv_std"] = forward_stats[name]()
    if name == "batch_renorm_backward":
        _, args["mean"], args["inv_std"], _, args["r"], args["d"] = cpu.batch_renorm_forward_train(
            x, args["running_mean"], args["running_var"], vec, None, 1e-5, 2.0, 1.0)
    if name == "rms_norm_backward":
        args["inv_rms"] = cpu.rms_norm_forward(x, vec, 1e-5)[1]
    parameters = inspect.signature(getattr(cpu, name)).parameters
    return {p: args[p] for p in parameters}


def _bad_arrays(name: str, array: np.ndarray) -> dict:
    """Variants of `array` that no kernel may accept in its place."""
    other_float = np.float64 if array.dtype == np.float32 else np.float32
    bad = {
        "list": array.tolist(),
        "float16": array.astype(np.float16),
        "int64": array.astype(np.int64),
        "bool": array > 0,
        "complex": array.astype(np.complex64),
        "other float dtype": array.astype(other_float),
        "extra dimension": array[..., None],
        "0-d": np.array(1.0, array.dtype),
        "strided": np.repeat(array, 2, axis=-1)[..., ::2],
        "negative strides": array[::-1].copy()[::-1],
        "zero strides": np.broadcast_to(array.reshape(-1)[:1].reshape((1,) * array.ndim),
                                        array.shape),
    }
    if array.ndim >= 2:
        bad["fortran order"] = np.asfortranarray(array)
    if name not in OPTIONAL:
        bad["None"] = None
    if name != "x":  # more rows of x is a different valid input; every other size is fixed
        bad["one too many"] = np.resize(array, (array.shape[0] + 1,) + array.shape[1:])
        bad["one too few"] = array[:-1].copy()
    return bad


BAD_SCALARS = {
    "eps": [-1.0, float("nan"), float("inf"), "1e-5", None, True, 1e-5j],
    "num_groups": [0, -1, 4, 1.5, "3", None, True, np.float64(3.0)],
    "rmax": [0.5, float("nan"), float("inf"), "2", None, True],
    "dmax": [-1.0, float("nan"), float("inf"), "1", None, True],
}


@pytest.fixture(scope="module")
def compiled_kernels():
    """Compile every kernel for both dtypes and both paths before any spy is installed: a
    jitted caller compiled while its callee is replaced by the spy would fail to type."""
    for name in cpu.__all__:
        for dtype in (np.float32, np.float64):
            for shape in (SHAPE, LARGE_SHAPE):
                getattr(cpu, name)(**_valid_arguments(name, dtype, shape))


@pytest.fixture
def dispatch_spy(monkeypatch, compiled_kernels):
    """Wraps every Numba dispatcher that Python code in the kernel modules calls."""
    calls = []

    def spy(name, dispatcher):
        def wrapper(*args):
            calls.append((name, args))
            return dispatcher(*args)
        return wrapper

    for module in KERNEL_MODULES:
        for name, obj in list(vars(module).items()):
            if isinstance(obj, numba.core.registry.CPUDispatcher):
                monkeypatch.setattr(module, name, spy(f"{module.__name__}.{name}", obj))
    return calls


def _bad_cases():
    for name in cpu.__all__:
        for dtype in (np.float32, np.float64):
            valid = _valid_arguments(name, dtype)
            for arg, value in valid.items():
                if isinstance(value, np.ndarray):
                    variants = _bad_arrays(arg, value)
                else:
                    variants = {repr(v): v for v in BAD_SCALARS[arg]}
                for what, bad in variants.items():
                    yield pytest.param(name, dtype, arg, bad,
                                       id=f"{name}-{np.dtype(dtype).name}-{arg}-{what}")


@pytest.mark.parametrize("name, dtype, arg, bad", list(_bad_cases()))
def test_bad_argument_is_refused_before_any_kernel_runs(dispatch_spy, name, dtype, arg, bad):
    arguments = _valid_arguments(name, dtype) | {arg: bad}
    dispatch_spy.clear()  # the forward run that produced the statistics
    with pytest.raises((TypeError, ValueError)) as raised:
        getattr(cpu, name)(**arguments)
    assert arg in str(raised.value), f"the error should name {arg!r}: {raised.value}"
    assert dispatch_spy == [], "a kernel ran before the argument was refused"


@pytest.mark.parametrize("shape", [SHAPE, LARGE_SHAPE], ids=["serial", "parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", cpu.__all__)
def test_kernels_only_ever_receive_contiguous_arrays_of_one_dtype(dispatch_spy, name, dtype,
                                                                   shape):
    arguments = _valid_arguments(name, dtype, shape)
    dispatch_spy.clear()  # the forward run that produced the statistics
    getattr(cpu, name)(**arguments)
    assert dispatch_spy, "no kernel ran"
    for kernel, args in dispatch_spy:
        for i, value in enumerate(args):
            if isinstance(value, np.ndarray):
                assert value.flags.c_contiguous, f"{kernel} argument {i} is not contiguous"
                assert value.dtype in (np.dtype(dtype), np.dtype(np.float64)), (
                    f"{kernel} argument {i} has dtype {value.dtype}")


def test_weight_and_bias_none_mean_no_affine():
    x = np.random.default_rng(1).standard_normal((3, 4, 5)).astype(np.float32)
    y, _, _ = cpu.group_norm_forward(x, 2, None, None, 1e-5)
    ones = np.ones(4, np.float32)
    np.testing.assert_array_equal(y, cpu.group_norm_forward(x, 2, ones, ones * 0, 1e-5)[0])


def test_exported_kernels_are_exactly_the_validated_wrappers():
    exported = {name for name in dir(cpu) if not name.startswith("_")
                and callable(getattr(cpu, name))
                and getattr(getattr(cpu, name), "__module__", "").startswith("kernels.cpu.")}
    assert exported == set(cpu.__all__)
    for name in cpu.__all__:
        assert not isinstance(getattr(cpu, name), numba.core.registry.CPUDispatcher), (
            f"{name} is a raw Numba dispatcher: it must be a validating Python wrapper")
