"""RMSNorm over the last dimension of x (rows, cols) on the GPU, forward and backward.

RMSNorm is LayerNorm's row kernel without the shift, centre and bias (mean=None in
kernels.cuda.layer_norm), so the two share one launch path:

Forward, per row: r = 1/sqrt(mean(x^2) + eps), y = x·r·weight
    (a warp per row with the row in registers, or a block per row for long rows).
    traffic: read x, write y = 2·E·s (one launch).
Backward, per row, xhat = x·r, g = dy·weight:
    dx = r·(g - xhat·mean(g·xhat)) = r·g - x·r^3·sum(g·x)/n
    dweight = sum over rows of dy·xhat (per-worker partial rows, then `column_sums`).
    traffic: read dy and x, write dx = 3·E·s (two launches).
"""

from __future__ import annotations

import numpy as np

from kernels.cuda import helpers
from kernels.cuda.layer_norm import launch_backward, launch_forward


def rms_norm_forward(x, weight, eps: float):
    """y = x/sqrt(mean(x^2) + eps)·weight per row of x (rows, cols), on the GPU.

    Returns (y, inv_rms); inv_rms has shape (rows,) and x's dtype.
    """
    helpers.check_array("x", x, 2)
    rows, cols = x.shape
    helpers.check_vector("weight", weight, cols, np.dtype(x.dtype),
                         "normalized_shape = x.shape[1:]")
    eps = helpers.check_eps(eps)
    y = helpers.empty(x, (rows, cols))
    if cols == 0 or rows == 0:
        return y, helpers.full(x, (rows,), np.nan)
    inv_rms = helpers.empty(x, (rows,))
    launch_forward(x, weight, None, eps, y, None, inv_rms)
    return y, inv_rms


def rms_norm_backward(dy, x, inv_rms, weight, param_grads: bool = True):
    """dx = r·(g - xhat·mean(g·xhat)), xhat = x·r, g = dy·weight, per row;
    dweight = sum over rows of dy·xhat.

    Returns (dx, dweight); dweight has shape (cols,), or is None when param_grads is False.
    """
    helpers.check_array("x", x, 2)
    rows, cols = x.shape
    dtype = np.dtype(x.dtype)
    helpers.check_like("dy", dy, x, "x")
    helpers.check_vector("inv_rms", inv_rms, rows, dtype, "one per row of x", optional=False)
    helpers.check_vector("weight", weight, cols, dtype, "normalized_shape = x.shape[1:]")
    dx = helpers.empty(x, (rows, cols))
    if rows == 0 or cols == 0:
        dweight = helpers.full(x, (cols,), 0.0)
    else:
        dweight = helpers.empty(x, (cols,))
        launch_backward(dy, x, None, inv_rms, weight, dx, dweight, None)
    return (dx, dweight) if param_grads else (dx, None)
