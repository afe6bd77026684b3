"""NumPy's OpenBLAS products on Numba's OpenMP threads (kernels/cpu/blas_pool.py)."""

import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import kernels
import kernels.cpu  # noqa: F401  (installs the callback)
from kernels import openblas
from kernels.cpu import blas_pool

pytestmark = pytest.mark.skipif(not openblas.HAS_THREADS_CALLBACK,
                                reason="NumPy's OpenBLAS has no threads callback (< 0.3.28)")
ENV = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS")}


def _run(code: str, **extra: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], env=dict(ENV, **extra),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_installed_where_its_conditions_hold():
    expected = (numba.threading_layer() == "omp"
                and 1 < openblas.num_threads() <= numba.config.NUMBA_NUM_THREADS)
    assert blas_pool.INSTALLED == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 7, 3), (257, 131, 67), (2048, 288, 64), (128, 784, 512)])
def test_products_match_float64_and_openblas_own_threads(dtype, shape):
    m, k, n = shape
    rng = np.random.default_rng(m)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((n, k)).astype(dtype).T  # a transposed view, as Linear passes
    ours = a @ b
    openblas.set_threads_callback(None)
    try:
        own = a @ b
    finally:
        if blas_pool.INSTALLED:
            openblas.set_threads_callback(blas_pool._callback.address)
    reference = a.astype(np.float64) @ b.astype(np.float64)
    tolerance = (1e-4 if dtype == np.float32 else 1e-12) * np.sqrt(k)
    np.testing.assert_allclose(ours, reference, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(ours, own, rtol=tolerance, atol=tolerance)


_PRODUCT = ("import numpy as np, kernels.cpu\n"
            "a = np.ones((1024, 512), np.float32)\n"
            "assert ((a @ a.T) == 512).all()\n")


def test_a_lowered_numba_thread_count_does_not_hang_a_product():
    """The jobs of one product wait for each other: with one Numba thread they would wait
    forever unless the callback gives each job a thread."""
    code = _PRODUCT + "import numba; numba.set_num_threads(1)\n" + _PRODUCT.split("\n", 1)[1]
    code += "print(numba.get_num_threads())\n"
    assert _run(code).split() == ["1"]


def test_a_forked_child_runs_products():
    """A forked child has no OpenMP threads: the callback is removed there."""
    code = _PRODUCT + (
        "import os\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    from kernels.cpu import blas_pool\n"
        "    assert ((a @ a.T) == 512).all() and not blas_pool.INSTALLED\n"
        "    os._exit(0)\n"
        "print(os.waitpid(pid, 0)[1])\n")
    assert _run(code).split() == ["0"]


def test_one_pool_leaves_the_wait_policy_to_libgomp():
    code = ("import os, kernels\n"
            "print(kernels.ONE_THREAD_POOL, os.environ.get('OMP_WAIT_POLICY'))\n")
    assert _run(code).split() == ["True", "None"] or not blas_pool.INSTALLED
    assert _run(code, OPENBLAS_NUM_THREADS="1").split() == ["False", "passive"]
    assert kernels.THREAD_DEFAULTS["NUMBA_THREADING_LAYER"] == "threadsafe"
