"""Tensor: a NumPy array plus what autograd needs (requires_grad, grad, the op that made it)."""

from __future__ import annotations

import math
from collections import namedtuple
from typing import Iterable, Sequence

import numpy as np

from . import dtypes, ops
from .autograd import Version, is_grad_enabled, run_backward
from .device import array_module, as_array, is_device_array, to_device, to_host
from .device import normalize_device as _normalize_device
from .random import generator

DEFAULT_DTYPE = np.float32

MaxResult = namedtuple("MaxResult", ["values", "indices"])


def _as_dtype(dtype) -> np.dtype:
    return np.dtype(DEFAULT_DTYPE if dtype is None else dtype)


def _shape_arg(shape: tuple) -> tuple:
    """Accept both f(2, 3) and f((2, 3)), as PyTorch does."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for s in shape:
        if not isinstance(s, (int, np.integer)):  # int() would truncate 2.5 silently
            raise TypeError(f"size must be a tuple of ints, but got an element of type "
                            f"{type(s).__name__} ({s!r})")
    return tuple(int(s) for s in shape)


class Tensor:
    """An n-dimensional array that records the operations applied to it.

    `Tensor(data)` wraps a NumPy array without copying when it is already a float array;
    Python lists of floats become float32 (the default dtype), lists of ints become int64.
    `device=` None keeps the device of `data` (a Tensor's, or "cuda" for a CuPy array);
    naming another device copies the data there.
    """

    __array_priority__ = 1000  # make ndarray <op> Tensor defer to Tensor's reflected operators
    # backward runs nodes in descending _seq (autograd.run_backward); Function.apply numbers
    # each output it links into the graph, and leaves keep this 0: they run after every node
    _seq = 0

    def __init__(self, data, dtype=None, device=None, requires_grad: bool = False) -> None:
        source, version = "cpu", Version()
        if isinstance(data, Tensor):  # wraps the same memory: shares its version counter
            source, data, version = data.device, data.data, data._version_counter
        elif is_device_array(data):
            source = "cuda"
        target = source if device is None else _normalize_device(device)
        self._version_counter = version
        if source != "cpu" or target != "cpu":
            self._init_on_device(data, dtype, source, target, requires_grad)
            return
        if dtype is not None:
            array = np.asarray(data, dtype=np.dtype(dtype))
        elif isinstance(data, np.ndarray) or np.isscalar(data) and isinstance(data, np.generic):
            array = np.asarray(data)
        else:
            array = np.asarray(data)
            if array.dtype.kind == "f":
                array = array.astype(DEFAULT_DTYPE)
            elif array.dtype.kind in "iu":
                array = array.astype(np.int64)
        if array.dtype.kind not in "fiub":
            raise TypeError(f"Tensor data must be numeric or bool, got dtype {array.dtype}")
        self.data: np.ndarray = array
        self.device: str = "cpu"
        self.grad: Tensor | None = None
        self._ctx = None
        self._requires_grad = False
        self.requires_grad = requires_grad

    def _init_on_device(self, data, dtype, source: str, target: str, requires_grad: bool) -> None:
        """The constructor when either side is a GPU: host data takes the CPU rules above
        and is then copied; device data is wrapped (or copied to the host for "cpu")."""
        if source == "cpu":
            data = Tensor(data, dtype=dtype).data
            dtype = None
        array = data if source == target else to_device(data, target)
        if dtype is not None and np.dtype(dtype) != array.dtype:
            array = array.astype(dtype)
        if array is not data:
            self._version_counter = Version()
        self.data = array
        self.device = target
        self.grad = None
        self._ctx = None
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, array, device: str = "cpu") -> "Tensor":
        """Internal constructor: take an op's output as it is, no checks or copies."""
        t = cls.__new__(cls)
        t.data = array if type(array) is np.ndarray else as_array(array)
        t.device = device
        t.grad = None
        t._ctx = None
        t._requires_grad = False
        t._version_counter = Version()
        return t

    # ------------------------------------------------------------------ attributes

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self.data.dtype.kind != "f":
            raise RuntimeError(
                f"only floating point tensors can require gradients, got dtype {self.data.dtype}"
            )
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        self.requires_grad = requires_grad
        return self

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def _version(self) -> int:
        """In-place changes so far to this tensor's memory (shared with its views), as in
        PyTorch; backward compares it with the version each saved tensor had."""
        return self._version_counter.value

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def dim(self) -> int:
        return self.ndim

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        device = "" if self.device == "cpu" else f", device='{self.device}'"
        values = np.array2string(to_host(self.data), separator=", ")
        return f"Tensor({values}, dtype={self.dtype}{device}{grad})"

    # ------------------------------------------------------------------ autograd

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's `.grad`."""
        if not self.requires_grad:
            raise RuntimeError(
                "element 0 of tensors does not require grad and does not have a grad_fn"
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs; this output has "
                    f"shape {self.shape}: pass backward(gradient) with a tensor of that shape"
                )
            gradient = array_module(self.device).ones(self.shape, dtype=self.dtype)
        else:
            if isinstance(gradient, Tensor):
                _check_same_device(self, gradient, "backward(gradient)")
                gradient = gradient.data
            gradient = as_array(gradient)
            if gradient.shape != self.shape:
                raise RuntimeError(
                    f"gradient has shape {gradient.shape}, expected the output's shape {self.shape}"
                )
            gradient = gradient.astype(self.dtype, copy=False)
        run_backward(self, gradient, retain_graph=retain_graph)

    def register_post_accumulate_grad_hook(self, hook):
        """hook(tensor) runs each time backward has accumulated into this leaf's `.grad`
        (PyTorch's name; DistributedDataParallel averages gradients across processes this
        way). Returns a handle whose remove() unregisters it."""
        if self._ctx is not None:
            raise RuntimeError("post-accumulate-grad hooks can only be registered on leaf "
                               "tensors (a parameter, or a tensor created with requires_grad)")
        from .nn.module import RemovableHandle

        hooks = self.__dict__.setdefault("_post_accumulate_grad_hooks", {})
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    def detach(self) -> "Tensor":
        """The same memory outside the graph; in-place changes to it count against self."""
        out = Tensor._wrap(self.data, device=self.device)
        out._version_counter = self._version_counter
        return out

    def numpy(self) -> np.ndarray:
        if self.device != "cpu":
            raise TypeError(
                f"can't convert a {self.device} tensor to numpy: use tensor.cpu() to copy it "
                "to host memory first"
            )
        if self.requires_grad:
            raise RuntimeError(
                "Can't call numpy() on a Tensor that requires grad. Use tensor.detach().numpy()"
            )
        return self.data

    def tolist(self):
        return self.data.tolist()

    def item(self):
        if self.data.size != 1:
            raise RuntimeError(
                f"a Tensor with {self.data.size} elements cannot be converted to a Python scalar"
            )
        return self.data.reshape(()).item()

    def _one_element(self) -> object:
        if self.data.size != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        return self.item()

    def __bool__(self) -> bool:
        if self.data.size != 1:
            what = "no values" if self.data.size == 0 else "more than one value"
            raise RuntimeError(f"Boolean value of Tensor with {what} is ambiguous")
        return bool(self.item())

    def __float__(self) -> float:
        return float(self._one_element())

    def __int__(self) -> int:
        return int(self._one_element())

    def __index__(self) -> int:
        if self.data.size != 1 or self.dtype.kind not in "iub":
            raise TypeError("only integer tensors of a single element can be converted to an "
                            "index")
        return int(self.item())

    def __format__(self, format_spec: str) -> str:
        """A 0-d tensor formats as its value (f"{loss:.3f}"); others as object does."""
        if self.ndim == 0:
            return format(self.item(), format_spec)
        return object.__format__(self, format_spec)

    def __array__(self, dtype=None, copy=None):
        if self.device != "cpu":
            raise TypeError(
                f"can't convert a {self.device} tensor to a NumPy array implicitly: use "
                "tensor.cpu() to copy it to host memory first"
            )
        return self.data if dtype is None else self.data.astype(dtype)

    # ------------------------------------------------------------------ dtype and device

    def to(self, device=None, dtype=None) -> "Tensor":
        """Return a tensor on `device` with `dtype`; self when nothing changes (like PyTorch).

        Both changes are differentiable: the gradient goes back to the source device and is
        cast back to the source dtype. A device change always copies.
        """
        if isinstance(device, (type, np.dtype)):  # t.to(np.float64)
            device, dtype = None, device
        result = self
        if device is not None:
            target = _normalize_device(device)
            if target != self.device:
                result = ops.ToDevice.apply(self, device=target)
        if dtype is None or np.dtype(dtype) == result.dtype:
            return result
        return ops.Cast.apply(result, dtype=np.dtype(dtype))

    def double(self) -> "Tensor":
        return self.to(dtype=np.float64)

    def float(self) -> "Tensor":
        return self.to(dtype=np.float32)

    def long(self) -> "Tensor":
        return Tensor._wrap(self.data.astype(np.int64), device=self.device)

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self) -> "Tensor":
        return self.to("cuda")

    @property
    def is_cuda(self) -> bool:
        return self.device == "cuda"

    def clone(self) -> "Tensor":
        return self * 1 if self.requires_grad else Tensor._wrap(self.data.copy(), self.device)

    def contiguous(self) -> "Tensor":
        """Self when already C-contiguous, else a differentiable contiguous copy."""
        if self.data.flags.c_contiguous:
            return self
        return ops.Contiguous.apply(self)

    # ------------------------------------------------------------------ arithmetic

    def _operand(self, other) -> "Tensor":
        """`other` as a Tensor on self's device: arrays and lists keep their dtype, Python and
        NumPy scalars become 0-d arrays of their category's default dtype (see dtypes)."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, (np.ndarray, list, tuple)) or is_device_array(other):
            array = as_array(other) if isinstance(other, np.ndarray) or is_device_array(
                other) else Tensor(other).data
        else:
            return _Scalar(other, self.device)
        if self.device != "cpu" and not is_device_array(array):
            raise RuntimeError(
                f"expected a tensor on {self.device} or a Python number, got a host array "
                f"of shape {array.shape}: move it with Tensor(array, device='cuda') first"
            )
        return Tensor._wrap(array, device=self.device)

    def _promoted(self, other, reflected: bool = False, true_divide: bool = False) -> tuple:
        """(left, right) operands cast to their common dtype by PyTorch's promotion rules;
        a true division of integers or bools is done in the default float dtype."""
        if isinstance(other, Tensor) and other.data.dtype == self.data.dtype and (
                not true_divide or self.data.dtype.kind == "f"):
            return (other, self) if reflected else (self, other)  # nothing to promote
        other = self._operand(other)
        pair = (other, self) if reflected else (self, other)
        dtype = dtypes.result_type(*(p.value if isinstance(p, _Scalar) else p.data
                                     for p in pair))
        if true_divide and dtype.kind != "f":
            dtype = dtypes.DEFAULT_FLOAT
        return tuple(p.as_tensor(dtype) if isinstance(p, _Scalar) else _cast(p, dtype)
                     for p in pair)

    def __add__(self, other):
        return ops.Add.apply(*self._promoted(other))

    def __radd__(self, other):
        return ops.Add.apply(*self._promoted(other, reflected=True))

    def __sub__(self, other):
        _no_bool_subtraction((self, self._operand(other)))
        return ops.Sub.apply(*self._promoted(other))

    def __rsub__(self, other):
        _no_bool_subtraction((self, self._operand(other)))
        return ops.Sub.apply(*self._promoted(other, reflected=True))

    def __mul__(self, other):
        return ops.Mul.apply(*self._promoted(other))

    def __rmul__(self, other):
        return ops.Mul.apply(*self._promoted(other, reflected=True))

    def __truediv__(self, other):
        return ops.Div.apply(*self._promoted(other, true_divide=True))

    def __rtruediv__(self, other):
        return ops.Div.apply(*self._promoted(other, reflected=True, true_divide=True))

    def __pow__(self, other):
        if (self.dtype.kind in "iu" and isinstance(other, (int, np.integer))
                and not isinstance(other, bool) and other < 0):
            raise RuntimeError("Integers to negative integer powers are not allowed.")
        base, exponent = self._promoted(other)
        if isinstance(other, _SCALAR_TYPES) and not _fits(other, base.dtype):
            # pow checks its scalar exponent where + and * wrap, as in PyTorch
            raise RuntimeError(f"value cannot be converted to type {base.dtype} without "
                               "overflow")
        return ops.Pow.apply(base, exponent)

    def __rpow__(self, other):
        base, exponent = self._promoted(other, reflected=True)
        if base.dtype == np.bool_:  # PyTorch's pow(Scalar, Tensor) has no bool kernel
            raise RuntimeError('"pow" not implemented for \'Bool\'')
        return ops.Pow.apply(base, exponent)

    def __neg__(self):
        if self.dtype == np.bool_:
            raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. "
                               "If you are trying to invert a mask, use the `~` or "
                               "`logical_not()` operator instead.")
        return ops.Neg.apply(self)

    def __matmul__(self, other):
        return ops.MatMul.apply(*self._promoted(other))

    def __rmatmul__(self, other):
        return ops.MatMul.apply(*self._promoted(other, reflected=True))

    def matmul(self, other) -> "Tensor":
        return self @ other

    def add(self, other):
        return self + other

    def sub(self, other):
        return self - other

    def mul(self, other):
        return self * other

    def div(self, other):
        return self / other

    def pow(self, exponent):
        return self**exponent

    def neg(self):
        return -self

    def maximum(self, other) -> "Tensor":
        return ops.Maximum.apply(*self._promoted(other))

    # comparisons: plain bool tensors, never part of the graph
    def _compare(self, other, op) -> "Tensor":
        if isinstance(other, Tensor):
            _check_same_device(self, other, op.__name__)
        other = other.data if isinstance(other, Tensor) else other
        return Tensor._wrap(op(self.data, other), device=self.device)

    def __eq__(self, other):  # noqa: D105 - elementwise, like PyTorch
        return self._compare(other, np.equal)

    def __ne__(self, other):
        return self._compare(other, np.not_equal)

    def __lt__(self, other):
        return self._compare(other, np.less)

    def __le__(self, other):
        return self._compare(other, np.less_equal)

    def __gt__(self, other):
        return self._compare(other, np.greater)

    def __ge__(self, other):
        return self._compare(other, np.greater_equal)

    __hash__ = object.__hash__

    # ------------------------------------------------------------------ elementwise functions

    def exp(self):
        return ops.Exp.apply(self)

    def log(self):
        return ops.Log.apply(self)

    def sqrt(self):
        return ops.Sqrt.apply(self)

    def abs(self):
        return ops.Abs.apply(self)

    def relu(self):
        return ops.Relu.apply(self)

    def sigmoid(self):
        return ops.Sigmoid.apply(self)

    def tanh(self):
        return ops.Tanh.apply(self)

    def clamp(self, min=None, max=None):
        return ops.Clamp.apply(self, min=min, max=max)

    def log_softmax(self, dim: int) -> "Tensor":
        return ops.LogSoftmax.apply(self, dim=_check_dim(dim, self.ndim))

    def softmax(self, dim: int) -> "Tensor":
        return self.log_softmax(dim).exp()

    # ------------------------------------------------------------------ reductions

    def sum(self, dim=None, keepdim: bool = False) -> "Tensor":
        return ops.Sum.apply(self, dim=_check_dims(dim, self.ndim), keepdim=keepdim)

    def mean(self, dim=None, keepdim: bool = False) -> "Tensor":
        dims = _check_dims(dim, self.ndim)
        count = self.data.size if dims is None else math.prod(self.shape[d] for d in dims)
        return self.sum(dim=dims, keepdim=keepdim) / count

    def var(self, dim=None, unbiased: bool | None = None, keepdim: bool = False,
            correction: int | None = None) -> "Tensor":
        """Variance with PyTorch's Bessel correction (correction=1, i.e. unbiased, by default)."""
        if unbiased is not None and correction is not None:
            raise ValueError("pass either unbiased or correction, not both")
        if correction is None:
            correction = 0 if unbiased is False else 1
        dims = _check_dims(dim, self.ndim)
        count = self.data.size if dims is None else math.prod(self.shape[d] for d in dims)
        centered = self - self.mean(dim=dims, keepdim=True)
        return (centered * centered).sum(dim=dims, keepdim=keepdim) / max(count - correction, 0)

    def std(self, dim=None, unbiased: bool | None = None, keepdim: bool = False,
            correction: int | None = None) -> "Tensor":
        return self.var(dim, unbiased, keepdim, correction).sqrt()

    def max(self, dim: int | None = None, keepdim: bool = False):
        """max() -> the largest value; max(dim) -> (values, indices), like PyTorch."""
        if dim is None:
            return ops.Max.apply(self)
        dim = _check_dim(dim, self.ndim)
        values = ops.Max.apply(self, dim=dim, keepdim=keepdim)
        indices = as_array(np.argmax(self.data, axis=dim))
        if keepdim:
            indices = np.expand_dims(indices, dim)
        return MaxResult(values, Tensor._wrap(indices, device=self.device))

    def min(self, dim: int | None = None, keepdim: bool = False):
        if dim is None:
            return -(-self).max()
        values, indices = (-self).max(dim, keepdim)
        return MaxResult(-values, indices)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> "Tensor":
        if dim is None:
            return Tensor._wrap(np.argmax(self.data), device=self.device)
        return self.max(dim, keepdim).indices

    # ------------------------------------------------------------------ movement

    def reshape(self, *shape) -> "Tensor":
        return ops.Reshape.apply(self, shape=_resolve_shape(_shape_arg(shape), self.data.size))

    def view(self, *shape) -> "Tensor":
        return self.reshape(*shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        if self.ndim == 0:
            return self.reshape(1)
        start, end = _check_dim(start_dim, self.ndim), _check_dim(end_dim, self.ndim)
        if start > end:
            raise ValueError("flatten() has invalid args: start_dim cannot come after end_dim")
        merged = math.prod(self.shape[start : end + 1])
        return self.reshape(self.shape[:start] + (merged,) + self.shape[end + 1 :])

    def permute(self, *dims) -> "Tensor":
        dims = tuple(_check_dim(d, self.ndim) for d in _shape_arg(dims))
        if sorted(dims) != list(range(self.ndim)):
            raise ValueError(
                f"permute(dims={list(dims)}) must list each of the {self.ndim} dims exactly once"
            )
        return ops.Permute.apply(self, dims=dims)

    def transpose(self, dim0: int, dim1: int) -> "Tensor":
        dims = list(range(self.ndim))
        d0, d1 = _check_dim(dim0, self.ndim), _check_dim(dim1, self.ndim)
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return ops.Permute.apply(self, dims=tuple(dims))

    @property
    def T(self) -> "Tensor":
        return self.permute(*reversed(range(self.ndim)))

    def unsqueeze(self, dim: int) -> "Tensor":
        dim = _check_dim(dim, self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim: int | None = None) -> "Tensor":
        if dim is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        dim = _check_dim(dim, self.ndim)
        if self.shape[dim] != 1:
            return self
        return self.reshape(self.shape[:dim] + self.shape[dim + 1 :])

    def expand(self, *shape) -> "Tensor":
        shape = _shape_arg(shape)
        lead = len(shape) - self.ndim
        if lead < 0:
            raise RuntimeError(
                f"expand: the number of sizes ({len(shape)}) must be at least the tensor's "
                f"number of dimensions ({self.ndim})"
            )
        full = tuple(self.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
        for i, size in enumerate(self.shape):
            if size != 1 and size != full[i + lead]:
                raise RuntimeError(
                    f"expand: size {full[i + lead]} at dim {i + lead} does not match the "
                    f"existing size {size} (only size-1 dims can be expanded)"
                )
        return ops.Expand.apply(self, shape=full)

    def __getitem__(self, index) -> "Tensor":
        return ops.GetItem.apply(self, index=_index_arrays(index))

    def __setitem__(self, index, value) -> None:
        self._check_inplace()
        self.data[_index_arrays(index)] = value.data if isinstance(value, Tensor) else value
        self._version_counter.value += 1

    # ------------------------------------------------------------------ in-place (no graph)

    def _check_inplace(self) -> None:
        """In-place ops are not differentiable here: with grad enabled they are refused on
        any tensor that requires grad (PyTorch refuses them on leaves, and records them on
        other tensors, which ours cannot)."""
        if not (self.requires_grad and is_grad_enabled()):
            return
        if self.is_leaf:
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place "
                               "operation. Wrap it in tn.no_grad() (as initialisation and "
                               "optimizers do)")
        raise RuntimeError("in-place operation on a tensor that is part of the autograd graph: "
                           "tinygrad_norm cannot differentiate in-place ops; use the "
                           "out-of-place form (t * 0, t.clone()) or detach() first")

    def _inplace(self, value) -> "Tensor":
        self._check_inplace()
        self.data[...] = value.data if isinstance(value, Tensor) else value
        self._version_counter.value += 1
        return self

    def zero_(self) -> "Tensor":
        return self._inplace(0)

    def fill_(self, value) -> "Tensor":
        return self._inplace(value)

    def copy_(self, other) -> "Tensor":
        return self._inplace(other)


# ---------------------------------------------------------------------- helpers


_SCALAR_TYPES = (int, float, np.integer, np.floating)


def _fits(value, dtype: np.dtype) -> bool:
    """Whether a scalar is within dtype's range (infinities fit a float dtype)."""
    if dtype.kind == "b":
        return True
    info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
    return bool(info.min <= value <= info.max) or (dtype.kind == "f" and not np.isfinite(value))


class _Scalar:
    """A Python or NumPy scalar operand: promotes as a scalar, then becomes a 0-d Tensor."""

    def __init__(self, value, device: str) -> None:
        self.value, self.device = value, device
        self.dtype = dtypes.scalar_dtype(value)

    def as_tensor(self, dtype: np.dtype) -> Tensor:
        array = dtypes.scalar_array(self.value, dtype)
        # a NumPy scalar, not a host array: CuPy broadcasts it without a transfer
        return Tensor._wrap(array if self.device == "cpu" else array[()], device=self.device)


def _cast(t: Tensor, dtype: np.dtype) -> Tensor:
    """t in `dtype`: differentiable, so a promoted operand's gradient keeps t's dtype."""
    return t if t.dtype == dtype else ops.Cast.apply(t, dtype=dtype)


def _no_bool_subtraction(pair: tuple) -> tuple:
    """PyTorch refuses `-` with a bool operand (its dtype before promotion)."""
    if all(p.dtype == np.bool_ for p in pair):
        raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not "
                           "supported. Use the `^` or `logical_xor()` operator instead.")
    if any(p.dtype == np.bool_ for p in pair):
        raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. "
                           "If you are trying to invert a mask, use the `~` or `logical_not()` "
                           "operator instead.")
    return pair


