"""Session setup shared by every test file: where the CUDA tests run, OpenMP's wait policy.

They run on the GPU when one is visible and under numba's CUDA simulator otherwise. Numba
reads NUMBA_ENABLE_CUDASIM once, when it is first imported, so the choice is made here,
before any test module imports numba; a value already in the environment wins. The
simulator only replaces numba.cuda: the CPU kernels and their tests are unaffected.
"""

import os
import shutil


def _gpu_visible() -> bool:
    return os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi") is not None


os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "0" if _gpu_visible() else "1")
# Test modules import torch, which loads libgomp, before they import tinygrad_norm: the wait
# policy must be in the environment before that (see kernels/__init__.py).
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
