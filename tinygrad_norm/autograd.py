"""Reverse-mode autograd: the Function base class, its context, no_grad, and the backward walk.

Every differentiable operation is a subclass of `Function` with two static methods:

    forward(ctx, *args, **kwargs) -> np.ndarray     # Tensor args arrive as plain arrays
    backward(ctx, grad_output)    -> one gradient per positional arg (None where there is none)

`Function.apply(*args, **kwargs)` unwraps Tensor arguments, records their common device as
`ctx.device` (forward picks its kernels by it; a forward that moves data, ToDevice, sets it to
where its output lives), runs forward, and, when gradients are enabled and some input requires
grad, links the output Tensor to a context node so that `Tensor.backward()` can send gradients
back through `backward`.
"""

from __future__ import annotations

import functools
import heapq
import inspect
import itertools
import sys
import threading

import numpy as np

from .device import as_array


class _State(threading.local):
    grad_enabled = True  # each thread starts with gradients on, as in PyTorch


_state = _State()  # a class default, not getattr(..., True): a missing attribute costs 0.5 us


def is_grad_enabled() -> bool:
    return _state.grad_enabled


class _GradMode:
    """Base of no_grad / enable_grad: a context manager and a decorator, like PyTorch's.

    The mode to restore is kept per entry (a per-thread stack), never in one attribute of
    the instance: `@no_grad()` makes one instance that every call of the decorated function
    shares, recursive and concurrent calls included. A decorated generator runs each of its
    steps in the mode and gives the caller back its own mode between steps, as PyTorch does.
    `@no_grad` without parentheses works too.
    """

    enabled: bool

    def __new__(cls, function=None):
        self = super().__new__(cls)
        self._entries = threading.local()
        return self if function is None else self(function)

    def __enter__(self) -> "_GradMode":
        stack = self._entries.__dict__.setdefault("stack", [])
        stack.append(is_grad_enabled())
        _state.grad_enabled = self.enabled
        return self

    def __exit__(self, *exc) -> None:
        _state.grad_enabled = self._entries.stack.pop()

    def __call__(self, function):
        if inspect.isgeneratorfunction(function):
            @functools.wraps(function)
            def generator(*args, **kwargs):
                return (yield from _in_mode(self, function(*args, **kwargs)))
            return generator

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with self:
                return function(*args, **kwargs)
        return wrapper


def _in_mode(mode: _GradMode, steps):
    """Run each step of the generator `steps` inside `mode`, passing send/throw/close on."""
    with mode:
        request = None
        try:
            response = steps.send(None)
        except StopIteration as done:
            return done.value
    while True:
        try:
            request = yield response
        except GeneratorExit:
            with mode:
                steps.close()
            raise
        except BaseException as error:
            with mode:
                try:
                    response = steps.throw(error)
                except StopIteration as done:
                    return done.value
        else:
            with mode:
                try:
                    response = steps.send(request)
                except StopIteration as done:
                    return done.value


class no_grad(_GradMode):
    """Context manager and decorator that disables graph building, like torch.no_grad."""

    enabled = False


class enable_grad(_GradMode):
    """Turns graph building back on inside a no_grad block."""

    enabled = True


class Context:
    """What one call of a Function remembers for its backward pass."""

    # class-level defaults: an instance sets only what differs (two attribute writes per op
    # instead of five; this runs for every op)
    saved_tensors: tuple = ()
    saved_versions: list | tuple = ()  # _versions(): counter, version, array per tensor
    released = False

    def __init__(self, function: type, parents: tuple) -> None:
        self.function = function
        self.parents = parents  # the positional args; Tensors among them get gradients

    def save_for_backward(self, *arrays) -> None:
        self.saved_tensors = arrays

    def release(self) -> None:
        """Drop saved buffers and the links to the inputs once backward has used them, so the
        graph frees its memory even while its output (a loss kept for logging) is held."""
        function = self.function
        self.__dict__.clear()  # saved_tensors and saved_versions fall back to ()
        self.function = function
        self.parents = ()
        self.released = True


class Version:
    """PyTorch's version counter: how many in-place changes a tensor's memory has had. Views
    share their base's counter; backward refuses a saved tensor whose counter moved."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


def _memory_root(array):
    """The array that owns the memory `array` views (itself when it owns it)."""
    base = getattr(array, "base", None)
    while base is not None:
        array, base = base, getattr(base, "base", None)
    return array


def _versions(tensors: list) -> list:
    """counter, version, array of each tensor an op touched, one after another in one flat
    list, taken when it saves something. Whose memory the saved arrays share is worked out only
    when a counter has moved (at backward, in `_check_saved_versions`): this runs for every op
    that saves, and matching memory roots here was the largest part of Function.apply's time.
    Flat, because the graph keeps it: a tuple per tensor was three more objects per op for
    Python's garbage collector to count and traverse."""
    flat = []
    for t in tensors:
        counter = t._version_counter
        flat += (counter, counter.value, t.data)
    return flat


