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
    "x": "the input: (rows, cols), (N, C, S) or, for pooling and conv2d, (N, C, H, W)",
    "dy": "the upstream gradient, the shape of y (of x, for the normalizations)",
    "weight": "gamma: (cols,) or (C,); None means no affine scale. conv2d: (O, C/groups, kh, kw)",
    "bias": "beta: (cols,) or (C,); None means no affine shift. conv2d: (O,) or None",
    "eps": "added to the variance (or mean square) inside the square root; Adam: added to "
           "the denominator sqrt(v)/sqrt(1 - beta2^t)",
    "num_groups": "sets per sample; a positive divisor of C",
    "running_mean": "the running estimate of the mean, (C,)",
    "running_var": "the running estimate of the variance, (C,)",
    "param_grads": "False: dweight and dbias are not computed and come back as None "
                   "(PyTorch's output_mask, for affine=False or frozen parameters)",
    "y": "the output, the shape of x (pooling: (N, C, Ho, Wo); conv2d: (N, O, Ho, Wo))",
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
    "kernel_size": "pooling: the window, an int or (kh, kw)",
    "stride": "pooling, conv2d: the window step, an int or a pair of positive ints (pooling: "
              "None means kernel_size)",
    "padding": "pooling: implicit padding on each side, an int or a pair, <= kernel_size // 2; "
               "conv2d: zero padding, an int, a pair or ((top, bottom), (left, right))",
    "dilation": "max pooling, conv2d: the step between a window's elements, an int or a pair",
    "ceil_mode": "pooling: round the output size up (a last, partial window)",
    "count_include_pad": "avg pooling: the divisor counts the padding",
    "divisor_override": "avg pooling: the divisor of every window, a nonzero int, or None",
    "indices": "max pooling: each maximum's flat index h·W + w in its input plane, int64, "
               "the shape of y",
    "input_size": "pooling backward: (H, W) of x",
    "groups": "conv2d: channel groups, a positive divisor of both channel counts",
    "output_mask": "conv2d: three bools, which of (dx, dweight, dbias) to compute (PyTorch's "
                   "output_mask); the others come back as None",
    "columns": "conv2d: the im2col matrix of x, (C·kh·kw, N·Ho·Wo), from forward; None in "
               "backward: recomputed from x",
    # optimizer kernels ("lists" layout): lists with one entry per parameter, updated in place
    "params": "the parameters: a list of C-contiguous float32/float64 arrays, any shapes",
    "grads": "the gradient of each parameter, its shape and dtype (read only)",
    "momentum_buffers": "SGD: each parameter's momentum buffer; a None entry is made on this "
                        "step (buf = g), as PyTorch's first step",
    "exp_avgs": "Adam: each parameter's first-moment estimate m",
    "exp_avg_sqs": "Adam: each parameter's second-moment estimate v",
    "max_exp_avg_sqs": "AMSGrad: each parameter's running maximum of v; None without amsgrad",
    "state_steps": "Adam: each parameter's step count t, this step included (>= 1)",
    "lr": "the learning rate",
    "momentum": "SGD momentum factor (0: no buffer)",
    "dampening": "SGD: the gradient enters the buffer scaled by 1 - dampening",
    "weight_decay": "L2 penalty added to g (SGD, Adam) or decoupled shrink of p (AdamW)",
    "nesterov": "SGD: step along g + momentum·buf instead of buf",
    "maximize": "ascend: the gradient's sign is flipped first",
    "beta1": "Adam: decay rate of the first moment",
    "beta2": "Adam: decay rate of the second moment",
    "amsgrad": "Adam: normalize by the running maximum of v (AMSGrad)",
    "decoupled_weight_decay": "True for AdamW: weight decay shrinks p instead of adding to g",
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
    layout: str  # "rows", "ncs", "nchw" (pooling, conv2d), "flat" (elementwise, 1-D) or
    #               "lists" (optimizers: one array per parameter)
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
    # 2-d pooling, PyTorch's arguments (kernels/pooling.py checks them); CPU-only
    Kernel("max_pool2d_forward", ("x", "kernel_size", "stride", "padding", "dilation",
                                  "ceil_mode"), ("y", "indices"), "nchw", ("reference", "cpu")),
    Kernel("max_pool2d_backward", ("dy", "indices", "input_size"), ("dx",), "nchw",
           ("reference", "cpu")),
    Kernel("avg_pool2d_forward", ("x", "kernel_size", "stride", "padding", "ceil_mode",
                                  "count_include_pad", "divisor_override"), ("y",), "nchw",
           ("reference", "cpu")),
    Kernel("avg_pool2d_backward", ("dy", "input_size", "kernel_size", "stride", "padding",
                                   "ceil_mode", "count_include_pad", "divisor_override"),
           ("dx",), "nchw", ("reference", "cpu")),
    # 2-D convolution (im2col + BLAS); the cuda device keeps its CuPy path
    Kernel("conv2d_forward", ("x", "weight", "bias", "stride", "padding", "dilation", "groups"),
           ("y", "columns"), "nchw", ("reference", "cpu")),
    Kernel("conv2d_backward", ("dy", "x", "weight", "stride", "padding", "dilation", "groups",
                               "output_mask", "columns"), ("dx", "dweight", "dbias"), "nchw",
           ("reference", "cpu")),
    # in-place optimizer updates of a whole parameter group ("lists": any shapes, elementwise)
    Kernel("sgd_step", ("params", "grads", "momentum_buffers", "lr", "momentum", "dampening",
                        "weight_decay", "nesterov", "maximize"), ("momentum_buffers",), "lists",
           ("reference", "cpu")),
    Kernel("adam_step", ("params", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs",
                         "state_steps", "lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad",
                         "maximize", "decoupled_weight_decay"), (), "lists", ("reference", "cpu")),
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
    Kernel("relu_forward", ("x",), ("y",), "flat", ("reference", "cpu")),
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
