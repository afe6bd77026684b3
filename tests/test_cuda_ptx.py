"""Every launched CUDA kernel variant compiles for compute capabilities 8.0 and 9.0 and
stays within its resource budget: `python -m kernels.cuda.ptx_check --resources`.

The simulator checks no types, so this is the test that catches a kernel that runs there
but would not compile for a GPU, and the CI gate on registers, spills and warp-path loads
in flight. compile_ptx needs the real numba.cuda, so it runs in a subprocess with the
simulator off (this session may have it on), and needs NVVM and nvJitLink, which
numba-cuda[cu13] installs; no GPU is needed. The table is cached in
kernels/cuda/ptx_resources.json while the kernel sources and compilers are unchanged
(a changed kernel recompiles all of them: minutes on 2 cores).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                    reason='needs NVVM from numba-cuda: pip install "numba-cuda[cu13]"')
def test_every_kernel_compiles_within_its_resource_budget():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-m", "kernels.cuda.ptx_check", "--resources"],
                            env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    table = result.stdout
    for kernel in ("forward_warp_rows[2] rms_norm no weight", "backward_warp_rows[8] layer_norm",
                   "forward_block_rows[4] layer_norm", "backward_block_rows[8] rms_norm",
                   "forward_long_rows group_norm", "backward_long_rows layer_norm",
                   "column_sums (one)", "group_norm.channel_sums", "batch_norm.merge_moments"):
        assert kernel in table
    assert "OVER BUDGET" not in table
    assert "nvdisasm not found" not in result.stderr  # the SASS load check ran
