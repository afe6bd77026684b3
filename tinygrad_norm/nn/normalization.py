"""Normalization layers with PyTorch's constructors, parameter and buffer names, and train/eval
behaviour: BatchNorm1d/2d/3d, InstanceNorm1d/2d/3d, their Lazy variants, LayerNorm, GroupNorm,
RMSNorm, LocalResponseNorm.

The math runs in kernels (see tinygrad_norm.nn.norm_ops); these classes own the parameters and the
running statistics and decide which statistics a call uses.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Sequence

import numpy as np

from ..tensor import Tensor, ones, zeros
from . import functional_norm as F
from .module import Module
from .parameter import Parameter, UninitializedBuffer, UninitializedParameter, is_uninitialized


def _dtype(dtype) -> np.dtype:
    return np.dtype(np.float32 if dtype is None else dtype)


def _register_affine(module: Module, shape: tuple, affine: bool, dtype, device,
                     bias: bool = True) -> None:
    """weight = ones(shape) and bias = zeros(shape) (None when not `bias`), or both None."""
    if affine:
        module.weight = Parameter(ones(shape, dtype=dtype, device=device))
        if bias:
            module.bias = Parameter(zeros(shape, dtype=dtype, device=device))
        else:
            module.register_parameter("bias", None)
    else:
        module.register_parameter("weight", None)
        module.register_parameter("bias", None)


class _NormBase(Module):
    """Per-channel affine parameters and running statistics shared by BatchNorm and
    InstanceNorm."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None,
                 dtype=None, *, bias: bool = True) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)):
            raise TypeError(f"{type(self).__name__}: num_features must be an int, got "
                            f"{type(num_features).__name__}")
        if num_features < 0:
            raise ValueError(
                f"{type(self).__name__}: num_features must be a non-negative int, got "
                f"{num_features!r}"
            )
        self.num_features = int(num_features)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dtype = _dtype(dtype)
        _register_affine(self, (num_features,), affine, dtype, device, bias)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, dtype=dtype, device=device))
            self.register_buffer("running_var", ones(num_features, dtype=dtype, device=device))
            self.register_buffer("num_batches_tracked",
                                 Tensor(np.array(0, dtype=np.int64), device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        for param, value in ((self.weight, 1), (self.bias, 0)):
            if param is not None:
                param.data[...] = value

    def _check_input_dim(self, input: Tensor) -> None:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


def _rank_error(name: str, expected: str, input: Tensor) -> ValueError:
    return ValueError(f"{name}: expected {expected} input (got {input.ndim}D input)")


class _BatchNorm(_NormBase):
    """Per-channel statistics over the batch and all spatial positions."""

    def _update_factor(self) -> float:
        """The running statistics' update factor for this call; counts a training batch."""
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        return factor

    def forward(self, input: Tensor) -> Tensor:
        # the channel count is checked by F.batch_norm against the buffers and parameters, as
        # in PyTorch: without either (affine=False, track_running_stats=False) any count works
        self._check_input_dim(input)
        factor = self._update_factor()
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(input, self.running_mean if track else None,
                            self.running_var if track else None, self.weight, self.bias,
                            use_batch_stats, factor, self.eps)


class BatchNorm1d(_BatchNorm):
    """BatchNorm over (N, C) or (N, C, L) input."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim not in (2, 3):
            raise _rank_error(type(self).__name__, "2D or 3D", input)


class BatchNorm2d(_BatchNorm):
    """BatchNorm over (N, C, H, W) input."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim != 4:
            raise _rank_error(type(self).__name__, "4D", input)


class BatchNorm3d(_BatchNorm):
    """BatchNorm over (N, C, D, H, W) input."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim != 5:
            raise _rank_error(type(self).__name__, "5D", input)


class _InstanceNorm(_NormBase):
    """Per-(sample, channel) statistics over the spatial positions; unbatched input accepted."""

    spatial_ndim = 0

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = False, track_running_stats: bool = False, device=None,
                 dtype=None, *, bias: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype,
                         bias=bias)

    def _check_input_dim(self, input: Tensor) -> None:
        batched_ndim = self.spatial_ndim + 2
        if input.ndim not in (batched_ndim - 1, batched_ndim):
            raise _rank_error(type(self).__name__, f"{batched_ndim - 1}D or {batched_ndim}D",
                              input)

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        unbatched = input.ndim == self.spatial_ndim + 1
        if unbatched:
            input = input.unsqueeze(0)
        if input.shape[1] != self.num_features:
            if self.affine:  # ValueError, as PyTorch's InstanceNorm raises
                raise ValueError(
                    f"{type(self).__name__}({self.num_features}): expected "
                    f"{self.num_features} channels in dimension {0 if unbatched else 1} of the "
                    f"input, got input of size {list(input.shape[unbatched:])}"
                )
            warnings.warn(
                f"{type(self).__name__}({self.num_features}) got {input.shape[1]} channels; "
                f"without affine parameters the input is normalized anyway", stacklevel=2)
        use_input_stats = self.training or not self.track_running_stats
        out = F.instance_norm(input, self.running_mean, self.running_var, self.weight,
                              self.bias, use_input_stats,
                              0.0 if self.momentum is None else self.momentum, self.eps)
        return out.squeeze(0) if unbatched else out


class InstanceNorm1d(_InstanceNorm):
    """InstanceNorm over (N, C, L) or unbatched (C, L) input."""

    spatial_ndim = 1


class InstanceNorm2d(_InstanceNorm):
    """InstanceNorm over (N, C, H, W) or unbatched (C, H, W) input."""

    spatial_ndim = 2


class InstanceNorm3d(_InstanceNorm):
    """InstanceNorm over (N, C, D, H, W) or unbatched (C, D, H, W) input."""

    spatial_ndim = 3


def _shape_tuple(normalized_shape, name: str) -> tuple:
    shape = F._normalized(normalized_shape)
    if not shape or any(s < 0 for s in shape):
        raise ValueError(f"{name}: normalized_shape must be non-empty and non-negative, "
                         f"got {normalized_shape!r}")
    return shape


class LayerNorm(Module):
    """Normalize over the trailing `normalized_shape` dims; elementwise weight and bias."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.normalized_shape = _shape_tuple(normalized_shape, "LayerNorm")
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _register_affine(self, self.normalized_shape, elementwise_affine, _dtype(dtype), device,
                         bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class GroupNorm(Module):
    """Normalize each group of num_channels/num_groups channels per sample; per-channel
    affine."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, device=None, dtype=None, *, bias: bool = True) -> None:
        super().__init__()
        if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)):
            raise TypeError(f"GroupNorm: num_groups must be an int, got "
                            f"{type(num_groups).__name__}")
        if num_groups <= 0:
            raise ValueError(f"GroupNorm: num_groups must be a positive int, got {num_groups!r}")
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by "
                             f"num_groups ({num_groups})")
        self.num_groups = int(num_groups)
        self.num_channels = int(num_channels)
        self.eps = eps
        self.affine = affine
        _register_affine(self, (num_channels,), affine, _dtype(dtype), device, bias)

    def forward(self, input: Tensor) -> Tensor:
        # F.group_norm checks the weight against the input's channels (RuntimeError, as
        # PyTorch); without affine parameters any channel count divisible by num_groups works
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class RMSNorm(Module):
    """x / sqrt(mean(x^2) + eps) * weight over the trailing dims; eps None = finfo.eps."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float | None = None,
                 elementwise_affine: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.normalized_shape = _shape_tuple(normalized_shape, "RMSNorm")
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(ones(self.normalized_shape, dtype=_dtype(dtype),
                                         device=device))
        else:
            self.register_parameter("weight", None)

    def forward(self, input: Tensor) -> Tensor:
        return F.rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class LocalResponseNorm(Module):
    """Cross-channel normalization of AlexNet: x / (k + alpha/size · sum of x^2 over `size`
    neighbouring channels)^beta. No parameters or buffers; arguments are checked at the call,
    as in PyTorch."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k

    def forward(self, input: Tensor) -> Tensor:
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class _LazyNormBase:
    """A BatchNorm/InstanceNorm whose num_features comes from input.shape[1] at the first call,
    as PyTorch's Lazy modules: until then weight, bias, running_mean and running_var are
    uninitialized (left out of state_dict; load_state_dict gives them the loaded shapes), and
    after the first call the module becomes `cls_to_become`. PyTorch's defaults, including
    affine=True and track_running_stats=True for the InstanceNorms."""

    cls_to_become: type

    def __init__(self, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *,
                 bias: bool = True) -> None:
        super().__init__(0, eps, momentum, affine, track_running_stats, device, dtype,
                         bias=bias)
        for registry, kind in ((self._parameters, UninitializedParameter),
                               (self._buffers, UninitializedBuffer)):
            for name in ("weight", "bias", "running_mean", "running_var"):
                if registry.get(name) is not None:
                    registry[name] = kind(registry[name])

    def _lazy_tensors(self) -> list:
        return [t for t in itertools.chain(self._parameters.values(), self._buffers.values())
                if is_uninitialized(t)]

    def has_uninitialized_params(self) -> bool:
        return bool(self._lazy_tensors())

    def initialize_parameters(self, input: Tensor) -> None:
        """Materialize the uninitialized tensors with input.shape[1] features and reset them
        (weight 1, bias 0, running_mean 0, running_var 1), as PyTorch does."""
        if not self.has_uninitialized_params():
            return
        if input.ndim < 2:
            raise ValueError(f"{type(self).__name__}: cannot infer num_features from a "
                             f"{input.ndim}D input; expected (N, C, ...)")
        self.num_features = int(input.shape[1])
        for tensor in self._lazy_tensors():
            tensor.materialize(zeros(self.num_features, dtype=tensor.dtype,
                                     device=tensor.device).data)
        self.reset_parameters()

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        self.initialize_parameters(input)
        self.__class__ = self.cls_to_become
        return self.forward(input)


def _lazy(cls: type) -> type:
    """Lazy<cls>: `cls` with num_features inferred at the first call."""
    name = f"Lazy{cls.__name__}"
    return type(name, (_LazyNormBase, cls), {
        "cls_to_become": cls, "__module__": __name__, "__qualname__": name,
        "__doc__": f"{cls.__name__} with num_features inferred at the first call."})


LazyBatchNorm1d = _lazy(BatchNorm1d)
LazyBatchNorm2d = _lazy(BatchNorm2d)
LazyBatchNorm3d = _lazy(BatchNorm3d)
LazyInstanceNorm1d = _lazy(InstanceNorm1d)
LazyInstanceNorm2d = _lazy(InstanceNorm2d)
LazyInstanceNorm3d = _lazy(InstanceNorm3d)
