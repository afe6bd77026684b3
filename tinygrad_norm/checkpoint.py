"""save / load: checkpoints as .npz files that never run code and never half-overwrite
(.safetensors files, chosen by the extension, are tinygrad_norm.safetensors_io's).

A flat dict of arrays (a module's state_dict) is stored under its own keys, so `np.load` in any
program reads it: `{"0.weight": ..., "1.running_mean": ...}`. Nested dicts and lists with
number, bool, string or None leaves (an optimizer's state_dict) are stored as their arrays plus
one JSON entry describing the structure. Loading uses `allow_pickle=False`: a file that needs
pickle is refused, so an untrusted checkpoint cannot execute anything.

Saving goes through `atomic_write` (a second format can reuse it): a temporary file in the
destination folder, flushed to disk and renamed over the destination, so a crash at any moment
leaves either the old file or the new one, whole. Loading checks every member's declared size
against what the file holds and what memory is available before reading any data.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np

from . import safetensors_io
from .atomic_file import atomic_write
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


_MAX_KEY_BYTES = 65535 - len(".npy")  # a zip member name's length field is 16 bits


def _check_key(key: str) -> None:
    if "\0" in key:
        raise ValueError(f"save: key {key[:50]!r} contains a NUL character, which a zip member "
                         "name cannot hold")
    if len(key.encode()) > _MAX_KEY_BYTES:
        raise ValueError(f"save: key {key[:50]!r}... is {len(key.encode())} bytes long; a zip "
                         f"member name holds at most {_MAX_KEY_BYTES}")


def _write_npz(f, arrays: dict) -> None:
    """np.savez's format (one .npy member per key, stored), written member by member:
    np.savez(f, **arrays) takes some keys ('file', 'allow_pickle') as its own arguments."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


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
        _check_key(key)
        if np.asarray(array).dtype.hasobject:
            raise TypeError(f"save: entry {key!r} holds Python objects; only numeric arrays")
    atomic_write(path, lambda f: _write_npz(f, arrays))


def _available_memory() -> int:
    """Bytes of memory available now (Linux: MemAvailable), or no limit where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**63


def _check_members(archive: zipfile.ZipFile) -> None:
    """Refuse, before reading any data, a member whose .npy header declares more data than the
    member holds, and members whose inflated size exceeds the memory available."""
    members = archive.infolist()
    total = sum(info.file_size for info in members)
    if total > _available_memory():
        raise ValueError(f"its members inflate to {total} bytes, more than the memory "
                         "available")
    for info in members:
        if not info.filename.endswith(".npy"):
            continue
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(member)
            if dtype.hasobject:
                continue  # refused by allow_pickle=False below
            declared = math.prod(shape) * dtype.itemsize + member.tell()
            if declared != info.file_size:
                raise ValueError(f"entry {info.filename!r} declares shape {shape} of {dtype} "
                                 f"({declared} bytes) but holds {info.file_size} bytes")


def load(path) -> dict:
    """Read a checkpoint written by save (or any pickle-free .npz, or any .safetensors file)
    into a dict of arrays."""
    path = Path(path)
    if path.suffix == safetensors_io.SUFFIX:
        return safetensors_io.load(path)
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(archive)
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
        state = _decode(structure, arrays)
    except (ValueError, KeyError, AttributeError, TypeError, RecursionError) as err:
        raise ValueError(f"{path} has a damaged structure entry: {type(err).__name__}: "
                         f"{str(err)[:200]}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a dict (a state_dict)")
    return state
