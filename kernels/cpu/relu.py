"""ReLU backward in one pass: dx = 0 where y <= 0, else dy (PyTorch's threshold_backward:
a NaN input passes its gradient, a NaN gradient at a negative input gives 0).

NumPy's dy·(y > 0) reads y, writes a bool temporary, reads both and dy, and writes dx; this
reads dy and y and writes dx. The forward, np.maximum(x, 0), is one pass already.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu import elementwise
from kernels.cpu.stats import chunk_bounds, jit, parallel_jit


@jit
def _backward_span(dy, y, dx):
    zero = y.dtype.type(0)
    for i in range(y.size):
        dx[i] = zero if y[i] <= zero else dy[i]


@parallel_jit
def _backward_parallel(dy, y, dx, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(y.size, num_chunks, chunk)
        _backward_span(dy[start:stop], y[start:stop], dx[start:stop])


def relu_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = dy where y > 0 (or y is NaN), else 0; y = relu(x), flat arrays."""
    elementwise.check_flat("y", y, dy=dy)
    return elementwise.run(_backward_span, _backward_parallel, dy, y)
