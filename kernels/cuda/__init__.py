"""numba.cuda kernels for BatchNorm, LayerNorm, GroupNorm/InstanceNorm and RMSNorm.

The functions that kernels/api.py declares, as in `kernels.cpu` and `kernels.reference`;
arguments and results are device arrays (CuPy, numba.cuda or anything exposing
`__cuda_array_interface__` with NumPy dtypes; results are of the same kind as x). Under
the CUDA simulator (NUMBA_ENABLE_CUDASIM=1) NumPy arrays stand in for device arrays.
Kernels compile on first use for the dtype they see (float32, float64);
`python -m kernels.cuda.ptx_check` compiles all of them to PTX without a GPU.
Launches: one per forward of LayerNorm, RMSNorm and GroupNorm, two per backward (row
kernel, column sums; GroupNorm three: per-channel sums first); BatchNorm three in training
(partials, a merge by one warp per channel, the streaming pass) and two in eval forward.
`python -m kernels.cuda.ptx_check --resources` checks every kernel's registers, spills and
warp-path loads without a GPU; `python -m kernels.cuda.gpu_check` is the one GPU check.

Numba synchronizes the producer's stream for every `__cuda_array_interface__` argument
of every launch; with CuPy's legacy default stream that is a device-wide wait per array,
which would serialize the host with the GPU. These kernels launch on CuPy's current stream
(helpers.stream_for), so stream order already keeps them after the CuPy work that made
their inputs, as for any CuPy op: the sync is turned off here, as a default only (the
environment variable wins).
"""

import os

import numba

if "NUMBA_CUDA_ARRAY_INTERFACE_SYNC" not in os.environ:
    os.environ["NUMBA_CUDA_ARRAY_INTERFACE_SYNC"] = "0"
    numba.config.reload_config()

from kernels import api  # noqa: E402
from kernels.cuda.batch_norm import (  # noqa: E402  (after the configuration above)
    batch_norm_backward,
    batch_norm_backward_eval,
    batch_norm_forward_eval,
    batch_norm_forward_train,
)
from kernels.cuda.group_norm import group_norm_backward, group_norm_forward  # noqa: E402
from kernels.cuda.layer_norm import layer_norm_backward, layer_norm_forward  # noqa: E402
from kernels.cuda.rms_norm import rms_norm_backward, rms_norm_forward  # noqa: E402

__all__ = list(api.names("cuda"))
