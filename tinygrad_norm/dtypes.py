"""PyTorch's type promotion for Tensor arithmetic (NumPy's rules differ, and silently).

Categories rank bool < integer < floating. Operands are of three priorities: tensors with
dimensions, 0-d tensors, and Python or NumPy scalars ("wrapped numbers"). Within a priority
dtypes combine by `promote_types`; across priorities a lower one only matters when its
category is higher: float32 tensor * float64 0-d tensor is float32, int64 tensor * 0.5 is the
default float dtype (float32), int8 tensor + 1000 stays int8 (and wraps, as in PyTorch).
"""

from __future__ import annotations

import numpy as np

DEFAULT_FLOAT = np.dtype(np.float32)
_UNPROMOTABLE = {np.dtype(t) for t in (np.uint16, np.uint32, np.uint64)}


def _category(dtype: np.dtype) -> int:
    return {"b": 0, "u": 1, "i": 1, "f": 2}[dtype.kind]


def promote_types(a: np.dtype, b: np.dtype) -> np.dtype:
    """torch.promote_types for bool, integer and floating dtypes."""
    a, b = np.dtype(a), np.dtype(b)
    if a == b:
        return a
    if a in _UNPROMOTABLE or b in _UNPROMOTABLE:
        raise RuntimeError(f"Promotion for uint16, uint32, uint64 types is not supported, "
                           f"attempted to promote {a} and {b}")
    if _category(a) != _category(b) and 2 in (_category(a), _category(b)):
        return a if a.kind == "f" else b  # int64 with float16 is float16, unlike NumPy
    return np.promote_types(a, b)  # NumPy agrees within a category and for bool


def scalar_dtype(value) -> np.dtype:
    """The dtype PyTorch gives a Python or NumPy scalar in arithmetic (its category's default).
    PyTorch 2.13 reads a NumPy bool as a float (int tensor + np.True_ is float32): so do we."""
    if isinstance(value, np.bool_):
        return DEFAULT_FLOAT
    if isinstance(value, bool):
        return np.dtype(bool)
    if isinstance(value, (int, np.integer)):
        return np.dtype(np.int64)
    if isinstance(value, (float, np.floating)):
        return DEFAULT_FLOAT
    raise TypeError(f"unsupported operand type {type(value).__name__}: tensors hold bool, "
                    "integer or floating values (complex numbers are not supported)")


def _combine(higher: np.dtype | None, lower: np.dtype | None) -> np.dtype | None:
    """ATen's combine_categories: the higher priority wins unless the lower is of a higher
    category (a bool higher always promotes)."""
    if higher is None:
        return lower
    if lower is None or higher.kind == "f":
        return higher
    if higher.kind == "b" or lower.kind == "f":
        return promote_types(higher, lower)
    return higher


def result_type(*operands) -> np.dtype:
    """The dtype of an elementwise op on `operands`: arrays (dims or 0-d) or scalars."""
    states: list[np.dtype | None] = [None, None, None]  # dimensioned, 0-d, scalars
    for operand in operands:
        if isinstance(operand, np.ndarray) or hasattr(operand, "__cuda_array_interface__"):
            slot, dtype = (0 if operand.ndim else 1), operand.dtype
        else:
            slot, dtype = 2, scalar_dtype(operand)
        states[slot] = dtype if states[slot] is None else promote_types(states[slot], dtype)
    return _combine(states[0], _combine(states[1], states[2]))


def scalar_array(value, dtype: np.dtype) -> np.ndarray:
    """A 0-d array of `value` in `dtype`; integers wrap to a narrower integer dtype, as in
    PyTorch, but one that does not fit int64 is refused."""
    if isinstance(value, int) and not isinstance(value, bool) and not (
            -(2**63) <= value < 2**63):
        raise RuntimeError(f"value {value} cannot be converted to type int64 without overflow")
    scalar_dtype(value)  # refuses complex and other types
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(value).astype(dtype)
