"""tinygrad_norm.nn.utils: helpers around the layers, with PyTorch's names (utils.rnn)."""

from . import rnn

__all__ = ["rnn"]
