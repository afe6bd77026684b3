"""Checkpoints as .safetensors files, the format of Hugging Face and `safetensors.torch`.

A flat dict of named arrays (a module's state_dict) goes through the `safetensors` package's
NumPy API, so PyTorch reads our file with `safetensors.torch.load_file` and we read its files
with no conversion on either side. The header says {"format": "pt"}, which Hugging Face's
loaders expect of a PyTorch checkpoint. The format holds only arrays, never code, so loading
runs nothing. Nested state (an optimizer's) does not fit it: that stays in .npz.

Saving writes the bytes to a temporary file in the destination folder, flushes it to disk and
renames it over the destination: a crash leaves either the old file or the new one, whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic_file import atomic_write
from .tensor import Tensor

SUFFIX = ".safetensors"


def _package():
    try:
        import safetensors.numpy
    except ImportError as err:
        raise ImportError("saving or loading .safetensors needs the safetensors package: "
                          "pip install 'tinygrad_norm[safetensors]'") from err
    return safetensors


def save(state: dict, path: Path) -> None:
    """Write a flat dict {name: array or Tensor} to `path` as safetensors."""
    arrays = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, (np.ndarray, Tensor)):
            raise TypeError(
                f"save: a .safetensors file holds a flat dict of named arrays (a state_dict); "
                f"entry {key!r} is a {type(value).__name__}. Save nested state such as an "
                f"optimizer's to .npz instead")
        array = value.detach().numpy() if isinstance(value, Tensor) else value
        arrays[key] = np.ascontiguousarray(array)
    package = _package()
    try:
        data = package.numpy.save(arrays, metadata={"format": "pt"})
    except package.SafetensorError as err:
        raise TypeError(f"save: {path}: {err}") from None
    atomic_write(path, lambda f: f.write(data))


def load(path: Path) -> dict:
    """Read a .safetensors file into a dict of NumPy arrays."""
    data = path.read_bytes()  # FileNotFoundError stays what it is
    package = _package()
    try:
        return package.numpy.load(data)
    except (package.SafetensorError, ValueError, TypeError) as err:
        raise ValueError(f"{path} is not a readable .safetensors checkpoint: {err}") from None
