"""kernels.cuda's interop with other `__cuda_array_interface__` producers, as far as the
simulator allows: the dtype read from typestr (a torch tensor's .dtype is no NumPy dtype),
clear errors for the rest, and the launch stream taken from the interface.

Not testable without a GPU (gpu_check's streams section covers the first): kernels
launched on CuPy's current stream, a torch or numba producer's data read by a kernel
(the simulator cannot dereference device pointers), outputs from CuPy's memory pool."""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_norm import device

if device._cuda_unavailable_reason() is not None:
    pytest.skip(f"no CUDA device or simulator: {device._cuda_unavailable_reason()}",
                allow_module_level=True)

from kernels.cuda import helpers  # noqa: E402


class Producer:
    """A device array as torch exposes one: the interface, a shape, a non-NumPy dtype."""

    def __init__(self, shape, typestr="<f4", stream=None, strides=None, **extra):
        self.shape = shape
        self.dtype = "torch.float32"
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "version": 3,
                                         "data": (0x1000, False), "strides": strides, **extra}
        if stream != "absent":
            self.__cuda_array_interface__["stream"] = stream


def test_dtype_comes_from_typestr():
    assert helpers.array_dtype(Producer((2, 3))) == np.float32
    assert helpers.array_dtype(Producer((2, 3), "<f8")) == np.float64
    helpers.check_array("x", Producer((2, 3)), 2)  # no TypeError from np.dtype(torch dtype)
    helpers.check_like("dy", Producer((2, 3)), Producer((2, 3)), "x")


def test_unsupported_producers_get_clear_errors():
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        helpers.check_array("x", Producer((2, 3), "<i4"), 2)
    with pytest.raises(TypeError, match=r"dtype of x \(float64\), got float32"):
        helpers.check_array("weight", Producer((3,)), 1, np.dtype(np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        helpers.check_array("x", Producer((2, 3), strides=(4, 8)), 2)
    with pytest.raises(ValueError, match="2-D"):
        helpers.check_array("x", Producer((6,)), 2)


def test_interface_stream_values():
    assert helpers.interface_stream(Producer((1,), stream=None)) is None
    assert helpers.interface_stream(Producer((1,), stream="absent")) == 1  # version 2
    assert helpers.interface_stream(Producer((1,), stream=2)) == 2
    assert helpers.interface_stream(np.zeros(1)) == 1


def test_launch_stream_honours_the_producers_stream(monkeypatch):
    for stream in (None, 1, "absent"):  # ready data, the legacy default stream
        assert helpers.stream_for(Producer((1,), stream=stream)) == 0
    assert helpers.stream_for(np.zeros(1)) == 0
    per_thread = helpers.stream_for(Producer((1,), stream=2))
    assert per_thread is not None and per_thread != 0
    seen = []
    monkeypatch.setattr(helpers, "_external_stream", lambda pointer: seen.append(pointer) or
                        "external")
    assert helpers.stream_for(Producer((1,), stream=0x7F00)) == "external"
    assert seen == [0x7F00]
