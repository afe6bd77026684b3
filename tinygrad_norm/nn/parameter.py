"""Parameter: a Tensor that a Module registers as a learnable weight when assigned to it."""

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
