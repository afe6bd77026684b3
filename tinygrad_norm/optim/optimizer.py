"""Optimizer base: parameter groups, per-parameter state, zero_grad, state_dict round trips."""

from __future__ import annotations

import copy
from typing import Iterable

import numpy as np

from ..tensor import Tensor


class Optimizer:
    """Holds parameter groups (dicts with "params" and hyper-parameters) and per-parameter state.

    Subclasses implement `_update(param, grad, state, group)`, which changes `param.data` in
    place, and `_update_group(params, states, group)`, the same for a whole group on the cpu
    device in one kernel call.
    State is keyed by the parameter itself (hashed by identity), as in PyTorch, so that
    `copy.deepcopy` of an optimizer maps its state onto the copied parameters.
    """

    # state entries that are counters, not per-element buffers: Python numbers after a reload
    _scalar_state = frozenset({"step"})

    def __init__(self, params: Iterable, defaults: dict) -> None:
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups: list[dict] = []
        self.state: dict[Tensor, dict] = {}
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        group = dict(group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise ValueError("optimizer can only optimize Tensors that require grad")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise TypeError(f"unexpected optimizer option(s) {sorted(unknown)}")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.data[...] = 0

    def step(self) -> None:
        """Update every parameter that has a gradient: on the cpu device one kernel call per
        group (kernels/cpu), elsewhere, or for arrays the kernels do not take (strided,
        float16), the NumPy/CuPy update of `_update`, one parameter at a time."""
        from kernels.validation import update_ready

        for group in self.param_groups:
            ready, states = [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(p, {})
                if p.device == "cpu" and update_ready(
                        p.data, p.grad.data, *(state.get(k) for k in self._buffers)):
                    ready.append(p)
                    states.append(state)
                else:
                    self._update(p, p.grad.data, state, group)
                p._version_counter.value += 1  # an in-place change, as PyTorch counts it
            if ready:
                self._update_group(ready, states, group)

    # per-parameter state arrays that the kernels update in place
    _buffers: tuple[str, ...] = ()

    def _update(self, param: Tensor, grad: np.ndarray, state: dict, group: dict) -> None:
        raise NotImplementedError

    def _update_group(self, params: list, states: list, group: dict) -> None:
        """Update `params` (host arrays the kernels take, each with a gradient) in one call."""
        raise NotImplementedError

    # -------------------------------------------------------------- state dicts (PyTorch layout)

    def _indexed_params(self) -> list:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict:
        """{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}, as PyTorch."""
        params = self._indexed_params()
        state = {
            i: {k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v
                for k, v in self.state[p].items()}
            for i, p in enumerate(params) if p in self.state
        }
        groups, start = [], 0
        for group in self.param_groups:
            entry = {k: v for k, v in group.items() if k != "params"}
            entry["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(entry)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
            len(saved["params"]) != len(ours["params"])
            for saved, ours in zip(groups, self.param_groups)
        ):
            raise ValueError(
                "loaded optimizer state has a different number of parameter groups or "
                "parameters than this optimizer"
            )
        params = self._indexed_params()
        new_state = {}
        for index, entry in state_dict["state"].items():
            param = params[int(index)]
            restored = {}
            for key, value in entry.items():
                if isinstance(value, np.ndarray) and key in self._scalar_state:
                    value = value.item()
                elif isinstance(value, np.ndarray):
                    # a buffer updated in place: it must stay an array, 0-d ones included
                    if value.shape != param.shape:
                        raise ValueError(
                            f"optimizer state {key!r} of parameter {index} has shape "
                            f"{value.shape}, expected {param.shape}"
                        )
                    value = np.array(value, dtype=param.dtype, copy=True)
                restored[key] = value
            new_state[param] = restored
        for saved, ours in zip(groups, self.param_groups):
            for key, value in saved.items():
                if key != "params":
                    ours[key] = copy.deepcopy(tuple(value) if isinstance(value, list) else value)
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])
