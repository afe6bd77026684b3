"""What only the CPU backend has: its output-buffer pool, its thread setup (OpenMP) and the
heap settings (glibc's trim and mmap thresholds).
(The kernels themselves are tested on every backend in test_kernels.py; their small-call
latency is measured by `python -m kernels.bench --latency`, not asserted here.)"""

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import kernels.cpu as cpu


def test_openmp_loaded_before_the_kernels_is_reported():
    """libgomp reads OMP_WAIT_POLICY when loaded; importing torch first makes our default
    too late, which cost 8 ms per parallel call here under load: say so. (Passive is our
    default where OpenBLAS keeps threads of its own; one OpenBLAS thread makes it so.)"""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["OPENBLAS_NUM_THREADS"] = "1"
    code = "import torch, warnings; warnings.simplefilter('error'); import kernels"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True)
    assert result.returncode != 0 and "OMP_WAIT_POLICY=passive" in result.stderr
    env["OMP_WAIT_POLICY"] = "passive"
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


_HEAP_AFTER_FREEING = """
import ctypes, numpy as np, kernels
class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
arrays = [np.ones(65536, np.float32) for _ in range(50)]  # 256 KiB each: in the heap, 12.5 MiB
del arrays
print(kernels.HEAP_THRESHOLDS_SET, libc.mallinfo2().keepcost)  # keepcost: the free heap top
"""


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc >= 2.33 only")
def test_import_keeps_freed_heap_memory_for_the_next_step():
    """glibc gives a free heap top back to the kernel above its trim threshold (128 KiB by
    default), and the next step faults those pages in again; `import kernels` raises it, and
    the mmap threshold with it (256 KiB arrays come from the heap, not a mapping each), and an
    environment that sets MALLOC_TRIM_THRESHOLD_ wins."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")}
    raised, kept = subprocess.run([sys.executable, "-c", _HEAP_AFTER_FREEING], env=env,
                                  capture_output=True, text=True, check=True).stdout.split()
    assert raised == "True" and int(kept) >= 12 << 20
    env["MALLOC_TRIM_THRESHOLD_"] = str(128 << 10)  # glibc's default, set by the user
    raised, kept = subprocess.run([sys.executable, "-c", _HEAP_AFTER_FREEING], env=env,
                                  capture_output=True, text=True, check=True).stdout.split()
    assert raised == "False" and int(kept) < 1 << 20


def test_output_buffers_are_reused_only_after_every_reference_is_gone():
    from kernels.cpu import buffers

    x = np.zeros((512, 1024), np.float32)  # 2 MB: pooled
    first = buffers.empty_like(x)
    first_address = first.__array_interface__["data"][0]
    assert buffers.empty_like(x) is not first  # still referenced: never handed out twice
    view = first[::2]
    del first
    held = buffers.empty_like(x)
    assert not np.shares_memory(held, view)  # a view keeps its base busy
    del view, held
    again = buffers.empty_like(x)
    assert again.__array_interface__["data"][0] == first_address  # released: recycled
    assert buffers.empty_like(np.zeros(10)).base is None  # small arrays are not pooled
    assert buffers._pool_bytes <= buffers.MAX_POOL_BYTES


def test_kernel_outputs_held_by_the_caller_are_never_overwritten():
    x = np.random.default_rng(0).standard_normal((300, 1024)).astype(np.float32)  # pooled
    y1 = cpu.layer_norm_forward(x, None, None, 1e-5)[0]
    expected = y1.copy()
    for _ in range(3):
        cpu.layer_norm_forward(-x, None, None, 1e-5)
    np.testing.assert_array_equal(y1, expected)


def test_user_environment_is_the_environment_before_our_defaults():
    """What a benchmark hands another framework's process: our defaults taken out, a value
    the user set kept (even when it equals our default)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER")}
    env["NUMBA_THREADING_LAYER"] = "threadsafe"  # the user's, equal to our default
    env["OPENBLAS_NUM_THREADS"] = "1"  # no OpenBLAS pool of its own: passive is our default
    code = ("import os, kernels\n"
            "user = kernels.user_environment()\n"
            "print(os.environ['OMP_WAIT_POLICY'], 'OMP_WAIT_POLICY' in user,\n"
            "      user['NUMBA_THREADING_LAYER'])\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True)
    assert result.stdout.split() == ["passive", "False", "threadsafe"]


def test_one_pass_statistics_keep_float64_precision_far_from_zero_and_with_an_outlier_shift():
    """shifted_moments takes var = mean(d^2) - mean(d)^2 of d = x - x[0] in one pass: exact
    enough only because of the shift (unshifted, 1e8 + 1e-3·N(0,1) in float64 cancels every
    digit of the 1e-6 variance), and it loses at most log10(n + 1) digits when the first
    element, the shift, is an outlier."""
    from kernels import reference

    rng = np.random.default_rng(3)
    far = 1e8 + 1e-3 * rng.standard_normal((6, 509))
    outlier = rng.standard_normal((6, 509)).astype(np.float32)
    outlier[:, 0] = 1e4
    # the reference sees far - 1e8 (exact: every value is within a factor 2 of 1e8), which
    # normalizes the same; its own unshifted sums of far would be off by ~1e-4 normalized
    for x, same_normalized, tol in ((far, far - 1e8, 1e-9), (outlier, outlier, 1e-5)):
        y_ref, _, inv_std_ref = reference.layer_norm_forward(
            same_normalized.astype(np.float64), None, None, 0.0)
        y, _, inv_std = cpu.layer_norm_forward(x, None, None, 0.0)
        np.testing.assert_allclose(y, y_ref, rtol=0, atol=tol)
        np.testing.assert_allclose(inv_std, inv_std_ref, rtol=tol)
        y, _, inv_std, _ = cpu.group_norm_forward(x.reshape(6, 1, 509), 1, None, None, 0.0)
        np.testing.assert_allclose(y.reshape(x.shape), y_ref, rtol=0, atol=tol)
        np.testing.assert_allclose(inv_std.ravel(), inv_std_ref, rtol=tol)
