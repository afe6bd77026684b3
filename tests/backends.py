"""The kernel backends the tests run on: "cpu" (kernels.cpu) and "cuda" (kernels.cuda on a GPU
when one is visible, else under numba's CUDA simulator; tests/conftest.py decides before numba
is imported). `BACKENDS` parametrizes a test over both; a backend that cannot run here is
skipped with its reason, never silently dropped.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_norm import device

CUDA_REASON = device._cuda_unavailable_reason()
BACKENDS = [
    pytest.param("cpu"),
    pytest.param("cuda", marks=pytest.mark.skipif(
        CUDA_REASON is not None, reason=f"no CUDA device or simulator: {CUDA_REASON}")),
]


def kernels_for(backend: str):
    if backend == "cpu":
        import kernels.cpu as kernels
    else:
        import kernels.cuda as kernels
    return kernels


def on_device(backend: str, inputs: dict) -> dict:
    """The inputs of a case (kernels/cases.py) as the backend's arrays."""
    if backend == "cpu":
        return inputs
    return {k: device.to_device(v, "cuda") if isinstance(v, np.ndarray) else v
            for k, v in inputs.items()}


def on_host(values):
    """Results (a tuple, or one array) back on the host; None stays None."""
    if isinstance(values, tuple):
        return tuple(on_host(v) for v in values)
    return None if values is None else device.to_host(values)
