"""The models the examples train: an MLP and a small CNN, each with a choice of normalization.

Every hidden block is affine -> [norm] -> activation, so the norm layer sees exactly the
pre-activation whose drift the ICS argument is about.
"""

from __future__ import annotations

from .. import nn

MLP_NORMS = ("none", "batch", "layer", "rms")
CNN_NORMS = ("none", "batch", "group", "instance", "layer", "renorm")
INITS = ("default", "normal")
ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}

# Wu & He use 32 groups of a wide ResNet; our narrow CNN (16-64 channels) keeps their spirit
# with 8 groups, i.e. 2 to 8 channels per group.
CNN_GROUPS = 8


def mlp_norm(norm: str, width: int) -> nn.Module:
    if norm == "none":
        return nn.Identity()
    if norm == "batch":
        return nn.BatchNorm1d(width)
    if norm == "layer":
        return nn.LayerNorm(width)
    if norm == "rms":
        return nn.RMSNorm(width)
    raise ValueError(f"norm must be one of {MLP_NORMS}, got {norm!r}")


def cnn_norm(norm: str, channels: int, renorm_steps: int = 1000) -> nn.Module:
    """The norm layer of a CNN block. "renorm" is Batch Renormalization with Ioffe's schedule
    scaled to a run of `renorm_steps` steps: plain BatchNorm for the first 10 %, then rmax
    relaxed to 3 and dmax to 5 by the middle of the run."""
    if norm == "none":
        return nn.Identity()
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(min(CNN_GROUPS, channels), channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "layer":
        # LayerNorm of a feature map normalizes over (C, H, W): GroupNorm with one group, which
        # keeps the per-channel scale and shift that Wu & He compare against.
        return nn.GroupNorm(1, channels)
    if norm == "renorm":
        warmup = renorm_steps // 10
        return nn.BatchRenorm2d(channels, rmax=3.0, dmax=5.0, warmup_steps=warmup,
                                rmax_ramp_steps=renorm_steps // 2 - warmup,
                                dmax_ramp_steps=renorm_steps // 2 - warmup)
    raise ValueError(f"norm must be one of {CNN_NORMS}, got {norm!r}")


def make_mlp(norm: str = "batch", width: int = 64, depth: int = 2, activation: str = "relu",
             in_features: int = 64, classes: int = 10) -> nn.Sequential:
    """`depth` hidden blocks Linear -> norm -> activation, then a Linear classifier."""
    layers, features = [], in_features
    for _ in range(depth):
        layers += [nn.Linear(features, width), mlp_norm(norm, width), ACTIVATIONS[activation]()]
        features = width
    return nn.Sequential(*layers, nn.Linear(features, classes))


def make_cnn(norm: str = "batch", channels: int = 16, classes: int = 10,
             renorm_steps: int = 1000) -> nn.Sequential:
    """Three 3x3 conv blocks on 8x8 digits at 8x8, 4x4 and 2x2 (max-pooling between them), then a
    Linear classifier. The last norm sees batch x 2 x 2 values per channel: at batch 2 only 8,
    the small-batch regime in which Wu & He found BatchNorm's statistics too noisy."""
    c1, c2, c3 = channels, 2 * channels, 4 * channels

    def block_norm(c: int) -> nn.Module:
        return cnn_norm(norm, c, renorm_steps)
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1), block_norm(c1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), block_norm(c2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1), block_norm(c3), nn.ReLU(),
        nn.Flatten(), nn.Linear(c3 * 2 * 2, classes),
    )


def initialize(model: nn.Module, init: str) -> nn.Module:
    """"default" keeps PyTorch's Kaiming-uniform init; "normal" draws every Linear and Conv2d
    weight from N(0, 1), the setting of the lecture's scale argument (Var(Wx) = n Var(x))."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if init == "normal":
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.normal_(module.weight)
    return model