def _check_same_device(a: Tensor, b: Tensor, what: str) -> None:
    if a.device != b.device:
        raise RuntimeError(
            f"{what}: expected all tensors on the same device, got {a.device} and {b.device}; "
            "move one with .to(device)"
        )


def _check_dim(dim: int, ndim: int) -> int:
    rank = max(ndim, 1)
    if not -rank <= dim < rank:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-rank}, {rank - 1}], "
            f"but got {dim})"
        )
    return dim % rank


def _check_dims(dim, ndim: int):
    if dim is None:
        return None
    if isinstance(dim, (tuple, list)):
        return tuple(_check_dim(d, ndim) for d in dim)
    return (_check_dim(dim, ndim),)


def _resolve_shape(shape: tuple, size: int) -> tuple:
    """Fill in one -1 and check that the new shape holds exactly `size` elements."""
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred (-1)")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if known == 0 or size % known:
            raise RuntimeError(f"shape {list(shape)} is invalid for input of size {size}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    elif known != size or any(s < 0 for s in shape):
        raise RuntimeError(f"shape {list(shape)} is invalid for input of size {size}")
    return shape


def _index_arrays(index):
    """Replace Tensors inside an index with their arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


# ---------------------------------------------------------------------- constructors


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor that owns a copy of `data` (like torch.tensor)."""
    result = Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)
    result.data = result.data.copy()
    result._version_counter = Version()
    return result


