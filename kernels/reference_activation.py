"""Float64 NumPy reference of the elementwise activation kernels: the spec (re-exported by
kernels/reference.py). Arrays are flat (1-D); results are float64."""

from __future__ import annotations

import numpy as np


def relu_forward(x: np.ndarray) -> np.ndarray:
    """y = 0 where x < 0, else x (NaN and -0.0 pass on, as in PyTorch's relu)."""
    x = np.asarray(x, np.float64)
    return np.where(x < 0, 0.0, x)


def relu_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = 0 where y <= 0, else dy (a NaN y passes dy on, as PyTorch's threshold_backward)."""
    return np.where(np.asarray(y, np.float64) <= 0, 0.0, np.asarray(dy, np.float64))


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    """y = 1/(1 + exp(-x)), written as exp(x)/(1 + exp(x)) for x < 0 (no overflow)."""
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = dy·y·(1 - y), y the forward's output."""
    y = np.asarray(y, np.float64)
    return np.asarray(dy, np.float64) * y * (1.0 - y)


def tanh_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = dy·(1 - y^2), y = tanh(x)."""
    y = np.asarray(y, np.float64)
    return np.asarray(dy, np.float64) * (1.0 - y * y)
