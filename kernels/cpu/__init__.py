"""Numba CPU kernels for BatchNorm, Batch Renormalization, LayerNorm, GroupNorm/InstanceNorm,
RMSNorm and LocalResponseNorm, 2-d max and average pooling, conv2d, and the SGD and
Adam/AdamW parameter updates.

The functions that kernels/api.py declares, as `kernels.reference` and `kernels.cuda` do
(Batch Renormalization, LocalResponseNorm, pooling, conv2d and the optimizers are CPU-only).
Kernels are compiled lazily on first use for the dtype they see and cached on disk
(`cache=True`); kernels/numba_cache.py decides where (NUMBA_CACHE_DIR, the package,
~/.cache, else a temp dir: a read-only install never fails) and invalidates a cached
kernel when any source file of its directory changes.
"""

import warnings

import numba

import kernels  # noqa: F401  (sets the OpenMP wait policy and threading layer first)
from kernels import api

# Numba reads NUMBA_THREADING_LAYER when it is imported; if it was imported before
# `kernels`, pin the layer here (before blas_pool launches it) unless the user chose one.
if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "threadsafe"

try:  # installs the cache locators before any @njit; it builds on Numba internals
    from kernels import numba_cache  # noqa: F401
except (ImportError, AttributeError) as err:  # a Numba whose internals moved: its own cache
    warnings.warn(f"kernels: Numba {numba.__version__} lacks what kernels/numba_cache.py "
                  f"extends ({err}); using Numba's own on-disk cache", RuntimeWarning,
                  stacklevel=2)
from kernels.cpu import (
    blas_pool,  # noqa: E402  (NumPy's products on Numba's threads)
    fork_safety,  # noqa: F401, E402  (a forked child runs serially)
)
from kernels.cpu.adam import adam_step
from kernels.cpu.avg_pool2d import avg_pool2d_backward, avg_pool2d_forward
from kernels.cpu.batch_norm import (
    batch_norm_apply,
    batch_norm_backward,
    batch_norm_backward_eval,
    batch_norm_forward_eval,
    batch_norm_forward_train,
    batch_norm_gradient_sums,
    batch_norm_input_gradient,
    batch_norm_statistics,
)
from kernels.cpu.batch_renorm import batch_renorm_backward, batch_renorm_forward_train
from kernels.cpu.conv2d import conv2d_backward, conv2d_forward
from kernels.cpu.cross_entropy import cross_entropy_backward, cross_entropy_forward
from kernels.cpu.group_norm import group_norm_backward, group_norm_forward
from kernels.cpu.layer_norm import layer_norm_backward, layer_norm_forward
from kernels.cpu.local_response_norm import (
    local_response_norm_backward,
    local_response_norm_forward,
)
from kernels.cpu.log_softmax import log_softmax_backward, log_softmax_forward
from kernels.cpu.max_pool2d import max_pool2d_backward, max_pool2d_forward
from kernels.cpu.relu import relu_backward, relu_forward
from kernels.cpu.rms_norm import rms_norm_backward, rms_norm_forward
from kernels.cpu.sgd import sgd_step
from kernels.cpu.sigmoid import sigmoid_backward, sigmoid_forward
from kernels.cpu.tanh import tanh_backward

blas_pool.install()

__all__ = list(api.names("cpu"))
