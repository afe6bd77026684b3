"""Numba CPU kernels for BatchNorm, LayerNorm, GroupNorm/InstanceNorm and RMSNorm.

Same names and signatures as `kernels.reference` and `kernels.cuda`. Kernels are
compiled lazily on first use for the dtype they see and cached on disk
(`cache=True`); when the package directory is read-only Numba stores the cache
in its user-wide directory (NUMBA_CACHE_DIR or ~/.cache), so import never fails.
"""

import numba

import kernels  # noqa: F401  (sets the OpenMP wait policy and threading layer first)
from kernels.cpu.batch_norm import (
    batch_norm_backward,
    batch_norm_backward_eval,
    batch_norm_forward_eval,
    batch_norm_forward_train,
)
from kernels.cpu.group_norm import group_norm_backward, group_norm_forward
from kernels.cpu.layer_norm import layer_norm_backward, layer_norm_forward
from kernels.cpu.rms_norm import rms_norm_backward, rms_norm_forward

# Numba reads NUMBA_THREADING_LAYER when it is imported; if it was imported before
# `kernels`, pin the layer here (before any parallel launch) unless the user chose one.
if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "threadsafe"

__all__ = [
    "batch_norm_backward",
    "batch_norm_backward_eval",
    "batch_norm_forward_eval",
    "batch_norm_forward_train",
    "group_norm_backward",
    "group_norm_forward",
    "layer_norm_backward",
    "layer_norm_forward",
    "rms_norm_backward",
    "rms_norm_forward",
]
