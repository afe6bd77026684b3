"""SGD with momentum, dampening, Nesterov, weight decay and maximize: one call updates every
parameter of a group in place, by PyTorch's rule (torch.optim.SGD, foreach=False):

    g = ±grad + weight_decay·p
    buf = g (first step) or momentum·buf + (1 - dampening)·g
    d = g + momentum·buf (nesterov) or buf (momentum) or g;   p = p - lr·d

One pass per parameter reads p, grad (and buf) and writes p (and buf), with no temporary
array. Each parameter is one call of a compiled kernel: a Python loop of calls costs about
1 µs per parameter, where building a numba.typed.List costs about 8 µs per entry
(measured: kernels/README.md), and plain arrays of any dtype and rank need no list type.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu.optimizer_support import exact_jit, exact_parallel_jit, fma, num_chunks
from kernels.cpu.stats import chunk_bounds
from kernels.validation import check_flag, check_parameter_lists, check_real


@exact_jit
def _sgd_loop(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, maximize,
              first):
    t = param.dtype.type
    lr_t, wd_t, momentum_t, keep_t = t(lr), t(weight_decay), t(momentum), t(1.0 - dampening)
    for j in range(param.size):
        g = -grad[j] if maximize else grad[j]
        if weight_decay != 0.0:
            g = fma(wd_t, param[j], g)
        if buf is not None:
            b = g if first else fma(keep_t, g, buf[j] * momentum_t)
            buf[j] = b
            g = fma(momentum_t, b, g) if nesterov else b
        param[j] = fma(-lr_t, g, param[j])


@exact_jit
def _sgd_range(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, maximize,
               first, start, stop):
    """Elements [start, stop), as slices: an index from 0 lets LLVM drop Numba's
    negative-index wraparound and vectorize (2.3x faster than range(start, stop), measured)."""
    p, g = param[start:stop], grad[start:stop]
    if buf is None:
        _sgd_loop(p, g, None, lr, momentum, dampening, weight_decay, nesterov, maximize, first)
    else:
        _sgd_loop(p, g, buf[start:stop], lr, momentum, dampening, weight_decay, nesterov,
                  maximize, first)


@exact_parallel_jit
def _sgd_parallel(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, maximize,
                  first, chunks):
    for chunk in numba.prange(chunks):
        start, stop = chunk_bounds(param.size, chunks, chunk)
        _sgd_range(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, maximize,
                   first, start, stop)


def sgd_step(params: list, grads: list, momentum_buffers: list, lr: float, momentum: float,
             dampening: float, weight_decay: float, nesterov: bool, maximize: bool) -> list:
    """Update params[i] in place from grads[i] (same shape and dtype, float32 or float64).

    momentum_buffers[i] is updated in place; a None entry (the first step) becomes a new
    buffer holding the first step's g. Returns the buffers (unchanged when momentum is 0).
    """
    check_parameter_lists(params, grads, {"momentum_buffers": momentum_buffers},
                          may_be_none=frozenset({"momentum_buffers"}))
    lr, momentum, dampening, weight_decay = (
        check_real("lr", lr), check_real("momentum", momentum),
        check_real("dampening", dampening), check_real("weight_decay", weight_decay))
    nesterov, maximize = check_flag("nesterov", nesterov), check_flag("maximize", maximize)
    buffers = list(momentum_buffers)
    for i, (param, grad) in enumerate(zip(params, grads)):
        buf, first = None, False
        if momentum != 0.0:
            first = buffers[i] is None
            if first:
                buffers[i] = np.empty_like(param)
            buf = buffers[i].reshape(-1)
        flat = param.reshape(-1)
        chunks = num_chunks(flat.size)
        if chunks > 1:
            _sgd_parallel(flat, grad.reshape(-1), buf, lr, momentum, dampening, weight_decay,
                          nesterov, maximize, first, chunks)
        else:
            _sgd_range(flat, grad.reshape(-1), buf, lr, momentum, dampening, weight_decay,
                       nesterov, maximize, first, 0, flat.size)
    return buffers
