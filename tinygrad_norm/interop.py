"""from_torch / to_torch: move a model between torch.nn and tinygrad_norm.nn in one line.

Both libraries use the same class names, constructor arguments, attribute names and state_dict
keys, so a layer converts by reading its constructor arguments from the source's attributes,
building the other library's class and loading the state_dict (values copied, dtypes kept).
Containers (Sequential, ModuleList) convert child by child, keeping the names. A layer with no
counterpart — including any user-defined Module subclass, whose forward we cannot translate —
raises TypeError naming its path in the tree and its class.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from . import nn


def _has(attr: str):
    """Constructor flag `bias`: whether the source has that tensor (True when its affine is
    off, the constructor's default, since then bias is None for another reason)."""
    def read(module, affine: str | None):
        if affine is not None and not getattr(module, affine):
            return True
        return getattr(module, attr) is not None
    return read


_NORM = ("num_features", "eps", "momentum", "affine", "track_running_stats")
_POOL = ("kernel_size", "stride", "padding")
# class name -> (constructor arguments read as attributes, {argument: reader}, affine flag)
LAYERS: dict[str, tuple[tuple, dict, str | None]] = {
    "Linear": (("in_features", "out_features"), {"bias": _has("bias")}, None),
    "Conv2d": (("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                "groups", "padding_mode"), {"bias": _has("bias")}, None),
    **{f"{kind}{d}d": (_NORM, {"bias": _has("bias")}, "affine")
       for kind in ("BatchNorm", "InstanceNorm") for d in (1, 2, 3)},
    "GroupNorm": (("num_groups", "num_channels", "eps", "affine"), {"bias": _has("bias")},
                  "affine"),
    "LayerNorm": (("normalized_shape", "eps", "elementwise_affine"), {"bias": _has("bias")},
                  "elementwise_affine"),
    "RMSNorm": (("normalized_shape", "eps", "elementwise_affine"), {}, None),
    "LocalResponseNorm": (("size", "alpha", "beta", "k"), {}, None),
    "ReLU": ((), {}, None), "Sigmoid": ((), {}, None), "Tanh": ((), {}, None),
    "Identity": ((), {}, None),
    "Softmax": (("dim",), {}, None), "LogSoftmax": (("dim",), {}, None),
    "Dropout": (("p",), {}, None), "Flatten": (("start_dim", "end_dim"), {}, None),
    "MaxPool2d": (_POOL + ("dilation", "return_indices", "ceil_mode"), {}, None),
    "AvgPool2d": (_POOL + ("ceil_mode", "count_include_pad", "divisor_override"), {}, None),
}
CONTAINERS = ("Sequential", "ModuleList")


def _convert(module, target, path: str, direction: str):
    name = type(module).__name__
    supported = name in LAYERS or name in CONTAINERS
    if not supported or type(module) is not getattr(_source_library(direction), name, None):
        raise TypeError(
            f"{direction}: {path} is a {type(module).__module__}.{name}, which has no "
            f"counterpart in the other library; supported: {', '.join(sorted(LAYERS))} inside "
            f"{' / '.join(CONTAINERS)}")
    if name in CONTAINERS:
        children = OrderedDict((child_name, _convert(child, target, f"{path}.{child_name}",
                                                     direction))
                               for child_name, child in module.named_children())
        converted = (target.Sequential(children) if name == "Sequential"
                     else target.ModuleList(children.values()))
    else:
        attrs, readers, affine = LAYERS[name]
        kwargs = {attr: getattr(module, attr) for attr in attrs}
        if "normalized_shape" in kwargs:
            kwargs["normalized_shape"] = tuple(kwargs["normalized_shape"])
        kwargs.update({arg: read(module, affine) for arg, read in readers.items()})
        converted = getattr(target, name)(**kwargs)
        _copy_state(module, converted, direction)
    converted.training = module.training  # this module only: children keep their own mode
    return converted


def _source_library(direction: str):
    if direction == "from_torch":
        import torch.nn

        return torch.nn
    return nn


def _copy_state(source, converted, direction: str) -> None:
    state = source.state_dict()
    if direction == "from_torch":
        floats = [v for v in state.values() if v.is_floating_point()]
        if floats:
            converted.to(np.dtype(str(floats[0].dtype).replace("torch.", "")))
        converted.load_state_dict(state)
        return
    import torch

    floats = [v for v in state.values() if v.dtype.kind == "f"]
    if floats:
        converted.to(getattr(torch, floats[0].dtype.name))
    converted.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})


def from_torch(module) -> nn.Module:
    """Our equivalent of a torch.nn module tree, weights and buffers copied, same mode."""
    return _convert(module, nn, "model", "from_torch")


def to_torch(module: nn.Module):
    """The torch.nn equivalent of our module tree, weights and buffers copied, same mode."""
    import torch.nn

    return _convert(module, torch.nn, "model", "to_torch")
