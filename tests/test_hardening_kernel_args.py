"""Every public kernel, on every backend, refuses bad arguments before any kernel runs.

A Numba kernel checks no bounds, so a wrong shape, dtype or layout that reached one would be a
crash or silent garbage. Each test here wraps every compiled kernel of the backend's modules
(Numba CPU dispatchers, numba.cuda kernels, the simulator's stand-ins) in a spy: a refused call
must raise TypeError/ValueError naming the argument and must not have reached any kernel; an
accepted call must hand the kernels only C-contiguous arrays of x's dtype (or float64 scratch).

Only what protects memory and typing is the kernels' to check (kernels/validation.py): eps must
be a real number, but which values a layer accepts (zero, negative) is the framework's rule,
checked in nn.functional where the user's terms are known.

Audit (kernels/{cpu,cuda}/*.py, every public name): each backend exports exactly the functions
of kernels/api.py, and each validates all of its arguments with kernels/validation.py before
allocating or launching. The jitted helpers (kernels/cpu/stats.py, the cuda row kernels) take
already checked arrays and are not exported; `test_exported_kernels_are_validating_wrappers`
keeps it that way.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from backends import BACKENDS, kernels_for, on_device

from kernels import api
from kernels.cases import BY_NAME, CASES

NOT_KERNEL_MODULES = {"__init__", "buffers", "fork_safety", "ptx_check", "gpu_check"}
KERNEL_MODULES = {  # every module of kernels/<backend>/ that holds compiled kernels
    backend: sorted(f.stem for f in (Path(api.__file__).parent / backend).glob("*.py")
                    if f.stem not in NOT_KERNEL_MODULES)
    for backend in ("cpu", "cuda")
}
# every kernel on every backend that has it (kernels/api.py: pooling, conv2d, the losses and
# optimizers are CPU-only; on the cuda device those ops run through CuPy)
KERNEL_BACKENDS = [pytest.param(kernel.name, backend.values[0], marks=backend.marks,
                                id=f"{kernel.name}-{backend.values[0]}")
                   for kernel in api.KERNELS for backend in BACKENDS
                   if backend.values[0] in kernel.backends]
OPTIONAL = {"weight", "bias", "columns"}  # None: no affine (conv2d: recompute columns)
OPTIONAL |= {"momentum_buffers"}  # optimizer kernels: a None buffer is made on the first step
SHAPE = (4, 6, 5)  # (N, C, S); LayerNorm/RMSNorm take (N, C)
GROUPS = 3
LARGE_SHAPE = (4, 6, 2731)  # > 65536 elements: the CPU's parallel drivers
CASE_OF = {}
for _case in CASES:  # the first case that calls a kernel builds its inputs
    CASE_OF.setdefault(_case.forward, _case)
    CASE_OF.setdefault(_case.backward, _case)
BAD_SCALARS = {
    "eps": ["1e-5", None, True, 1e-5j, [1e-5]],
    "num_groups": [0, -1, 4, 1.5, "3", None, True, np.float64(3.0)],
    "size": [0, -1, 1.5, "3", None, True],
    "alpha": ["1e-4", None, True, 1e-4j],
    "beta": ["0.75", None, True],
    "k": ["1", None, True],
    "count": [0, -1, 1.5, "3", None, True],
    "rmax": [0.5, float("nan"), float("inf"), "2", None, True],
    "dmax": [-1.0, float("nan"), float("inf"), "1", None, True],
    "ignore_index": [1.5, "1", None, True],  # cross_entropy
    "label_smoothing": ["0.1", None, True, 0.1j],
    "reduction": ["avg", None, 1, True],
}
CONV_BAD_SCALARS = {  # conv2d (see _conv2d_arguments); pooling's names mean other things
    "stride": [0, -1, (1,), (1, 0), 1.5, "1", None, True],
    "padding": [-1, (1, -1), ((1, 1),), ((1, 1), (1, -1)), 1.5, "1", None, True],
    "dilation": [0, (1, 0), 100, 1.5, "1", None, True],
    "groups": [0, -1, 3, 4, 1.5, "2", None, True],
    "output_mask": [None, (True, True), (1, 1, 1), "yes", True],
}


# ---- 2-d pooling (kernels/cpu/max_pool2d.py, avg_pool2d.py): (N, C, H, W) x, int64 indices
POOL_SCALARS = dict(kernel_size=(3, 2), stride=(2, 1), padding=1, dilation=(1, 2),
                    ceil_mode=True, count_include_pad=False, divisor_override=None)
POOL_BAD_SCALARS = {
    "kernel_size": [0, -1, 1.5, "2", None, True, (2, 2, 2), (2,)],
    "stride": [0, -1, 1.5, "2", True, (1, 0)],  # None is valid: kernel_size
    "padding": [-1, 1.5, "0", None, True, 2],  # 2: more than half of kernel_size
    "dilation": [0, -1, 1.5, None, True],
    "ceil_mode": [0, 1, "True", None],
    "count_include_pad": [0, 1, "True", None],
    "divisor_override": [0, 1.5, "2", True],
    "input_size": [5, (0, 5), (5,), (5, 5, 5), None, "55", (5.0, 5)],
}
FREE_SIZE = {("avg_pool2d_backward", "dy")}  # dy is its only array: any batch size is valid


def _pool_arguments(backend: str, name: str, dtype, shape: tuple) -> dict:
    """x (N, C, H, W) from the (N, C, S) shape (LARGE_SHAPE: above the serial threshold), and
    dy and indices as the forward kernel returns them."""
    plane = (5, 7) if shape[2] < 100 else (53, 53)
    x = np.random.default_rng(0).standard_normal(shape[:2] + plane).astype(dtype)
    named = dict(POOL_SCALARS, x=x, input_size=plane)
    forward = name.replace("backward", "forward")
    results = getattr(kernels_for(backend), forward)(
        *(named[p] for p in api.BY_NAME[forward].arguments))
    results = results if isinstance(results, tuple) else (results,)
    named |= dict(zip(api.BY_NAME[forward].returns, results))
    named["dy"] = np.ones_like(named["y"])
    return {p: named[p] for p in api.BY_NAME[name].arguments}
# ---- end of pooling


def _conv2d_arguments(name: str, dtype, shape) -> dict:
    """conv2d: x (N, 4, H, W), weight (4, 2, 3, 3) in 2 groups (so that one output channel
    more or fewer is refused), padding 1 (dy has x's shape); LARGE_SHAPE runs the parallel
    loops."""
    rng = np.random.default_rng(0)
    size = (shape[0], 4) + ((5, 6) if shape == SHAPE else (70, 71))
    named = dict(x=rng.standard_normal(size).astype(dtype), dy=np.ones(size, dtype),
                 weight=rng.standard_normal((4, 2, 3, 3)).astype(dtype),
                 bias=rng.standard_normal(4).astype(dtype), stride=1, padding=1, dilation=1,
                 groups=2, output_mask=(True, True, True))
    if name == "conv2d_backward":
        import kernels.cpu as cpu

        named["columns"] = cpu.conv2d_forward(**{p: named[p] for p in api.BY_NAME[
            "conv2d_forward"].arguments})[1]
    return {p: named[p] for p in api.BY_NAME[name].arguments}


def _bad_scalars(name: str, arg: str) -> list:
    family = (CONV_BAD_SCALARS if name.startswith("conv2d") else
              POOL_BAD_SCALARS if "pool2d" in name else {})
    return family.get(arg, BAD_SCALARS.get(arg, []))


# ---- optimizer kernels (kernels/cpu/sgd.py, adam.py). Their array arguments are lists, one
# array per parameter: the test swaps the first entry for each of _bad_arrays' variants;
# list-level mistakes (lengths) are refused in tests/test_kernels_optim.py.
_NOT_A_LIST = [None, 1.0, np.zeros(3)]
_REAL = ["0.1", None, True, 1j, float("nan"), float("inf")]
_FLAG = [None, "True", 1]
BAD_SCALARS |= {
    **dict.fromkeys(["params", "grads", "momentum_buffers", "exp_avgs", "exp_avg_sqs"],
                    _NOT_A_LIST),
    "max_exp_avg_sqs": [1.0, np.zeros(3)],
    "state_steps": [None, [1.0], [0.0, 1.0, 1.0], [float("nan")] * 3, ["1"] * 3],
    **dict.fromkeys(["lr", "momentum", "dampening", "weight_decay"], _REAL),
    **dict.fromkeys(["beta1", "beta2"], [*_REAL, 1.0, -0.1]),
    **dict.fromkeys(["nesterov", "maximize", "decoupled_weight_decay"], _FLAG),
    "amsgrad": [*_FLAG, False],  # False with max_exp_avg_sqs given
}


def _optimizer_arguments(name: str, dtype, shape) -> dict:
    """A 2-D, a 1-D and a 0-d parameter; with LARGE_SHAPE the 2-D one takes the parallel path."""
    n, c, s = shape
    rng = np.random.default_rng(0)

    def arrays():
        return [rng.standard_normal(size).astype(dtype) for size in ((n, c * s), (c,), ())]

    if name == "sgd_step":
        return dict(params=arrays(), grads=arrays(), momentum_buffers=arrays(), lr=0.1,
                    momentum=0.9, dampening=0.1, weight_decay=0.01, nesterov=False,
                    maximize=False)
    return dict(params=arrays(), grads=arrays(), exp_avgs=arrays(),
                exp_avg_sqs=[np.abs(a, out=a) for a in arrays()],
                max_exp_avg_sqs=[np.abs(a, out=a) for a in arrays()],
                state_steps=[1.0, 2.0, 3.0], lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.01, amsgrad=True, maximize=False, decoupled_weight_decay=True)
# ---- end of the optimizer kernels' block


# ---- the loss and activation kernels (kernels/cpu/{log_softmax,cross_entropy,relu,sigmoid,
# tanh}.py): x is (N·S, C) class scores or a flat N·C·S vector; target int64 class indices
LOSS_AND_ACTIVATION = {k.name for k in api.KERNELS if k.layout == "flat"
                       or k.name.startswith(("log_softmax", "cross_entropy"))}


def _loss_and_activation_arguments(name: str, dtype, shape) -> dict:
    import kernels.cpu as cpu

    n, c, s = shape
    rng = np.random.default_rng(0)
    flat = api.BY_NAME[name].layout == "flat"
    x_shape = (n * c * s,) if flat else (n * s, c)
    x, dy = (rng.standard_normal(x_shape).astype(dtype) for _ in range(2))
    target = rng.integers(0, c, n * s)
    target[0] = -100
    named = dict(x=x, dy=dy, y=cpu.log_softmax_forward(x) if not flat else np.tanh(x),
                 target=target, weight=rng.uniform(0.5, 1.5, c).astype(dtype),
                 ignore_index=-100, label_smoothing=0.1, reduction="none")
    if not flat:
        named["lse"] = cpu.cross_entropy_forward(*(named[p] for p in api.BY_NAME[
            "cross_entropy_forward"].arguments))[1]
        named["dloss"] = rng.standard_normal(n * s).astype(dtype)
    return {p: named[p] for p in api.BY_NAME[name].arguments}
# ---- end of the loss and activation kernels


def _valid_arguments(backend: str, name: str, dtype, shape=SHAPE) -> dict:
    """Arguments that the kernel accepts, as the forward kernels would produce them; the
    BatchNorm split kernels (SyncBatchNorm's passes) take BatchNorm's inputs and the float64
    statistics and sums of the passes before them."""
    if name in LOSS_AND_ACTIVATION:
        return _loss_and_activation_arguments(name, dtype, shape)
    if name.startswith("conv2d"):
        return _conv2d_arguments(name, dtype, shape)
    if "pool2d" in name:
        return _pool_arguments(backend, name, dtype, shape)
    if api.BY_NAME[name].layout == "lists":
        return _optimizer_arguments(name, dtype, shape)
    case = CASE_OF.get(name, BY_NAME["BatchNorm"])
    n, c, s = shape
    inputs = on_device(backend, case.inputs((n, c) if case.layout == "rows" else shape, dtype,
                                            num_groups=GROUPS))
    named = {**inputs, "param_grads": True}
    if name == case.backward:
        named.update(case.run_forward(kernels_for(backend), inputs))
    if name not in CASE_OF:
        import kernels.cpu as cpu

        mean, var = cpu.batch_norm_statistics(inputs["x"])
        sum_dy, sum_dy_xmu = cpu.batch_norm_gradient_sums(inputs["dy"], inputs["x"], mean)
        named |= dict(mean=mean, inv_std=1.0 / np.sqrt(var + 1e-5), sum_dy=sum_dy,
                      sum_dy_xmu=sum_dy_xmu, count=n * s)
    return {p: named[p] for p in api.BY_NAME[name].arguments}


def _array_module(array):
    return np if isinstance(array, np.ndarray) else importlib.import_module("cupy")


def _bad_arrays(name: str, array, kernel: str) -> dict:
    """Variants of `array` that no kernel may accept in its place."""
    xp = _array_module(array)
    other_float = np.float64 if array.dtype == np.float32 else np.float32
    bad = {
        "list": array.tolist(),
        "float16": array.astype(np.float16),
        "int64": array.astype(np.int64),
        "bool": array > 0,
        "complex": array.astype(np.complex64),
        "other float dtype": array.astype(other_float),
        "extra dimension": array[..., None],
        "0-d": xp.array(1.0, array.dtype),
        "strided": xp.repeat(array, 2, axis=-1)[..., ::2],
        "negative strides": array[::-1].copy()[::-1],
        "zero strides": xp.broadcast_to(array.reshape(-1)[:1].reshape((1,) * array.ndim),
                                        array.shape),
    }
    if array.ndim >= 2:
        bad["fortran order"] = xp.asfortranarray(array)
    if name not in OPTIONAL:
        bad["None"] = None
    if array.dtype == np.int64:  # pooling indices, class targets: int64 is their dtype
        del bad["int64"]
    if name != "x" and (kernel, name) not in FREE_SIZE:
        # more rows of x is a different valid input; every other size is fixed
        bad["one too many"] = xp.concatenate([array, array[:1]])
        bad["one too few"] = array[:-1].copy()
    if xp is not np:  # on a GPU, a host array is refused too
        bad["host array"] = array.get()
    return bad


class _Spy:
    """Records each call (CPU dispatcher) or launch (kernel[config](...)) of a kernel."""

    def __init__(self, name: str, kernel, calls: list) -> None:
        self.name, self.kernel, self.calls = name, kernel, calls

    def __call__(self, *args):
        self.calls.append((self.name, args))
        return self.kernel(*args)

    def __getitem__(self, config):
        launch = self.kernel[config]

        def record(*args):
            self.calls.append((self.name, args))
            return launch(*args)
        return record


def _is_device_function(obj) -> bool:
    """A numba.cuda device function (called from inside kernels, never launched)."""
    return bool(getattr(obj, "_device", False)
                or getattr(obj, "targetoptions", {}).get("device", False))


def _compiled_kernels(module) -> dict:
    """The kernels that Python code in `module` calls or launches."""
    return {name: obj for name, obj in vars(module).items()
            if hasattr(obj, "py_func") and not _is_device_function(obj)}


def _kernel_factories(module) -> dict:
    """Functions that build a kernel per row-length bucket (kernels/cuda/layer_norm.py)."""
    return {name: obj for name, obj in vars(module).items()
            if name.endswith("_kernel") and callable(obj) and not hasattr(obj, "py_func")}


def _spied_factory(name: str, factory, calls: list):
    def build(*args):
        return _Spy(name, factory(*args), calls)
    return build


@pytest.fixture(scope="module")
def compiled(request):
    """Every kernel run once per dtype and path before any spy is installed: a jitted caller
    compiled while its callee is replaced by the spy would fail to type."""
    done = set()

    def compile_backend(backend: str) -> None:
        if backend in done:
            return
        shapes = (SHAPE, LARGE_SHAPE) if backend == "cpu" else (SHAPE,)
        for name in api.names(backend):
            for dtype in (np.float32, np.float64):
                for shape in shapes:
                    getattr(kernels_for(backend), name)(**_valid_arguments(backend, name, dtype,
                                                                           shape))
        done.add(backend)
    return compile_backend


@pytest.fixture
def spy(monkeypatch, compiled):
    """spy(backend) wraps every compiled kernel of that backend's modules; returns the calls."""
    def install(backend: str) -> list:
        compiled(backend)
        calls: list = []
        for module_name in KERNEL_MODULES[backend]:
            module = importlib.import_module(f"kernels.{backend}.{module_name}")
            for name, kernel in _compiled_kernels(module).items():
                monkeypatch.setattr(module, name, _Spy(f"{module_name}.{name}", kernel, calls))
            for name, factory in _kernel_factories(module).items():
                monkeypatch.setattr(module, name, _spied_factory(f"{module_name}.{name}",
                                                                 factory, calls))
        return calls
    return install


@pytest.mark.parametrize(("name", "backend"), KERNEL_BACKENDS)
def test_bad_argument_is_refused_before_any_kernel_runs(spy, backend, name):
    calls = spy(backend)
    kernel = getattr(kernels_for(backend), name)
    problems, tried = [], 0
    for dtype in (np.float32, np.float64):
        valid = _valid_arguments(backend, name, dtype)
        for arg, value in valid.items():
            if hasattr(value, "shape"):
                variants = _bad_arrays(arg, value, name)
                if arg != "indices" and sum(hasattr(v, "shape") and v.dtype.kind == "f"
                                            for v in valid.values()) == 1:
                    del variants["other float dtype"]  # x (or dy) alone: either float is valid
            elif isinstance(value, list) and hasattr(value[0], "shape"):  # one per parameter
                variants = {f"[{what}, ...]": [bad, *value[1:]]
                            for what, bad in _bad_arrays(arg, value[0], name).items()}
                variants |= {repr(v): v for v in BAD_SCALARS.get(arg, [])}
            else:
                variants = {repr(v): v for v in _bad_scalars(name, arg)}
            for what, bad in variants.items():
                tried += 1
                calls.clear()
                where = f"{np.dtype(dtype).name} {arg}={what}"
                try:
                    kernel(**(valid | {arg: bad}))
                except (TypeError, ValueError) as error:
                    if arg not in str(error):
                        problems.append(f"{where}: the error does not name {arg!r}: {error}")
                else:
                    problems.append(f"{where}: accepted")
                if calls:
                    problems.append(f"{where}: {calls[0][0]} ran before the refusal")
    assert tried > 20
    assert not problems, "\n".join(problems[:20])


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) or hasattr(value, "__cuda_array_interface__")


def _is_contiguous(array) -> bool:
    from kernels.validation import _interface_contiguous

    return _interface_contiguous(array)


@pytest.mark.parametrize(("name", "backend"), KERNEL_BACKENDS)
def test_kernels_only_ever_receive_contiguous_arrays_of_one_dtype(spy, backend, name):
    calls = spy(backend)
    shapes = (SHAPE, LARGE_SHAPE) if backend == "cpu" else (SHAPE,)
    kernel_names = api.BY_NAME[name].arguments + api.BY_NAME[name].returns
    index_dtype = (np.dtype(np.int64),) if "indices" in kernel_names else ()
    for dtype in (np.float32, np.float64):
        for shape in shapes:
            arguments = _valid_arguments(backend, name, dtype, shape)
            calls.clear()  # the forward run that produced the statistics
            getattr(kernels_for(backend), name)(**arguments)
            assert calls, f"no kernel ran for {shape}"
            for kernel, args in calls:
                for i, value in enumerate(args):
                    if _is_array(value):
                        assert _is_contiguous(value), f"{kernel} argument {i} is not contiguous"
                        # int64: max pooling's indices and cross_entropy's class targets
                        int64 = kernel.startswith("cross_entropy.") and value.dtype == np.int64
                        assert np.dtype(value.dtype) in (np.dtype(dtype), np.float64,
                                                         *index_dtype) or int64, (
                            f"{kernel} argument {i} has dtype {value.dtype}")


def test_weight_and_bias_none_mean_no_affine():
    import kernels.cpu as cpu

    x = np.random.default_rng(1).standard_normal((3, 4, 5)).astype(np.float32)
    y = cpu.group_norm_forward(x, 2, None, None, 1e-5)[0]
    ones = np.ones(4, np.float32)
    np.testing.assert_allclose(y, cpu.group_norm_forward(x, 2, ones, ones * 0, 1e-5)[0],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exported_kernels_are_validating_wrappers(backend):
    module = kernels_for(backend)
    exported = {name for name in dir(module) if not name.startswith("_")
                and callable(getattr(module, name))
                and getattr(getattr(module, name), "__module__", "").startswith(
                    f"{module.__name__}.")}
    assert exported == set(api.names(backend))
    for name in api.names(backend):
        assert not hasattr(getattr(module, name), "py_func"), (
            f"{name} is a raw compiled kernel: it must be a validating Python wrapper")
