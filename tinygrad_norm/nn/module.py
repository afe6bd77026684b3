"""Module: the base class of layers; it tracks parameters, buffers and submodules by name.

Assigning a Parameter, a Module, or a Tensor to an attribute already registered as a buffer
stores it in the ordered dicts `_parameters`, `_modules` or `_buffers`, so that iteration
order (and therefore `state_dict()` keys such as "0.weight", "1.running_mean") is the
definition order, exactly as in PyTorch.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..device import to_device, to_host
from ..tensor import Tensor, _normalize_device
from .parameter import Parameter, is_uninitialized

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])

_hook_ids = itertools.count()


class RemovableHandle:
    """Returned by register_*_hook; `remove()` unregisters the hook (calling it twice is fine)."""

    def __init__(self, hooks: dict) -> None:
        self.hooks = hooks
        self.id = next(_hook_ids)

    def remove(self) -> None:
        self.hooks.pop(self.id, None)



def _addindent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _as_array(value) -> np.ndarray:
    """A state_dict value as an array: our Tensors, NumPy arrays, or CPU torch tensors."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # torch.Tensor without importing torch
        return value.detach().cpu().numpy()
    return np.asarray(value)


class Module:
    """Base class of every layer and model; subclasses set attributes and define `forward`."""

    training: bool

    def __init__(self) -> None:
        # object.__setattr__ because our own __setattr__ reads these dicts
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # ------------------------------------------------------------------ registration

    def _check_initialized(self, name: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() call: call super().__init__() "
                f"first in {type(self).__name__}.__init__"
            )

    def _check_new_name(self, name: str, kind: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if name == "" or "." in name:
            raise KeyError(f"{kind} name can't be empty or contain '.', got {name!r}")
        if hasattr(self, name) and name not in getattr(self, f"_{kind}s", {}):
            raise KeyError(f"attribute {name!r} already exists")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or a None placeholder, which state_dict skips) under `name`."""
        self._check_initialized(name)
        self._check_new_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{type(param).__name__}' object to parameter {name!r} "
                f"(nn.Parameter or None required)"
            )
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add a non-learnable tensor (e.g. running_mean); non-persistent ones skip state_dict."""
        self._check_initialized(name)
        self._check_new_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"cannot assign '{type(tensor).__name__}' object to buffer {name!r} "
                f"(Tensor or None required)"
            )
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module under `name` (Sequential uses "0", "1", ...)."""
        self._check_initialized(name)
        self._check_new_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            self._check_initialized(name)
            self._forget(name)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as parameter {name!r} "
                    f"(nn.Parameter or None expected)"
                )
            params[name] = None
        elif isinstance(value, Module):
            self._check_initialized(name)
            self._forget(name)
            self._modules[name] = value
        elif params is not None and name in self._modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as child module {name!r} "
                    f"(nn.Module or None expected)"
                )
            self._modules[name] = None
        elif params is not None and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as buffer {name!r} "
                    f"(Tensor or None expected)"
                )
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str) -> None:
        """Drop `name` from every registry before it is registered as something else."""
        self.__dict__.pop(name, None)
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent_buffers_set.discard(name)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails, i.e. for registered names
        for registry in ("_parameters", "_buffers", "_modules"):
            values = self.__dict__.get(registry)
            if values is not None and name in values:
                return values[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self) -> list:
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))

    # ------------------------------------------------------------------ traversal

    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """(qualified name, module) for self and every descendant, depth first, each once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            child_prefix = f"{prefix}.{name}" if prefix else name
            yield from module.named_modules(memo, child_prefix, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def _named_members(self, registry: str, prefix: str, recurse: bool,
                       remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(qualified name, parameter), a shared parameter only once, as in PyTorch."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call fn on every submodule (children first) and then on self; return self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ modes and gradients

    def train(self, mode: bool = True) -> Module:
        """Set training mode on self and every descendant (Dropout and BatchNorm read it)."""
        if not isinstance(mode, bool):
            raise TypeError(f"training mode is expected to be a bool, got {type(mode).__name__}")
        self.training = mode
        for module in self.children():
            module.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.parameters():
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad.data = np.zeros_like(param.grad.data)

    # ------------------------------------------------------------------ dtype and device

    def to(self, device=None, dtype=None) -> Module:
        """Move parameters and buffers to `device` and cast the floating-point ones to
        `dtype`, in place; return self.

        Each Parameter keeps its identity (only its `.data` and `.device` are replaced), so
        optimizers built before the move still see the module's parameters. Integer buffers
        (e.g. num_batches_tracked) keep their dtype, as in PyTorch. `to(np.float64)` works.
        """
        if isinstance(device, (type, np.dtype)):
            device, dtype = None, device
        if device is not None:
            self._move_to(_normalize_device(device))
        if dtype is None:
            return self
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"Module.to only accepts floating point dtypes, got {dtype}")
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            if tensor.dtype.kind == "f":
                tensor.data = tensor.data.astype(dtype)
                if tensor.grad is not None:
                    tensor.grad.data = tensor.grad.data.astype(dtype)
        return self

    def double(self) -> Module:
        return self.to(dtype=np.float64)

    def float(self) -> Module:
        return self.to(dtype=np.float32)

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self) -> Module:
        return self.to("cuda")

    def _move_to(self, device: str) -> None:
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            if tensor.device == device:
                continue
            tensor.data = to_device(tensor.data, device)
            tensor.device = device
            if tensor.grad is not None:
                tensor.grad.data = to_device(tensor.grad.data, device)
                tensor.grad.device = device

    # ------------------------------------------------------------------ state dict

    def _state_tensors(self) -> OrderedDict[str, Tensor]:
        """Every tensor that state_dict saves, in PyTorch's order: per module, params then
        persistent buffers, parents before children."""
        tensors = OrderedDict()
        for prefix, module in self.named_modules(remove_duplicate=False):
            head = f"{prefix}." if prefix else ""
            for name, param in module._parameters.items():
                if param is not None:
                    tensors[head + name] = param
            for name, buffer in module._buffers.items():
                if buffer is not None and name not in module._non_persistent_buffers_set:
                    tensors[head + name] = buffer
        return tensors

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and persistent buffer as NumPy arrays, PyTorch's keys."""
        tensors = self._state_tensors()
        # a Lazy module's uninitialized tensors have no value yet: NumPy cannot say "unknown
        # shape", so they are left out (PyTorch stores placeholder objects)
        return OrderedDict((key, to_device(t.data, "cpu")) for key, t in tensors.items()
                           if not is_uninitialized(t))

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values into the existing parameters and buffers, in place, cast to their dtype.

        Values may be NumPy arrays, Tensors, CPU torch tensors, or anything np.asarray takes.
        Everything is checked before anything is written, so a failed load changes nothing.
        Missing and unexpected keys are errors when strict (else returned); a shape mismatch
        is always an error.
        """
        own = self._state_tensors()
        # as PyTorch's BatchNorm: a checkpoint without num_batches_tracked keeps the own count
        missing = [k for k in own if k not in state_dict
                   and k.rsplit(".", 1)[-1] != "num_batches_tracked"]
        unexpected = [k for k in state_dict if k not in own]
        errors, updates = [], []
        for key, tensor in own.items():
            if key not in state_dict:
                continue
            try:
                array = _as_array(state_dict[key])
                if array.dtype.hasobject:  # None, or a list of objects: not a number at all
                    raise TypeError(f"got {type(state_dict[key]).__name__}, expected an array "
                                    f"of shape {tensor.shape}")
                cast = array.astype(tensor.dtype)
            except (TypeError, ValueError, RuntimeError) as exc:
                errors.append(f"value for {key!r} can't be converted to {tensor.dtype}: {exc}")
                continue
            if is_uninitialized(tensor):  # a Lazy module's tensor takes the loaded shape
                updates.append((tensor, cast.copy()))
                continue
            if array.shape != tensor.shape:
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {array.shape} from "
                    f"checkpoint, the shape in current model is {tensor.shape}."
                )
                continue
            updates.append((tensor, cast))
        if strict and unexpected:
            errors.insert(0, "Unexpected key(s) in state_dict: "
                          + ", ".join(f'"{k}"' for k in unexpected) + ".")
        if strict and missing:
            errors.insert(0, "Missing key(s) in state_dict: "
                          + ", ".join(f'"{k}"' for k in missing) + ".")
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(errors)
            )
        for tensor, cast in updates:
            if is_uninitialized(tensor):
                tensor.materialize(to_device(cast, tensor.device))
            elif tensor.device != "cpu":  # values from any device, copied explicitly
                tensor.data[...] = to_device(to_host(cast), tensor.device)
            elif tensor.data.flags.writeable:
                np.copyto(tensor.data, cast)
            else:  # e.g. a broadcast view assigned by the user: replace rather than write
                tensor.data = cast.copy()
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ calling and hooks

    def register_forward_pre_hook(self, hook: Callable) -> RemovableHandle:
        """hook(module, args) runs before forward; a non-None return replaces the args."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook: Callable) -> RemovableHandle:
        """hook(module, args, output) runs after forward; a non-None return replaces output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def __call__(self, *args, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    # ------------------------------------------------------------------ printing

    def extra_repr(self) -> str:
        """The constructor arguments shown inside the parentheses of repr(); override it."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): {_addindent(repr(module), 2)}"
                       for name, module in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                body = extra_lines[0]
            else:
                body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{type(self).__name__}({body})"
