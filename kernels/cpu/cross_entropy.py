"""cross_entropy of scores x (rows, classes) and int64 class indices, forward and backward fused.

PyTorch's F.cross_entropy for class-index targets, with class weights w (1 when None), W =
sum(w), ignore_index and label smoothing eps. Per row i with target t and lse = log-sum-exp:
    loss_i = (1 - eps)·w_t·(lse - x_t) + eps/C·sum_c w_c·(lse - x_c), 0 for an ignored row;
    with lse = m + log(s) (m the row max) each lse - x_c = log(s) + (m - x_c) is a sum of
    two non-negative float64 terms: nothing cancels, even at |x| ~ 1e4.
    reduction "none": loss (rows,); "sum": sum_i loss_i; "mean": that sum over the weight of
    the targets that are not ignored, sum_i w_t (NaN when every target is ignored, as in
    PyTorch). The forward saves lse (float64) for backward: traffic read x, 1·E·s.
Backward, p = exp(x - lse), g_i = dloss_i ("none"), dloss ("sum") or dloss/sum_i w_t:
    dx_ic = g_i·(p_c·((1 - eps)·w_t + eps·W/C) - (1 - eps)·w_t·[c = t] - eps·w_c/C)
    i.e. (softmax - smoothed one-hot)·scale in one pass: read x, write dx = 2·E·s.
The row sums are float64; the reduction adds the rows in order, so the result does not
depend on the thread count.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.cpu import buffers
from kernels.cpu.log_softmax import exp_in_dtype, log_sum_exp
from kernels.cpu.stats import chunk_bounds, jit, parallel_jit, use_parallel
from kernels.validation import HOST as check

REDUCTIONS = ("none", "mean", "sum")  # the kernels take the index
NONE, MEAN, SUM = range(3)


@jit
def _class_weight(weight, c):
    return 1.0 if weight is None else np.float64(weight[c])


@jit
def _weight_total(weight, classes):
    """W = sum of the class weights (C when there are none)."""
    total = 0.0
    for c in range(classes):
        total += _class_weight(weight, c)
    return total


@jit
def _forward_rows(x, target, weight, ignore_index, smoothing, weight_total, row_loss, lse,
                  start, stop):
    classes = x.shape[1]
    for i in range(start, stop):
        row = x[i]
        peak, log_total = log_sum_exp(row)
        lse[i] = peak + log_total
        t = target[i]
        if t == ignore_index:
            row_loss[i] = 0.0
            continue
        loss = (1.0 - smoothing) * _class_weight(weight, t) * (
            log_total + (peak - np.float64(row[t])))
        if smoothing != 0.0:  # skipped at 0: 0·inf would be NaN for a -inf score
            spread = 0.0
            for c in range(classes):
                spread += _class_weight(weight, c) * (peak - np.float64(row[c]))
            loss += smoothing / classes * (weight_total * log_total + spread)
        row_loss[i] = loss


@jit
def _target_weight(target, weight, ignore_index):
    """sum of w_t over the rows whose target is not ignored (the count, unweighted)."""
    total = 0.0
    for i in range(target.size):
        if target[i] != ignore_index:
            total += _class_weight(weight, target[i])
    return total


@jit
def _reduce(row_loss, target, weight, ignore_index, reduction):
    """The sum of the row losses in row order, over the target weight for "mean"."""
    total = 0.0
    for i in range(row_loss.size):
        total += row_loss[i]
    if reduction == MEAN:
        return total / _target_weight(target, weight, ignore_index)  # 0/0 = NaN
    return total


# Each driver is one compiled call (a small batch pays one dispatch, not three).
@jit
def _forward_serial(x, target, weight, ignore_index, smoothing, reduction, row_loss, lse):
    weight_total = _weight_total(weight, x.shape[1])
    _forward_rows(x, target, weight, ignore_index, smoothing, weight_total, row_loss, lse,
                  0, x.shape[0])
    return _reduce(row_loss, target, weight, ignore_index, reduction)


@parallel_jit
def _forward_parallel(x, target, weight, ignore_index, smoothing, reduction, row_loss, lse,
                      num_chunks):
    weight_total = _weight_total(weight, x.shape[1])
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _forward_rows(x, target, weight, ignore_index, smoothing, weight_total, row_loss, lse,
                      start, stop)
    return _reduce(row_loss, target, weight, ignore_index, reduction)


@jit
def _row_scale(dloss, target, weight, ignore_index, reduction):
    """g for every row when the loss is reduced: dloss, over the target weight for "mean"."""
    if reduction != MEAN:
        return np.float64(dloss)
    return np.float64(dloss) / _target_weight(target, weight, ignore_index)


@jit
def _backward_rows(dloss, scale, x, target, lse, weight, ignore_index, smoothing,
                   weight_total, dx, start, stop):
    classes = x.shape[1]
    for i in range(start, stop):
        row, out = x[i], dx[i]
        t = target[i]
        if t == ignore_index:
            for c in range(classes):
                out[c] = 0.0
            continue
        g = scale if dloss is None else np.float64(dloss[i])
        target_share = (1.0 - smoothing) * _class_weight(weight, t)
        softmax_scale = target_share + smoothing * weight_total / classes
        row_lse = lse[i]
        for c in range(classes):
            grad = exp_in_dtype(x, np.float64(row[c]) - row_lse) * softmax_scale
            if smoothing != 0.0:
                grad -= smoothing * _class_weight(weight, c) / classes
            if c == t:
                grad -= target_share
            out[c] = g * grad


@jit
def _backward_serial(dloss, reduced_dloss, x, target, lse, weight, ignore_index, smoothing,
                     reduction, dx):
    scale = _row_scale(reduced_dloss, target, weight, ignore_index, reduction)
    _backward_rows(dloss, scale, x, target, lse, weight, ignore_index, smoothing,
                   _weight_total(weight, x.shape[1]), dx, 0, x.shape[0])


@parallel_jit
def _backward_parallel(dloss, reduced_dloss, x, target, lse, weight, ignore_index, smoothing,
                       reduction, dx, num_chunks):
    scale = _row_scale(reduced_dloss, target, weight, ignore_index, reduction)
    weight_total = _weight_total(weight, x.shape[1])
    for chunk in numba.prange(num_chunks):
        start, stop = chunk_bounds(x.shape[0], num_chunks, chunk)
        _backward_rows(dloss, scale, x, target, lse, weight, ignore_index, smoothing,
                       weight_total, dx, start, stop)


def _check_reduction(reduction: object) -> int:
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return REDUCTIONS.index(reduction)


def _check_arguments(x, target, weight, ignore_index, label_smoothing) -> tuple[int, float]:
    """Everything both kernels index by: the shapes, dtypes and the target values (a target
    outside [0, C) that is not ignore_index would read past its row)."""
    check.array("x", x, 2)
    rows, classes = x.shape
    if not isinstance(target, np.ndarray):
        raise TypeError(f"target must be a numpy.ndarray of int64 class indices, got "
                        f"{type(target).__name__}")
    if target.dtype != np.int64:
        raise TypeError(f"target must have dtype int64 (class indices), got {target.dtype}")
    if target.shape != (rows,) or not target.flags.c_contiguous:
        raise ValueError(f"target must be a C-contiguous array of shape ({rows},) (one class "
                         f"index per row of x), got shape {target.shape}")
    check.vector("weight", weight, classes, x.dtype, "one weight per class, x.shape[1]")
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index,
                                                                    (int, np.integer)):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(
            label_smoothing, (int, float, np.floating, np.integer)):
        raise TypeError(f"label_smoothing must be a real number, got "
                        f"{type(label_smoothing).__name__}")
    # min/max first: two quick reductions decide the common case, all targets in range
    if rows and (target.min() < 0 or target.max() >= classes):
        bad = target[(target != ignore_index) & ((target < 0) | (target >= classes))]
        if bad.size:
            raise ValueError(f"target {bad[0]} is out of bounds: class indices must be in "
                             f"[0, {classes}) or equal ignore_index ({ignore_index})")
    return int(ignore_index), float(label_smoothing)


def _num_chunks(x: np.ndarray) -> int:
    return min(numba.get_num_threads(), x.shape[0]) if use_parallel(x.size) else 1


def cross_entropy_forward(
    x: np.ndarray, target: np.ndarray, weight: np.ndarray | None, ignore_index: int,
    label_smoothing: float, reduction: str,
) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's cross_entropy of x (rows, classes) and int64 target (rows,), see the module
    docstring. Returns (loss, lse): loss of x's dtype, (rows,) for reduction "none" and 0-d
    otherwise; lse (rows,) float64, the log-sum-exp of each row, for backward."""
    ignore_index, smoothing = _check_arguments(x, target, weight, ignore_index, label_smoothing)
    code = _check_reduction(reduction)
    row_loss, lse = np.empty(x.shape[0]), np.empty(x.shape[0])
    num_chunks = _num_chunks(x)
    if num_chunks > 1:
        total = _forward_parallel(x, target, weight, ignore_index, smoothing, code, row_loss,
                                  lse, num_chunks)
    else:
        total = _forward_serial(x, target, weight, ignore_index, smoothing, code, row_loss, lse)
    if code == NONE:
        return row_loss.astype(x.dtype), lse
    return np.array(total, x.dtype), lse


