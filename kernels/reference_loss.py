"""Float64 NumPy reference of log_softmax and cross_entropy forward and backward: the spec.

Written from PyTorch's definitions (F.log_softmax; F.cross_entropy for class-index targets
as nll_loss of log_softmax plus label smoothing), not from the kernels' fused formulas.
kernels/reference.py re-exports these. x is (rows, classes); results are float64.
"""

from __future__ import annotations

import numpy as np


def _shifted_log_sum_exp(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x - m, log(sum(exp(x - m)))) per row of float64 x, m = the row max: a row holding
    NaN or +inf, or only -inf, is NaN (inf - inf), as in PyTorch."""
    if x.shape[1] == 0:
        return x.copy(), np.full((x.shape[0], 1), -np.inf)
    with np.errstate(invalid="ignore"):
        shifted = x - x.max(axis=1, keepdims=True)
        return shifted, np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def log_softmax_forward(x: np.ndarray) -> np.ndarray:
    """y = x - m - log(sum(exp(x - m))) per row, m = the row max."""
    shifted, log_total = _shifted_log_sum_exp(np.asarray(x, np.float64))
    return shifted - log_total


def log_softmax_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = dy - softmax·sum(dy) per row, softmax = exp(y)."""
    dy, y = np.asarray(dy, np.float64), np.asarray(y, np.float64)
    return dy - np.exp(y) * dy.sum(axis=1, keepdims=True)


def _target_terms(target: np.ndarray, weight: np.ndarray | None, ignore_index: int,
                  classes: int) -> tuple:
    """(valid rows, their targets with ignored ones set to 0, class weights, w_t·valid)."""
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    w = np.ones(classes) if weight is None else np.asarray(weight, np.float64)
    return valid, safe, w, w[safe] * valid


def cross_entropy_forward(
    x: np.ndarray, target: np.ndarray, weight: np.ndarray | None, ignore_index: int,
    label_smoothing: float, reduction: str,
) -> tuple[np.ndarray, np.ndarray]:
    """loss_i = (1 - eps)·w_t·(-log p_t) + eps/C·sum_c w_c·(-log p_c), 0 where the target is
    ignore_index; p = softmax(x_i). "mean" divides the sum by sum_i w_t over the rows not
    ignored (NaN when none is left). Returns (loss, lse), lse the rows' log-sum-exp."""
    x = np.asarray(x, np.float64)
    rows, classes = x.shape
    shifted, log_total = _shifted_log_sum_exp(x)
    log_p = shifted - log_total
    valid, safe, w, target_weight = _target_terms(target, weight, ignore_index, classes)
    loss = (1.0 - label_smoothing) * -log_p[np.arange(rows), safe] * w[safe]
    if label_smoothing > 0.0:  # PyTorch adds the smoothing term only then
        loss = loss + label_smoothing / classes * -(log_p * w).sum(axis=1)
    loss = np.where(valid, loss, 0.0)
    lse = (x.max(axis=1, keepdims=True) if classes else log_total) + log_total
    if reduction == "none":
        return loss, lse[:, 0]
    with np.errstate(invalid="ignore"):  # every target ignored: 0/0
        total = loss.sum()
        return np.array(total / target_weight.sum() if reduction == "mean" else total), lse[:, 0]


def cross_entropy_backward(
    dloss: np.ndarray, x: np.ndarray, target: np.ndarray, lse: np.ndarray,
    weight: np.ndarray | None, ignore_index: int, label_smoothing: float, reduction: str,
) -> np.ndarray:
    """d loss / d x: with p = exp(x - lse) and q the smoothed one-hot target
    (1 - eps)·[c = t] + eps/C, d loss_i / d x_ic = sum_k w_k·q_k·(p_c - [c = k])
    = p_c·sum_k w_k·q_k - w_c·q_c; times dloss_i ("none"), dloss ("sum") or
    dloss/sum_i w_t ("mean"); 0 on ignored rows."""
    x, lse = np.asarray(x, np.float64), np.asarray(lse, np.float64)
    rows, classes = x.shape
    valid, safe, w, target_weight = _target_terms(target, weight, ignore_index, classes)
    p = np.exp(x - lse[:, None])
    q = np.full((rows, classes), label_smoothing / classes)
    q[np.arange(rows), safe] += 1.0 - label_smoothing
    grad = p * (q * w).sum(axis=1, keepdims=True) - q * w
    dloss = np.asarray(dloss, np.float64)
    if reduction == "none":
        scale = dloss
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.full(rows, dloss / target_weight.sum() if reduction == "mean" else dloss)
    return np.where(valid[:, None], grad * scale[:, None], 0.0)