def _check_saved_versions(ctx) -> None:
    """Refuse to run backward when a tensor whose memory a saved array uses was changed in
    place since the forward (its version counter moved), as PyTorch does."""
    saved_roots = None
    triples = iter(ctx.saved_versions)
    for counter, version, data in zip(triples, triples, triples):
        if counter.value == version:
            continue
        if saved_roots is None:
            saved_roots = {id(_memory_root(a)) for a in ctx.saved_tensors if a is not None}
        if id(_memory_root(data)) in saved_roots:
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: [{data.dtype} {list(data.shape)}], saved by "
                f"{ctx.function.__name__}, is at version {counter.value}; expected version "
                f"{version} instead. Compute on a copy (t.clone()), or change the tensor only "
                f"after backward()"
            )


class Function:
    """Base class of differentiable operations; see the module docstring."""

    @staticmethod
    def forward(ctx: Context, *args, **kwargs) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad_output: np.ndarray):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        # one pass over the arguments: this runs for every op, so its cost is the framework's
        # per-op overhead (`tinygrad-norm bench --train` measures it)
        tensor_type = _TENSOR or _tensor_type()  # a global, not a call, after the first op
        arrays, tensors, needs_input_grad = [], [], []
        device = None
        for a in args:
            if isinstance(a, tensor_type):
                arrays.append(a.data)
                tensors.append(a)
                needs_input_grad.append(a._requires_grad)
                if device is None:
                    device = a.device
                elif a.device != device:
                    _mixed_devices(cls, device, a.device)
            else:
                arrays.append(a)
                needs_input_grad.append(False)
        needs_grad = True in needs_input_grad and _state.grad_enabled
        ctx = Context(cls, args if needs_grad else ())
        ctx.needs_input_grad = tuple(needs_input_grad)
        ctx.device = device or "cpu"  # forward may change it (ToDevice)
        out = cls.forward(ctx, *arrays, **kwargs)
        result = tensor_type._wrap(out, ctx.device)
        if getattr(out, "base", None) is not None or _is_one_of(out, arrays):
            root = _memory_root(out)  # a view (reshape, slice, permute) shares its input's
            for t in tensors:         # version counter
                if _memory_root(t.data) is root:
                    result._version_counter = t._version_counter
                    break
        if needs_grad:
            result._requires_grad = True
            result._ctx = ctx
            result._seq = next(_SEQUENCE)
            if ctx.saved_tensors:
                tensors.append(result)
                ctx.saved_versions = _versions(tensors)
        return result


def _is_one_of(out, arrays: list) -> bool:
    """Whether forward returned one of its inputs itself (a loop: any() over a generator
    costs a microsecond per op here)."""
    for a in arrays:
        if a is out:
            return True
    return False


_TENSOR = None  # tinygrad_norm.tensor.Tensor once _tensor_type() has imported it
# Creation order of the graph's nodes: an op's output is numbered after its inputs, so
# descending numbers are a topological order (next() on a count is atomic under the GIL)
_SEQUENCE = itertools.count(1)


def _tensor_type() -> type:
    """tinygrad_norm.tensor.Tensor, imported once on first use (tensor.py imports this module)."""
    global _TENSOR
    if _TENSOR is None:
        from .tensor import Tensor

        _TENSOR = Tensor
    return _TENSOR


def _mixed_devices(function: type, device: str, other: str) -> None:
    """Mixing devices is an error, never a silent copy."""
    raise RuntimeError(
        f"{function.__name__}: expected all tensors on the same device, got {device} and "
        f"{other}; move one with .to(device)"
    )


def _unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a broadcast gradient back down to the shape of the input it flowed from."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _references(array) -> int:
    return sys.getrefcount(array)


def _unshared_references() -> int:
    """What `_references(array)` says, called from `_unheld(array, ...)`, of an array that one
    name of the caller holds (measured, not assumed: how many references a call adds differs
    between Python versions)."""
    def unheld(array) -> int:
        return _references(array)

    array = np.empty(1)
    return unheld(array)