def cross_entropy_backward(
    dloss: np.ndarray, x: np.ndarray, target: np.ndarray, lse: np.ndarray,
    weight: np.ndarray | None, ignore_index: int, label_smoothing: float, reduction: str,
) -> np.ndarray:
    """dx of cross_entropy_forward: (softmax - smoothed one-hot)·weight·dloss (over the
    target weight for "mean"), 0 on ignored rows; dloss has the loss's shape."""
    ignore_index, smoothing = _check_arguments(x, target, weight, ignore_index, label_smoothing)
    code = _check_reduction(reduction)
    rows = x.shape[0]
    check.array("dloss", dloss, 1 if code == NONE else 0, x.dtype)
    check.shape("dloss", dloss, (rows,) if code == NONE else (), f"reduction={reduction!r}")
    if isinstance(lse, np.ndarray) and lse.dtype != np.float64:
        raise TypeError(f"lse must have dtype float64 (as cross_entropy_forward returns it), "
                        f"got {lse.dtype}")
    check.array("lse", lse, 1)
    check.shape("lse", lse, (rows,), "one per row of x")
    dx = buffers.empty_like(x)
    # "none": a gradient per row; else one for all, scaled in the kernel
    per_row, reduced = (dloss, 0.0) if code == NONE else (None, float(dloss))
    num_chunks = _num_chunks(x)
    if num_chunks > 1:
        _backward_parallel(per_row, reduced, x, target, lse, weight, ignore_index, smoothing,
                           code, dx, num_chunks)
    elif rows:
        _backward_serial(per_row, reduced, x, target, lse, weight, ignore_index, smoothing,
                         code, dx)
    return dx
