"""kernels/api.py is the one declared kernel interface: every backend defines exactly its
functions, with exactly its argument names in its order, and returns what it declares."""

import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from backends import BACKENDS, kernels_for, on_device

from kernels import api, reference
from kernels.cases import CASES


def _public_functions(module) -> set:
    return {name for name, value in vars(module).items()
            if inspect.isfunction(value) and not name.startswith("_")}


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_backend_defines_exactly_the_declared_functions_and_arguments(backend):
    module = reference if backend == "reference" else kernels_for(backend)
    if backend == "reference":  # the spec has every kernel of every backend
        assert set(api.NAMES) <= _public_functions(module)
    else:
        assert list(module.__all__) == list(api.names(backend))
    for kernel in (k for k in api.KERNELS if backend in k.backends):
        parameters = list(inspect.signature(getattr(module, kernel.name)).parameters)
        assert parameters == list(kernel.arguments), f"{backend}.{kernel.name}"
        assert set(kernel.arguments) <= set(api.ROLES) and set(kernel.returns) <= set(api.ROLES)


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_every_case_returns_what_the_table_declares(backend):
    module = reference if backend == "reference" else kernels_for(backend)
    for case in CASES:
        if backend not in case.backends:
            continue
        shape = (2, 8) if case.layout == "rows" else (2, 4, 3)
        inputs = case.inputs(shape)
        if backend != "reference":
            inputs = on_device(backend, inputs)
        forward, backward = case.run(module, inputs)
        assert len(forward) == len(api.BY_NAME[case.forward].returns), case.name
        assert len(backward) == len(api.BY_NAME[case.backward].returns), case.name
        expected_dtype = np.float64 if backend == "reference" else np.float32  # x's dtype
        for value in forward + backward:
            assert value is not None and np.dtype(value.dtype) == expected_dtype, case.name


def _kernel_files(backend: str) -> list:
    """The module names of kernels/<backend>/, longest first (batch_renorm before batch_norm)."""
    folder = Path(api.__file__).parent / backend
    return sorted((f.stem for f in folder.glob("*.py")), key=len, reverse=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_kernel_lives_in_the_file_its_name_says(backend):
    """layer_norm_* in <backend>/layer_norm.py, and so on: api.py's map for a newcomer."""
    module = kernels_for(backend)
    for kernel in (k for k in api.KERNELS if backend in k.backends):
        defined_in = getattr(module, kernel.name).__module__
        file = next(f for f in _kernel_files(backend) if kernel.name.startswith(f))
        assert defined_in == f"{module.__name__}.{file}", defined_in


def test_importing_kernels_cuda_loads_no_cpu_kernel_module():
    code = ("import sys, kernels.cuda; "
            "print(sorted(m for m in sys.modules if m.startswith('kernels.cpu')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"NUMBA_ENABLE_CUDASIM": "1", "PATH": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
