"""The kernel interface: every kernel function, its arguments and what it returns.

`kernels.reference` (float64 NumPy, the spec), `kernels.cpu` (Numba) and `kernels.cuda`
(numba.cuda) each define exactly these functions with exactly these argument names, in this
order; tests/test_kernel_api.py checks all three against this table. Where to read each one:

    kernels/reference.py            every function, in plain NumPy
    kernels/cpu/<norm>.py           layer_norm.py, rms_norm.py, group_norm.py, batch_norm.py
    kernels/cuda/<norm>.py          the same file names

Shapes: "rows" kernels take x as (rows, cols) and normalize each row (LayerNorm, RMSNorm);
"ncs" kernels take x as (N, C, S): GroupNorm normalizes each (sample, group) set, InstanceNorm
is GroupNorm with num_groups == C, BatchNorm normalizes each channel over N and S; the loss
kernels take (rows, classes) scores, the elementwise ("flat") ones 1-D arrays. Every array
is C-contiguous and of x's dtype (float32 or float64; cross_entropy's target is int64 and its
lse float64); the caller reshapes and copies. The formulas, the numerics and the memory
traffic of each are in kernels/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass

# What each argument and result name means, wherever it appears.
ROLES = {
    "x": "the input: (rows, cols) or (N, C, S)",
    "dy": "the upstream gradient, the shape of x",
    "weight": "gamma: (cols,) or (C,); None means no affine scale",
    "bias": "beta: (cols,) or (C,); None means no affine shift",
    "eps": "added to the variance (or mean square) inside the square root",
    "num_groups": "sets per sample; a positive divisor of C",
    "running_mean": "the running estimate of the mean, (C,)",
    "running_var": "the running estimate of the variance, (C,)",
    "param_grads": "False: dweight and dbias are not computed and come back as None "
                   "(PyTorch's output_mask, for affine=False or frozen parameters)",
    "y": "the output, the shape of x",
    "mean": "per-set mean: (rows,), (N, num_groups) or (C,)",
    "inv_std": "per-set 1/sqrt(var + eps), shaped like mean",
    "var": "per-set biased variance, shaped like mean (for running estimates)",
    "inv_rms": "per-row 1/sqrt(mean(x^2) + eps), (rows,)",
    "dx": "the input gradient, the shape of x",
    "dweight": "the gradient of weight, (cols,) or (C,)",
    "dbias": "the gradient of bias, (cols,) or (C,)",
    "size": "LocalResponseNorm: channels in each window",
    "alpha": "LocalResponseNorm: the scale of the windowed sum of squares",
    "beta": "LocalResponseNorm: the exponent",
    "k": "LocalResponseNorm: the additive constant",
    "scale": "LocalResponseNorm: k + alpha/size·(windowed sum of x^2), the shape of x",
    "sum_dy": "BatchNorm split: per-channel sum of dy over all the data, float64 (C,)",
    "sum_dy_xmu": "BatchNorm split: per-channel sum of dy·(x - mean) over all the data",
    "count": "BatchNorm split: elements per channel over all the data (all processes)",
    "rmax": "Batch Renormalization: r is clipped to [1/rmax, rmax]",
    "dmax": "Batch Renormalization: d is clipped to [-dmax, dmax]",
    "r": "Batch Renormalization: sigma_B/sigma per channel, clipped (a constant for backward)",
    "d": "Batch Renormalization: (mu_B - mu)/sigma per channel, clipped (a constant too)",
    "target": "cross_entropy: int64 class index per row of x, (rows,)",
    "ignore_index": "cross_entropy: the target value whose rows add nothing (an int)",
    "label_smoothing": "cross_entropy: eps, the share of the target spread over all classes",
    "reduction": "cross_entropy: 'none' (a loss per row), 'mean' (over the target weight) "
                 "or 'sum'",
    "loss": "cross_entropy: (rows,) for reduction 'none', else 0-d; x's dtype",
    "lse": "cross_entropy: per-row log-sum-exp of x, float64 (rows,)",
    "dloss": "cross_entropy: the upstream gradient, the shape of loss",
}


@dataclass(frozen=True)
class Kernel:
    name: str
    arguments: tuple[str, ...]
    returns: tuple[str, ...]
    layout: str  # "rows", "ncs" or "flat" (elementwise: 1-D arrays)
    backends: tuple[str, ...] = ("reference", "cpu", "cuda")


KERNELS = (
    Kernel("layer_norm_forward", ("x", "weight", "bias", "eps"), ("y", "mean", "inv_std"),
           "rows"),
    Kernel("layer_norm_backward", ("dy", "x", "mean", "inv_std", "weight", "param_grads"),
           ("dx", "dweight", "dbias"), "rows"),
    Kernel("rms_norm_forward", ("x", "weight", "eps"), ("y", "inv_rms"), "rows"),
    Kernel("rms_norm_backward", ("dy", "x", "inv_rms", "weight", "param_grads"),
           ("dx", "dweight"), "rows"),
    Kernel("group_norm_forward", ("x", "num_groups", "weight", "bias", "eps"),
           ("y", "mean", "inv_std", "var"), "ncs"),
    Kernel("group_norm_backward",
           ("dy", "x", "mean", "inv_std", "num_groups", "weight", "param_grads"),
           ("dx", "dweight", "dbias"), "ncs"),
    Kernel("batch_norm_forward_train", ("x", "weight", "bias", "eps"),
           ("y", "mean", "inv_std", "var"), "ncs"),
    Kernel("batch_norm_forward_eval", ("x", "running_mean", "running_var", "weight", "bias",
                                       "eps"), ("y",), "ncs"),
    Kernel("batch_norm_backward", ("dy", "x", "mean", "inv_std", "weight", "param_grads"),
           ("dx", "dweight", "dbias"), "ncs"),
    Kernel("batch_norm_backward_eval",
           ("dy", "x", "running_mean", "running_var", "weight", "eps", "param_grads"),
           ("dx", "dweight", "dbias"), "ncs"),
    # BatchNorm's training passes one by one, for SyncBatchNorm (statistics and sums merged
    # across processes between them); mean, inv_std and the sums are float64 (C,)
    Kernel("batch_norm_statistics", ("x",), ("mean", "var"), "ncs", ("reference", "cpu")),
    Kernel("batch_norm_apply", ("x", "mean", "inv_std", "weight", "bias"), ("y",), "ncs",
           ("reference", "cpu")),
    Kernel("batch_norm_gradient_sums", ("dy", "x", "mean"), ("sum_dy", "sum_dy_xmu"), "ncs",
           ("reference", "cpu")),
    Kernel("batch_norm_input_gradient", ("dy", "x", "mean", "inv_std", "weight", "sum_dy",
                                         "sum_dy_xmu", "count"), ("dx",), "ncs",
           ("reference", "cpu")),
    # Batch Renormalization (Ioffe 2017): BatchNorm corrected toward the running statistics
    Kernel("batch_renorm_forward_train", ("x", "running_mean", "running_var", "weight", "bias",
                                          "eps", "rmax", "dmax"),
           ("y", "mean", "inv_std", "var", "r", "d"), "ncs", ("reference", "cpu")),
    Kernel("batch_renorm_backward", ("dy", "x", "mean", "inv_std", "r", "d", "weight"),
           ("dx", "dweight", "dbias"), "ncs", ("reference", "cpu")),
    # AlexNet's cross-channel normalization: no statistics, no parameters; no CUDA kernel yet
    Kernel("local_response_norm_forward", ("x", "size", "alpha", "beta", "k"), ("y", "scale"),
           "ncs", ("reference", "cpu")),
    Kernel("local_response_norm_backward", ("dy", "x", "scale", "size", "alpha", "beta"),
           ("dx",), "ncs", ("reference", "cpu")),
    # the training step's loss: x is (rows, classes) class scores, softmax over each row
    Kernel("log_softmax_forward", ("x",), ("y",), "rows", ("reference", "cpu")),
    Kernel("log_softmax_backward", ("dy", "y"), ("dx",), "rows", ("reference", "cpu")),
    Kernel("cross_entropy_forward", ("x", "target", "weight", "ignore_index",
                                     "label_smoothing", "reduction"), ("loss", "lse"), "rows",
           ("reference", "cpu")),
    Kernel("cross_entropy_backward", ("dloss", "x", "target", "lse", "weight", "ignore_index",
                                      "label_smoothing", "reduction"), ("dx",), "rows",
           ("reference", "cpu")),
    # elementwise activations, only the passes where a kernel saves a pass or a temporary
    # over NumPy (README: measured); "flat": every array 1-D, the caller reshapes
    Kernel("relu_backward", ("dy", "y"), ("dx",), "flat", ("reference", "cpu")),
    Kernel("sigmoid_forward", ("x",), ("y",), "flat", ("reference", "cpu")),
    Kernel("sigmoid_backward", ("dy", "y"), ("dx",), "flat", ("reference", "cpu")),
    Kernel("tanh_backward", ("dy", "y"), ("dx",), "flat", ("reference", "cpu")),
)

BY_NAME = {kernel.name: kernel for kernel in KERNELS}
NAMES = tuple(BY_NAME)


def names(backend: str) -> tuple[str, ...]:
    """The kernels a backend ("reference", "cpu" or "cuda") defines."""
    return tuple(kernel.name for kernel in KERNELS if backend in kernel.backends)