def zeros(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros(_shape_arg(shape), _as_dtype(dtype)), device=device,
                  requires_grad=requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones(_shape_arg(shape), _as_dtype(dtype)), device=device,
                  requires_grad=requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.full(_shape_arg((shape,)), fill_value, _as_dtype(dtype)), device=device,
                  requires_grad=requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from the global generator (see manual_seed)."""
    data = generator().standard_normal(_shape_arg(shape)).astype(_as_dtype(dtype))
    return Tensor(data, device=device, requires_grad=requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uniform samples on [0, 1) from the global generator (see manual_seed)."""
    data = generator().random(_shape_arg(shape)).astype(_as_dtype(dtype))
    return Tensor(data, device=device, requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None,
           requires_grad: bool = False) -> Tensor:
    if end is None:
        start, end = 0, start
    values = np.arange(start, end, step)
    if dtype is None:
        dtype = np.int64 if values.dtype.kind in "iu" else DEFAULT_DTYPE
    return Tensor(values.astype(dtype), device=device, requires_grad=requires_grad)


def zeros_like(t: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    return zeros(t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    return ones(t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


def cat(tensors: Sequence[Tensor] | Iterable[Tensor], dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat() expects a non-empty list of tensors")
    return ops.Cat.apply(*tensors, dim=_check_dim(dim, tensors[0].ndim))


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack() expects a non-empty list of tensors")
    dim = _check_dim(dim, tensors[0].ndim + 1)
    return cat([t.unsqueeze(dim) for t in tensors], dim=dim)
