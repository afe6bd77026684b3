"""Adam and AdamW (AMSGrad, maximize): one call updates every parameter of a group in place,
by PyTorch's rule (torch.optim.Adam/AdamW, foreach=False), per parameter i at step t_i:

    g = ±grad;  AdamW: p = p·(1 - lr·weight_decay);  Adam: g = g + weight_decay·p
    m = lerp(m, g, 1 - beta1);  v = beta2·v + (1 - beta2)·g·g;  AMSGrad: v_max = max(v_max, v)
    p = p - lr/(1 - beta1^t) · m / (sqrt(v or v_max)/sqrt(1 - beta2^t) + eps)

The bias corrections are computed in float64 per parameter, as PyTorch does in Python; one
pass reads and writes p, m, v (and v_max) and reads grad. One compiled call per parameter,
as in kernels/cpu/sgd.py (which says why).
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu.optimizer_support import exact_jit, exact_parallel_jit, fma, num_chunks
from kernels.cpu.stats import chunk_bounds
from kernels.validation import check_flag, check_parameter_lists, check_real


@exact_jit
def _adam_loop(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, weight, beta2, decay,
               weight_decay, step_size, bias_correction2_sqrt, eps, maximize):
    """decay: AdamW's 1 - lr·weight_decay (1 for Adam); weight_decay: Adam's L2 term (0 for
    AdamW); weight = 1 - beta1, the lerp weight."""
    t = param.dtype.type
    w_t, beta2_t, decay_t, wd_t = t(weight), t(beta2), t(decay), t(weight_decay)
    # PyTorch's lerp: m + w·(g - m) for |w| < 0.5, else g + (w - 1)·(g - m)
    small = abs(w_t) < t(0.5)
    w_minus_one = w_t - t(1.0)
    sq_t, neg_step, bc2_t, eps_t = t(1.0 - beta2), t(-step_size), t(bias_correction2_sqrt), t(eps)
    for j in range(param.size):
        g = -grad[j] if maximize else grad[j]
        p = param[j]
        if decay != 1.0:
            p = p * decay_t
        if weight_decay != 0.0:
            g = fma(wd_t, p, g)
        m = exp_avg[j]
        m = fma(w_t, g - m, m) if small else fma(w_minus_one, g - m, g)
        exp_avg[j] = m
        v = fma(sq_t * g, g, exp_avg_sq[j] * beta2_t)
        exp_avg_sq[j] = v
        if max_exp_avg_sq is not None:
            v_max = max_exp_avg_sq[j]
            if v > v_max or v != v:  # NaN propagates, as torch.maximum
                v_max = v
            max_exp_avg_sq[j] = v_max
            v = v_max
        param[j] = p + neg_step * m / (np.sqrt(v) / bc2_t + eps_t)  # PyTorch's addcdiv order


@exact_jit
def _adam_range(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, weight, beta2, decay,
                weight_decay, step_size, bias_correction2_sqrt, eps, maximize, start, stop):
    """Elements [start, stop), as slices (an index from 0 vectorizes: kernels/cpu/sgd.py)."""
    s = slice(start, stop)
    if max_exp_avg_sq is None:
        _adam_loop(param[s], grad[s], exp_avg[s], exp_avg_sq[s], None, weight, beta2, decay,
                   weight_decay, step_size, bias_correction2_sqrt, eps, maximize)
    else:
        _adam_loop(param[s], grad[s], exp_avg[s], exp_avg_sq[s], max_exp_avg_sq[s], weight,
                   beta2, decay, weight_decay, step_size, bias_correction2_sqrt, eps, maximize)


@exact_parallel_jit
def _adam_parallel(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, weight, beta2, decay,
                   weight_decay, step_size, bias_correction2_sqrt, eps, maximize, chunks):
    for chunk in numba.prange(chunks):
        start, stop = chunk_bounds(param.size, chunks, chunk)
        _adam_range(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, weight, beta2, decay,
                    weight_decay, step_size, bias_correction2_sqrt, eps, maximize, start, stop)


def adam_step(params: list, grads: list, exp_avgs: list, exp_avg_sqs: list,
              max_exp_avg_sqs: list | None, state_steps: list, lr: float, beta1: float,
              beta2: float, eps: float, weight_decay: float, amsgrad: bool, maximize: bool,
              decoupled_weight_decay: bool) -> None:
    """Update params[i], exp_avgs[i], exp_avg_sqs[i] (and max_exp_avg_sqs[i] when amsgrad;
    None otherwise) in place; state_steps[i] is params[i]'s step count, this step included."""
    amsgrad = check_flag("amsgrad", amsgrad)
    buffers = {"exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs}
    if amsgrad:
        buffers["max_exp_avg_sqs"] = max_exp_avg_sqs
    elif max_exp_avg_sqs is not None:
        raise TypeError("max_exp_avg_sqs must be None when amsgrad is False, got "
                        f"{type(max_exp_avg_sqs).__name__}")
    check_parameter_lists(params, grads, buffers)
    lr, eps, weight_decay = (check_real("lr", lr), check_real("eps", eps),
                             check_real("weight_decay", weight_decay))
    beta1 = check_real("beta1", beta1, low=0.0, below=1.0)
    beta2 = check_real("beta2", beta2, low=0.0, below=1.0)
    maximize = check_flag("maximize", maximize)
    decoupled = check_flag("decoupled_weight_decay", decoupled_weight_decay)
    if not isinstance(state_steps, (list, tuple)) or len(state_steps) != len(params):
        raise TypeError(f"state_steps must be a list of one step count per parameter "
                        f"({len(params)}), got {state_steps!r}")
    steps = [check_real(f"state_steps[{i}]", s, low=1.0) for i, s in enumerate(state_steps)]
    decay = 1.0 - lr * weight_decay if decoupled else 1.0
    l2 = 0.0 if decoupled else weight_decay
    for i, (param, step) in enumerate(zip(params, steps)):
        step_size = lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        arrays = [a.reshape(-1) for a in (param, grads[i], exp_avgs[i], exp_avg_sqs[i])]
        arrays.append(max_exp_avg_sqs[i].reshape(-1) if amsgrad else None)
        chunks = num_chunks(param.size)
        scalars = (1.0 - beta1, beta2, decay, l2, step_size, bias_correction2_sqrt, eps,
                   maximize)
        if chunks > 1:
            _adam_parallel(*arrays, *scalars, chunks)
        else:
            _adam_range(*arrays, *scalars, 0, param.size)
