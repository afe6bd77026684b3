"""The normalization layer configurations every layer test runs: the PyTorch parity and
gradcheck tests (test_normalization.py) and the cuda-device tests (test_cuda_device.py)."""

# (our class, constructor args, constructor kwargs, input shape)
CONFIGS = [
    ("BatchNorm1d", (3,), {}, (7, 3)),
    ("BatchNorm1d", (5,), {"momentum": None}, (4, 5, 13)),
    ("BatchNorm1d", (1,), {"affine": False}, (2, 1, 1)),
    ("BatchNorm2d", (3,), {}, (4, 3, 5, 2)),
    ("BatchNorm2d", (2,), {"track_running_stats": False}, (3, 2, 7, 1)),
    ("BatchNorm2d", (4,), {"affine": False, "momentum": 0.3, "eps": 1e-3}, (2, 4, 3, 3)),
    ("BatchNorm3d", (2,), {}, (2, 2, 3, 2, 5)),
    ("InstanceNorm1d", (3,), {}, (4, 3, 5)),
    ("InstanceNorm1d", (3,), {"affine": True}, (3, 13)),
    ("InstanceNorm2d", (3,), {"affine": True, "track_running_stats": True}, (2, 3, 4, 5)),
    ("InstanceNorm2d", (2,), {"track_running_stats": True, "momentum": None}, (3, 2, 3, 3)),
    ("InstanceNorm3d", (2,), {"affine": True}, (2, 2, 3, 2, 2)),
    ("LayerNorm", (5,), {}, (3, 5)),
    ("LayerNorm", ((3, 4),), {}, (2, 7, 3, 4)),
    ("LayerNorm", (13,), {"elementwise_affine": False}, (2, 13)),
    ("LayerNorm", (6,), {"bias": False, "eps": 1e-2}, (1, 6)),
    ("LayerNorm", (1,), {}, (4, 1)),
    ("GroupNorm", (2, 6), {}, (2, 6, 3, 4)),
    ("GroupNorm", (3, 3), {"affine": False}, (4, 3, 7)),
    ("GroupNorm", (1, 5), {"eps": 1e-3}, (3, 5)),
    ("GroupNorm", (7, 14), {}, (1, 14, 2, 3, 1)),
    ("RMSNorm", (4,), {}, (2, 5, 4)),
    ("RMSNorm", ((2, 3),), {"eps": 1e-3}, (4, 2, 3)),
    ("RMSNorm", (7,), {"elementwise_affine": False}, (3, 7)),
]
IDS = [f"{c[0]}{c[1]}{c[2]}{c[3]}".replace(" ", "") for c in CONFIGS]
