"""tanh backward from the saved output in one pass: dx = dy·(1 - y^2) (NumPy: three passes,
two temporaries). The forward stays np.tanh, whose SIMD tanh beats a scalar loop."""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu import elementwise
from kernels.cpu.stats import chunk_bounds, jit, parallel_jit


@jit
def _backward_span(dy, y, dx):
    one = y.dtype.type(1)
    for i in range(y.size):
        dx[i] = dy[i] * (one - y[i] * y[i])


@parallel_jit
def _backward_parallel(dy, y, dx, num_chunks):
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(y.size, num_chunks, chunk)
        _backward_span(dy[start:stop], y[start:stop], dx[start:stop])


def tanh_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = dy·(1 - y^2), y = tanh(x), flat arrays."""
    elementwise.check_flat("y", y, dy=dy)
    return elementwise.run(_backward_span, _backward_parallel, dy, y)
