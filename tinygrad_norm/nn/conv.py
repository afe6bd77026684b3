"""Conv2d: a 2-D convolution layer (cross-correlation, as in PyTorch) over (N, C, H, W)."""

from __future__ import annotations

from ..tensor import Tensor
from . import functional as F
from .linear import add_weight_and_bias, default_init
from .module import Module


class Conv2d(Module):
    """weight (out_channels, in_channels, kh, kw), bias (out_channels,), PyTorch's init.

    padding: an int, a pair, 'valid' or 'same' (stride 1 only); weight (out_channels,
    in_channels/groups, kh, kw). Padding modes other than 'zeros' are not implemented and
    raise ValueError.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None) -> None:
        super().__init__()
        if padding_mode != "zeros":
            raise ValueError(
                f"Conv2d: padding_mode={padding_mode!r} is not implemented; only 'zeros'"
            )
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"Conv2d: {name} must be a positive int, got {value!r}")
        if not isinstance(groups, int) or groups <= 0:
            raise ValueError(f"Conv2d: groups must be a positive int, got {groups!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must be divisible by groups={groups}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride = F._pair(stride, "stride")
        self.padding = padding if isinstance(padding, str) else F._pair(padding, "padding")
        self.dilation = F._pair(dilation, "dilation")
        F._conv_padding(self.padding, self.kernel_size, self.stride, self.dilation)  # validate
        self.groups = groups
        self.padding_mode = padding_mode
        weight_shape = (out_channels, in_channels // groups) + self.kernel_size
        add_weight_and_bias(self, weight_shape, bias, device, dtype)

    def reset_parameters(self) -> None:
        default_init(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"  # 'same' unquoted, as PyTorch prints it
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text
