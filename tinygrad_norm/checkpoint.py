"""save / load: checkpoints as .npz files that never run code and never half-overwrite
(.safetensors files, chosen by the extension, are tinygrad_norm.safetensors_io's).

A flat dict of arrays (a module's state_dict) is stored under its own keys, so `np.load` in any
program reads it: `{"0.weight": ..., "1.running_mean": ...}`. Nested dicts and lists with
number, bool, string or None leaves (an optimizer's state_dict) are stored as their arrays plus
one JSON entry describing the structure. Loading uses `allow_pickle=False`: a file that needs
pickle is refused, so an untrusted checkpoint cannot execute anything.

Saving writes a temporary file in the destination folder, flushes it to disk and renames it over
the destination: a crash at any moment leaves either the old file or the new one, whole.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import safetensors_io
from .tensor import Tensor

_STRUCTURE_KEY = "__tinygrad_norm_structure__"


def _encode(obj, arrays: dict):
    """Replace array leaves by references into `arrays`; return a JSON-able description."""
    if isinstance(obj, Tensor):
        obj = obj.detach().data
    if isinstance(obj, np.ndarray) or isinstance(obj, np.generic):
        key = f"array_{len(arrays)}"
        arrays[key] = np.asarray(obj)
        return {"array": key}
    if isinstance(obj, dict):
        return {"dict": [[_encode_key(k), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"tuple" if isinstance(obj, tuple) else "list": [_encode(v, arrays) for v in obj]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    raise TypeError(
        f"save: cannot store a {type(obj).__name__}; expected arrays, Tensors, numbers, "
        f"strings, None, and dicts/lists of them"
    )


def _encode_key(key):
    if isinstance(key, (bool, int, str)):
        return key
    raise TypeError(f"save: dict keys must be str or int, got {type(key).__name__}")


def _decode(node, arrays):
    (kind, value), = node.items()
    if kind == "array":
        return arrays[value]
    if kind == "dict":
        return {k: _decode(v, arrays) for k, v in value}
    if kind == "list":
        return [_decode(v, arrays) for v in value]
    if kind == "tuple":
        return tuple(_decode(v, arrays) for v in value)
    return value


def _is_flat_array_dict(obj) -> bool:
    return isinstance(obj, dict) and all(
        isinstance(k, str) and k != _STRUCTURE_KEY and isinstance(v, (np.ndarray, Tensor))
        for k, v in obj.items()
    )


def save(obj, path) -> None:
    """Write a dict of arrays (or a nested state such as an optimizer's) to `path` (.npz), or
    a flat dict of arrays to a `.safetensors` path."""
    if not isinstance(obj, dict):
        raise TypeError(f"save: expected a dict (a state_dict), got {type(obj).__name__}")
    path = Path(path)
    if path.suffix == safetensors_io.SUFFIX:
        return safetensors_io.save(obj, path)
    if _is_flat_array_dict(obj):
        arrays = {k: v.detach().data if isinstance(v, Tensor) else v for k, v in obj.items()}
    else:
        arrays = {}
        structure = json.dumps(_encode(obj, arrays))
        arrays[_STRUCTURE_KEY] = np.frombuffer(structure.encode(), dtype=np.uint8)
    for key, array in arrays.items():
        if np.asarray(array).dtype.hasobject:
            raise TypeError(f"save: entry {key!r} holds Python objects; only numeric arrays")
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load(path) -> dict:
    """Read a checkpoint written by save (or any pickle-free .npz, or any .safetensors file)
    into a dict of arrays."""
    path = Path(path)
    if path.suffix == safetensors_io.SUFFIX:
        return safetensors_io.load(path)
    try:
        archive = np.load(path, allow_pickle=False)
        # checked before `with`: a bare .npy loads as an ndarray, which is no context manager
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single .npy array, not a dict of arrays")
        with archive:
            arrays = {key: archive[key] for key in archive.files}
        for key, value in arrays.items():
            if not isinstance(value, np.ndarray):  # NpzFile hands non-.npy members as bytes
                raise ValueError(f"entry {key!r} is not a .npy array")
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ValueError(
            f"{path} is not a readable tinygrad_norm checkpoint (.npz without pickled objects): "
            f"{err}"
        ) from None
    if _STRUCTURE_KEY not in arrays:
        return arrays
    try:
        structure = json.loads(arrays.pop(_STRUCTURE_KEY).tobytes().decode())
        return _decode(structure, arrays)
    except (ValueError, KeyError, AttributeError, TypeError) as err:
        raise ValueError(f"{path} has a damaged structure entry: {err}") from None