def _unheld(array, references: int) -> bool:
    """Whether nothing but the `references` we know of holds `array`; when the kernels' output
    pool (kernels/cpu/buffers.py) holds it too, the pool gives it up."""
    count = _references(array)
    if count <= references:
        return True
    if count == references + 1:  # perhaps the pool's own reference
        from kernels.cpu import buffers

        return buffers.claim(array)
    return False


def _can_take(grad) -> bool:
    """Whether `grad` may become a leaf's .grad without a copy: a writeable C-contiguous NumPy
    array that only the backward walk holds, or a view of all of such an array (a reshape)."""
    if type(grad) is not np.ndarray or not (grad.flags.writeable and grad.flags.c_contiguous):
        return False
    # references besides _UNSHARED's: the names in run_backward and _accumulate
    if not _unheld(grad, _UNSHARED + 2):
        return False
    base = grad.base
    if base is None:
        return True
    return (type(base) is np.ndarray and base.base is None and base.nbytes == grad.nbytes
            and _unheld(base, _UNSHARED + 1))  # besides _UNSHARED's: the view's own


def _accumulate(leaf, grad) -> None:
    """Add `grad` into `leaf.grad`, like PyTorch's AccumulateGrad.

    The first gradient is taken as it is when nothing else references it (a fresh result of
    a backward, as PyTorch steals a gradient whose use count is 1); a gradient the graph
    still holds (the same array sent to two inputs, a saved buffer, a view of another array)
    is copied, so a leaf's .grad never aliases a buffer the graph reuses. Later gradients are
    added in place, as PyTorch does outside create_graph; a .grad the user replaced by one
    that cannot take an in-place sum (read-only, another dtype or shape) is replaced instead.
    """
    if grad.dtype != leaf.dtype:
        grad = grad.astype(leaf.dtype)
    current = leaf.grad
    if current is None:
        taken = grad if _can_take(grad) else grad.copy()
        leaf.grad = _tensor_type()._wrap(taken, device=leaf.device)
        return
    data = current.data
    if (data.shape == grad.shape and data.dtype == grad.dtype and type(data) is type(grad)
            and getattr(data.flags, "writeable", True)):
        data += grad
        current._version_counter.value += 1
    else:
        current.data = data + grad


def run_backward(root, gradient: np.ndarray, retain_graph: bool = False) -> None:
    """Send `gradient` (d root) back through the graph; leaves accumulate into `.grad`.

    Nodes run in descending creation number (`_seq`), as PyTorch's engine orders them by
    sequence number: a node runs after every node that consumes it, so its gradient is
    complete. A heap holds the nodes that have a gradient waiting; each enters it once, when
    its first gradient arrives, so no separate walk of the graph is needed."""
    key = id(root)
    grads = {key: gradient}
    waiting = [(-root._seq, key, root)]  # ids break ties (leaves are all 0), never the nodes
    while waiting:
        _, key, node = heapq.heappop(waiting)
        grad = grads.pop(key)
        ctx = node._ctx
        if ctx is None:  # a leaf
            _accumulate(node, grad)
            del grad
            for hook in list(getattr(node, "_post_accumulate_grad_hooks", {}).values()):
                hook(node)
            continue
        if ctx.released:
            raise RuntimeError(
                "Trying to backward through the graph a second time: its saved buffers were "
                "freed by the first backward. Pass retain_graph=True to the first call."
            )
        if ctx.saved_versions:
            _check_saved_versions(ctx)
        input_grads = ctx.function.backward(ctx, grad)
        del grad
        if type(input_grads) is not tuple:
            input_grads = (input_grads,)
        parents = ctx.parents
        if len(input_grads) != len(parents):
            raise RuntimeError(
                f"function {ctx.function.__name__}.backward returned an incorrect number of "
                f"gradients (expected {len(parents)}, one per positional argument of "
                f"forward, None for those without one; got {len(input_grads)})"
            )
        if not retain_graph:
            ctx.release()
        for parent, parent_grad in zip(parents, input_grads):
            if parent_grad is None or not getattr(parent, "_requires_grad", False):
                continue
            if type(parent_grad) is not np.ndarray:
                parent_grad = as_array(parent_grad)
            if parent_grad.shape != parent.data.shape:
                parent_grad = _unbroadcast(parent_grad, parent.data.shape)
            key = id(parent)
            if key in grads:
                grads[key] = grads[key] + parent_grad
            else:
                grads[key] = parent_grad
                heapq.heappush(waiting, (-parent._seq, key, parent))
        # the loop's names must not keep a gradient referenced (see _accumulate)
        input_grads = parent_grad = None


_UNSHARED = _unshared_references()
