"""Every CUDA kernel compiles to PTX for compute capabilities 8.0 and 9.0.

The simulator checks no types, so this is the test that catches a kernel that runs there
but would not compile for a GPU. compile_ptx needs the real numba.cuda, so it runs in a
subprocess with the simulator off (this session may have it on), and needs NVVM, which
numba-cuda[cu13] installs; no GPU is needed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                    reason='needs NVVM from numba-cuda: pip install "numba-cuda[cu13]"')
def test_every_kernel_compiles_to_ptx_for_sm80_and_sm90():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-m", "kernels.cuda.ptx_check"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
