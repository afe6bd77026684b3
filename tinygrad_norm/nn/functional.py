"""Functional forms of the layers and losses, PyTorch's names and signatures (torch.nn.functional).

Every function validates its arguments in the caller's terms (their shapes, their argument
names) before any array work, then builds the result from autograd Functions.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..random import generator
from ..tensor import Tensor
from .conv_ops import Conv2dFunction, conv_output_size
from .functional_norm import (  # noqa: F401  (re-exported)
    batch_norm,
    group_norm,
    instance_norm,
    layer_norm,
    local_response_norm,
    rms_norm,
)
from .linear_ops import LinearFunction
from .loss_ops import CrossEntropy
from .pool_ops import AvgPool2dFunction, MaxPool2dFunction, pool_output_size

_REDUCTIONS = ("none", "mean", "sum")


def _pair(value, name: str) -> tuple[int, int]:
    """An int or a 2-sequence of ints as a pair, as Conv2d and the pools accept."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_tensor(x, name: str = "input") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(x).__name__}")
    return x


def _as_batched(x: Tensor, op: str, channels_dim_name: str = "C") -> tuple[Tensor, bool]:
    """Accept (N, C, H, W) or unbatched (C, H, W) like PyTorch; return 4D and whether to squeeze."""
    _check_tensor(x)
    if x.ndim == 3:
        return x.unsqueeze(0), True
    if x.ndim == 4:
        return x, False
    raise ValueError(
        f"{op}: expected a 3D (unbatched, ({channels_dim_name}, H, W)) or 4D (batched, "
        f"(N, {channels_dim_name}, H, W)) input, got a {x.ndim}D input of shape {x.shape}"
    )


def _unbatch(out: Tensor, squeeze: bool) -> Tensor:
    return out.squeeze(0) if squeeze else out


# ---------------------------------------------------------------- linear and convolution


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = input @ weight.T + bias over the last dim of input; weight is (out, in)."""
    _check_tensor(input)
    if input.ndim == 0 or input.shape[-1] != weight.shape[-1]:
        raise ValueError(
            f"linear: expected input with last dim {weight.shape[-1]} (in_features), got input "
            f"of shape {input.shape}"
        )
    dtypes = {t.dtype for t in (input, weight, bias) if t is not None}
    if len(dtypes) != 1:  # PyTorch refuses too, rather than promoting silently
        raise TypeError(f"linear: input, weight and bias must share one dtype, got "
                        f"{sorted(str(d) for d in dtypes)} (use module.double() or "
                        f"input.float())")
    if bias is None:
        return LinearFunction.apply(input, weight)
    return LinearFunction.apply(input, weight, bias)


def _conv_padding(padding, kernel: tuple, stride: tuple, dilation: tuple) -> tuple:
    """((top, bottom), (left, right)); 'same' puts any odd extra row/column after, as PyTorch."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding != "same":
            raise ValueError(f"padding must be 'valid', 'same', an int or a pair, got {padding!r}")
        if stride != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    pad_h, pad_w = _pair(padding, "padding")
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return ((pad_h, pad_h), (pad_w, pad_w))


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """2-D cross-correlation of input (N, C, H, W) or (C, H, W) with weight (O, C/groups, kh,
    kw): each of the `groups` channel groups of the input feeds its share of the outputs."""
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    x, squeeze = _as_batched(input, "conv2d")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4D (O, C, kh, kw), got shape {weight.shape}")
    if weight.shape[0] % groups:
        raise ValueError(f"conv2d: groups={groups} must divide the output channels, got weight "
                         f"of shape {weight.shape}")
    if x.shape[1] != weight.shape[1] * groups:
        raise ValueError(
            f"conv2d: weight of shape {weight.shape} expects {weight.shape[1] * groups} input "
            f"channels, but got input of shape {input.shape} with {x.shape[1]} channels"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    dtypes = {t.dtype for t in (x, weight, bias) if t is not None}
    if len(dtypes) != 1:
        raise TypeError(f"conv2d: input, weight and bias must share one dtype, got {dtypes}")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    if min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"conv2d: stride and dilation must be >= 1, got {stride}, {dilation}")
    kernel = weight.shape[2:]
    pad = _conv_padding(padding, kernel, stride, dilation)
    out_size = [conv_output_size(x.shape[2 + d], kernel[d], stride[d], sum(pad[d]), dilation[d])
                for d in range(2)]
    if min(out_size) < 1:
        raise ValueError(
            f"conv2d: input of shape {input.shape} padded by {pad} is smaller than the dilated "
            f"kernel {kernel} (dilation {dilation}): output size {tuple(out_size)} is too small"
        )
    out = Conv2dFunction.apply(x, weight, bias, stride=stride, padding=pad, dilation=dilation,
                               groups=int(groups))
    return _unbatch(out, squeeze)


# ---------------------------------------------------------------- pooling


