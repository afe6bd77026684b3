"""The arguments of the 2-d pooling kernels, checked as PyTorch checks them, and their geometry.

Shared by kernels.reference and kernels.cpu (max_pool2d.py, avg_pool2d.py), so both accept and
refuse the same calls. PyTorch 2.13's rules (aten's pool2d_shape_check, measured against torch):
kernel_size, stride and dilation are positive, padding is at most half the kernel size
(kernel_size // 2, the dilation does not enter), and every output size is at least 1.
Along one dim, with span = dilation·(kernel_size - 1) + 1:

    out = floor((size + 2·padding - span) / stride) + 1        (ceil_mode: ceil instead)

and with ceil_mode a last window that would start in the right padding is dropped.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kernels.validation import int_pair, is_int


class Geometry(NamedTuple):
    """Validated (height, width) pairs of one pooling call; out is the output plane."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    out: tuple[int, int]


def check_flag(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def check_divisor_override(divisor_override: object) -> int:
    """divisor_override as an int, 0 meaning None (PyTorch refuses only 0; negative is fine)."""
    if divisor_override is None:
        return 0
    if not is_int(divisor_override):
        raise TypeError(f"divisor_override must be None or an int, got "
                        f"{type(divisor_override).__name__}")
    if divisor_override == 0:
        raise ValueError("divisor_override must not be zero")
    return int(divisor_override)


def check_input_size(input_size: object) -> tuple[int, int]:
    """(H, W) of the input plane that a backward kernel writes."""
    if not isinstance(input_size, (tuple, list)):
        raise TypeError(f"input_size must be a pair of ints (H, W), got {input_size!r}")
    return int_pair("input_size", input_size, 1)


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int,
                ceil_mode: bool) -> int:
    """Output length along one dim (the module docstring's rule)."""
    span = dilation * (kernel - 1) + 1
    out = (size + 2 * padding - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def geometry(plane: tuple, kernel_size: object, stride: object, padding: object,
             dilation: object, ceil_mode: object) -> Geometry:
    """Checks the pooling arguments for an input plane (H, W); stride None means kernel_size."""
    kernel = int_pair("kernel_size", kernel_size, 1)
    stride = kernel if stride is None else int_pair("stride", stride, 1)
    pad = int_pair("padding", padding, 0)
    dilation = int_pair("dilation", dilation, 1)
    ceil_mode = check_flag("ceil_mode", ceil_mode)
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ValueError(f"padding must be at most half of kernel_size, got padding={pad} "
                         f"and kernel_size={kernel}")
    out = tuple(output_size(plane[d], kernel[d], stride[d], pad[d], dilation[d], ceil_mode)
                for d in range(2))
    if min(out) < 1:
        raise ValueError(f"x of plane {tuple(plane)} is too small for kernel_size={kernel}, "
                         f"padding={pad}, dilation={dilation}: output size would be {out}")
    return Geometry(kernel, stride, pad, dilation, out)
