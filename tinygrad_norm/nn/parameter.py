"""Parameter: a Tensor that a Module registers as a learnable weight when assigned to it; and
the uninitialized parameters and buffers of the Lazy modules."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that requires grad by default and that `Module.__setattr__` registers.

    `Parameter(tensor)` shares the tensor's array (no copy), as in PyTorch.
    """

    def __init__(self, data=None, requires_grad: bool = True) -> None:
        if data is None:
            data = np.empty(0, dtype=np.float32)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class _Uninitialized:
    """A tensor whose shape is not known yet (PyTorch's UninitializedTensorMixin): it holds an
    empty array that keeps the dtype and device, and becomes `cls_to_become` once
    materialized (by the module's first call or by load_state_dict)."""

    cls_to_become: type

    def materialize(self, array) -> None:
        """Take `array` (already of the right dtype and device) as the data; no longer lazy."""
        self.data = array
        self.__class__ = self.cls_to_become

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class UninitializedParameter(_Uninitialized, Parameter):
    cls_to_become = Parameter

    def __init__(self, like: Tensor) -> None:
        Parameter.__init__(self, like.data[:0].reshape(0), requires_grad=like.requires_grad)
        self.device = like.device


class UninitializedBuffer(_Uninitialized, Tensor):
    cls_to_become = Tensor

    def __init__(self, like: Tensor) -> None:
        Tensor.__init__(self, like.data[:0].reshape(0), device=like.device)


def is_uninitialized(tensor) -> bool:
    return isinstance(tensor, _Uninitialized)