def _pool_geometry(op: str, x: Tensor, kernel_size, stride, padding, dilation,
                   ceil_mode) -> tuple:
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None or stride == [] else _pair(stride, "stride")
    pad, dilation = _pair(padding, "padding"), _pair(dilation, "dilation")
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1 or min(pad) < 0:
        raise ValueError(
            f"{op}: kernel_size, stride and dilation must be positive and padding non-negative, "
            f"got kernel_size={kernel}, stride={stride}, padding={pad}, dilation={dilation}"
        )
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:  # PyTorch 2.13: dilation or not
        raise ValueError(
            f"{op}: pad should be at most half of kernel size, but got pad={pad} and "
            f"kernel_size={kernel}"
        )
    sizes = [pool_output_size(x.shape[2 + d], kernel[d], stride[d], pad[d], dilation[d],
                              ceil_mode) for d in range(2)]
    out_size = tuple(s for s, _ in sizes)
    if min(out_size) < 1:
        raise ValueError(
            f"{op}: input of shape {x.shape} is too small for kernel_size={kernel}, "
            f"padding={pad}, dilation={dilation}: output size would be {out_size}"
        )
    padding = tuple((pad[d], pad[d] + sizes[d][1]) for d in range(2))
    return kernel, stride, padding, dilation, out_size


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    """Max over sliding windows; with return_indices also each max's flat index h * W + w."""
    x, squeeze = _as_batched(input, "max_pool2d")
    kernel, stride, padding, dilation, out_size = _pool_geometry(
        "max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode
    )
    indices = [] if return_indices else None
    out = _unbatch(MaxPool2dFunction.apply(x, kernel=kernel, stride=stride, padding=padding,
                                           dilation=dilation, out_size=out_size,
                                           ceil_mode=bool(ceil_mode), indices_out=indices),
                   squeeze)
    if not return_indices:
        return out
    return out, _unbatch(Tensor(indices[0]), squeeze)


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """Mean over sliding windows; the divisor follows PyTorch's padding and ceil_mode rules."""
    x, squeeze = _as_batched(input, "avg_pool2d")
    kernel, stride, padding, _, out_size = _pool_geometry(
        "avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode
    )
    if divisor_override is not None:
        if divisor_override <= 0:
            raise ValueError(f"avg_pool2d: divisor_override must be > 0, got {divisor_override}")
        divisor = np.full(out_size, divisor_override, dtype=x.dtype)
    else:
        counts = [_window_counts(x.shape[2 + d], kernel[d], stride[d], padding[d][0],
                                 out_size[d], count_include_pad) for d in range(2)]
        divisor = np.outer(*counts).astype(x.dtype)
    out = AvgPool2dFunction.apply(x, kernel=kernel, stride=stride, padding=padding,
                                  out_size=out_size, divisor=divisor, ceil_mode=bool(ceil_mode),
                                  count_include_pad=bool(count_include_pad),
                                  divisor_override=divisor_override)
    return _unbatch(out, squeeze)


def _window_counts(size: int, kernel: int, stride: int, pad: int, out: int,
                   count_include_pad: bool) -> np.ndarray:
    """Elements each window averages along one dim: windows are clipped to the padded input
    (ceil_mode's extra area never counts) and, without count_include_pad, to the input."""
    start = np.arange(out) * stride - pad
    end = np.minimum(start + kernel, size + pad)
    if count_include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


# ---------------------------------------------------------------- activations and shape


def relu(input: Tensor) -> Tensor:
    return _check_tensor(input).relu()


def sigmoid(input: Tensor) -> Tensor:
    return _check_tensor(input).sigmoid()


def tanh(input: Tensor) -> Tensor:
    return _check_tensor(input).tanh()


def log_softmax(input: Tensor, dim: int) -> Tensor:
    return _check_tensor(input).log_softmax(dim)


def softmax(input: Tensor, dim: int) -> Tensor:
    return _check_tensor(input).softmax(dim)


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    return _check_tensor(input).flatten(start_dim, end_dim)


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p) (training only).

    The mask is drawn from the global generator, so manual_seed makes it repeat.
    """
    _check_tensor(input)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    keep = generator().random(input.shape) >= p
    mask = (keep / (1.0 - p)).astype(input.dtype)
    return input * Tensor._wrap(mask, device=input.device)


# ---------------------------------------------------------------- losses


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _class_targets(op: str, input: Tensor, target, ignore_index: int) -> np.ndarray:
    """Validate class-index targets for (N, C) or (N, C, d1, ...) scores; return them as int64."""
    labels = target.data if isinstance(target, Tensor) else np.asarray(target)
    if input.ndim < 2:
        raise ValueError(f"{op}: expected input of shape (N, C) or (N, C, d1, ...), got shape "
                         f"{input.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: target must hold integer class indices (int64), got dtype {labels.dtype}; "
            f"class-probability targets are not supported"
        )
    expected = (input.shape[0],) + input.shape[2:]
    if labels.shape != expected:
        raise ValueError(
            f"{op}: input of shape {input.shape} needs target of shape {expected}, got target "
            f"of shape {labels.shape}"
        )
    classes = input.shape[1]
    # min/max first: two quick reductions decide the common case, every target in range
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        invalid = (labels != ignore_index) & ((labels < 0) | (labels >= classes))
        if invalid.any():
            bad = labels[invalid].reshape(-1)[0]
            raise ValueError(f"{op}: target {bad} is out of bounds: class indices must be in "
                             f"[0, {classes}) (C={classes})")
    return labels.astype(np.int64, copy=False)


def _rows(input: Tensor) -> Tensor:
    """(N, C, d1, ...) scores as (N * d1 * ..., C) rows; (N, C) unchanged."""
    if input.ndim == 2:
        return input
    dims = (0,) + tuple(range(2, input.ndim)) + (1,)
    return input.permute(*dims).reshape(-1, input.shape[1])


def _weighted_nll(log_probs: Tensor, labels: np.ndarray, weight: Tensor | None,
                  ignore_index: int, label_smoothing: float, reduction: str,
                  out_shape: tuple) -> Tensor:
    """The shared core of nll_loss and cross_entropy on (M, C) log-probabilities."""
    rows, classes = log_probs.shape
    flat = labels.reshape(-1)
    valid = flat != ignore_index
    safe = np.where(valid, flat, 0)
    class_weight = np.ones(classes, log_probs.dtype) if weight is None else weight.data
    sample_weight = (class_weight[safe] * valid).astype(log_probs.dtype)
    picked = log_probs[np.arange(rows), safe]
    loss = -(picked * Tensor._wrap(sample_weight, log_probs.device))
    if label_smoothing > 0.0:
        # PyTorch: (1 - eps) * nll + eps * mean over classes of the weighted -log p
        class_w = Tensor._wrap(np.asarray(class_weight, dtype=log_probs.dtype),
                                 log_probs.device)
        smooth = -(log_probs * class_w).sum(dim=1) * Tensor._wrap(
            valid.astype(log_probs.dtype), log_probs.device)
        loss = loss * (1.0 - label_smoothing) + smooth * (label_smoothing / classes)
    if reduction == "none":
        return loss.reshape(out_shape)
    if reduction == "sum":
        return loss.sum()
    # a weighted mean divides by the total weight of the non-ignored targets
    return loss.sum() / float(sample_weight.sum())


def _check_loss_args(op: str, input: Tensor, weight: Tensor | None, reduction: str,
                     label_smoothing: float = 0.0) -> None:
    _check_tensor(input)
    _check_reduction(reduction)
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: input must be floating point, got dtype {input.dtype}")
    if weight is not None and weight.shape != (input.shape[1],):
        raise ValueError(f"{op}: weight must have shape ({input.shape[1]},) (one per class), got "
                         f"{weight.shape}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")


def nll_loss(input: Tensor, target, weight: Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices `target` under log-probabilities `input`."""
    _check_loss_args("nll_loss", input, weight, reduction)
    labels = _class_targets("nll_loss", input, target, ignore_index)
    return _weighted_nll(_rows(input), labels, weight, ignore_index, 0.0, reduction,
                         labels.shape)


def cross_entropy(input: Tensor, target, weight: Tensor | None = None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over the class dim (dim 1) followed by nll_loss, with optional smoothing.

    input: (N, C) or (N, C, d1, ...) unnormalized scores; target: int64 class indices of
    shape (N,) or (N, d1, ...).
    """
    _check_loss_args("cross_entropy", input, weight, reduction, label_smoothing)
    labels = _class_targets("cross_entropy", input, target, ignore_index)
    if input.device == "cpu" and input.dtype.char in "fd":  # one fused node, CPU kernels
        class_weight = None if weight is None else np.ascontiguousarray(weight.data,
                                                                        input.dtype)
        loss = CrossEntropy.apply(_rows(input), target=np.ascontiguousarray(labels.reshape(-1)),
                                  weight=class_weight, ignore_index=int(ignore_index),
                                  label_smoothing=float(label_smoothing), reduction=reduction)
        return loss.reshape(labels.shape) if reduction == "none" and labels.ndim > 1 else loss
    log_probs = _rows(input).log_softmax(dim=1)
    return _weighted_nll(log_probs, labels, weight, ignore_index, label_smoothing, reduction,
                         labels.shape)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean (or sum, or elementwise) squared error; shapes should match (PyTorch warns if not)."""
    _check_tensor(input)
    _check_reduction(reduction)
    target = target if isinstance(target, Tensor) else Tensor(np.asarray(target, input.dtype))
    if target.dtype.kind != "f":  # integer targets take the input's dtype, as in PyTorch
        target = target.to(dtype=input.dtype)
    if target.shape != input.shape:
        try:
            np.broadcast_shapes(input.shape, target.shape)
        except ValueError:
            raise ValueError(f"mse_loss: input of shape {input.shape} and target of shape "
                             f"{target.shape} cannot be broadcast together") from None
        warnings.warn(
            f"mse_loss: target size {target.shape} differs from input size {input.shape}; "
            f"they are broadcast, which is likely not what you want", stacklevel=2
        )
    diff = input - target
    return _reduce(diff * diff, reduction)
