"""tinygrad_norm.distributed: collectives across processes over MPI, named like
torch.distributed.

Launch with MPI's own launcher, one process ("rank") per slot:

    mpiexec -n 4 python train.py                 # 4 processes on this machine
    mpiexec -f hosts -n 8 python train.py        # across the machines listed in `hosts`

Every rank calls `init_process_group()` once, then the collectives, each rank with an array
of the same shape and dtype. The collectives run on NumPy arrays and CPU Tensors in place
(a Tensor's `.data`), through mpi4py's buffer interface, so nothing is pickled.

Failures do not hang: `init_process_group` installs an exception hook that prints the
exception, with its rank, and calls MPI Abort, which ends every rank of the job; and each
collective first checks that all ranks passed the same shape and dtype (a mismatch raises
the same error on every rank, instead of MPI's undefined behaviour).
"""

from __future__ import annotations

import enum
import sys
import traceback

import numpy as np

from ..tensor import Tensor
from .sampler import DistributedSampler

__all__ = [
    "DistributedSampler", "ReduceOp", "all_gather", "all_reduce", "barrier", "broadcast",
    "destroy_process_group", "get_rank", "get_world_size", "init_process_group",
    "is_available", "is_initialized",
]


class ReduceOp(enum.Enum):
    """How all_reduce combines the ranks' values."""

    SUM = "SUM"
    PRODUCT = "PROD"
    MIN = "MIN"
    MAX = "MAX"


_comm = None  # the default group's communicator, a duplicate of MPI.COMM_WORLD
_previous_excepthook = None


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("tinygrad_norm.distributed needs mpi4py and an MPI library: "
                          "pip install 'tinygrad_norm[distributed]' (mpi4py, mpich)") from None
    return MPI


def is_available() -> bool:
    """Whether mpi4py (and so an MPI library) can be imported."""
    try:
        _mpi()
    except ImportError:
        return False
    return True


def is_initialized() -> bool:
    return _comm is not None


def init_process_group(backend: str = "mpi") -> None:
    """Join the job started by mpiexec: every rank of MPI.COMM_WORLD is in the default group.

    From here on an uncaught exception on any rank aborts the whole job with its message."""
    global _comm, _previous_excepthook
    if backend != "mpi":
        raise ValueError(f"init_process_group: backend must be 'mpi' (the only one), got "
                         f"{backend!r}")
    if _comm is not None:
        raise RuntimeError("init_process_group: the default process group is already "
                           "initialized; call destroy_process_group() first")
    _comm = _mpi().COMM_WORLD.Dup()
    _previous_excepthook = sys.excepthook
    sys.excepthook = _abort_on_exception


def destroy_process_group() -> None:
    """Leave the default group; the exception hook is restored. MPI itself finalizes at exit."""
    global _comm, _previous_excepthook
    comm = _group("destroy_process_group")
    _comm = None
    sys.excepthook = _previous_excepthook
    _previous_excepthook = None
    comm.Free()


def _abort_on_exception(kind, value, tb) -> None:
    """An uncaught exception on one rank: print it with the rank and abort every rank (the
    others may be blocked in a collective that this rank will never join)."""
    rank = _comm.Get_rank() if _comm is not None else "?"
    text = "".join(traceback.format_exception(kind, value, tb))
    sys.stderr.write(f"[rank {rank}] {text}[rank {rank}] aborting the MPI job\n")
    sys.stderr.flush()
    sys.stdout.flush()
    _mpi().COMM_WORLD.Abort(1)


def _group(name: str):
    if _comm is None:
        raise RuntimeError(f"{name}: the default process group is not initialized; call "
                           f"tinygrad_norm.distributed.init_process_group() first (and launch "
                           f"with mpiexec -n N)")
    return _comm


def get_rank() -> int:
    return _group("get_rank").Get_rank()


def get_world_size() -> int:
    return _group("get_world_size").Get_size()


def barrier() -> None:
    _group("barrier").Barrier()


def _array(name: str, tensor) -> np.ndarray:
    if isinstance(tensor, Tensor):
        if tensor.device != "cpu":
            raise TypeError(f"{name}: only CPU tensors are supported, got a {tensor.device} "
                            f"tensor; move it with .cpu()")
        return tensor.data
    if isinstance(tensor, np.ndarray):
        return tensor
    raise TypeError(f"{name}: expected a Tensor or numpy array, got {type(tensor).__name__}")


def _check_same_everywhere(name: str, comm, array: np.ndarray) -> None:
    """Every rank must pass an array of the same shape and dtype; otherwise every rank
    raises the same error (MPI itself would hang or mix up buffers)."""
    everyone = comm.allgather((tuple(array.shape), array.dtype.str))
    if len(set(everyone)) > 1:
        listed = ", ".join(f"rank {r}: shape {shape} {np.dtype(dtype)}"
                           for r, (shape, dtype) in enumerate(everyone))
        raise ValueError(f"{name}: every rank must pass the same shape and dtype, got "
                         f"{listed}")


def _contiguous(array: np.ndarray) -> np.ndarray:
    """`array` itself when C-contiguous, else a contiguous copy (0-d stays 0-d)."""
    return array if array.flags.c_contiguous else array.copy(order="C")


def _in_place(array: np.ndarray, run) -> None:
    """Run a collective on a contiguous buffer and write the result back into `array`."""
    work = _contiguous(array)
    run(work)
    if work is not array:
        array[...] = work


def all_reduce(tensor, op: ReduceOp = ReduceOp.SUM) -> None:
    """Combine `tensor` across all ranks with `op`, in place on every rank."""
    comm = _group("all_reduce")
    array = _array("all_reduce", tensor)
    if not isinstance(op, ReduceOp):
        raise TypeError(f"all_reduce: op must be a ReduceOp, got {op!r}")
    _check_same_everywhere("all_reduce", comm, array)
    mpi = _mpi()
    _in_place(array, lambda work: comm.Allreduce(mpi.IN_PLACE, work, getattr(mpi, op.value)))


def all_gather(tensor_list: list, tensor) -> None:
    """tensor_list[r] receives rank r's `tensor`, on every rank; tensor_list holds
    world-size tensors or arrays of tensor's shape and dtype."""
    comm = _group("all_gather")
    array = _array("all_gather", tensor)
    size = comm.Get_size()
    if not isinstance(tensor_list, (list, tuple)) or len(tensor_list) != size:
        raise ValueError(f"all_gather: tensor_list must be a list of world size ({size}) "
                         f"tensors, got {type(tensor_list).__name__} of length "
                         f"{len(tensor_list) if hasattr(tensor_list, '__len__') else '?'}")
    outputs = [_array("all_gather", t) for t in tensor_list]
    for r, out in enumerate(outputs):
        if out.shape != array.shape or out.dtype != array.dtype:
            raise ValueError(f"all_gather: tensor_list[{r}] has shape {out.shape} {out.dtype}, "
                             f"expected the input's {array.shape} {array.dtype}")
    _check_same_everywhere("all_gather", comm, array)
    gathered = np.empty((size, *array.shape), array.dtype)
    comm.Allgather(_contiguous(array), gathered)
    for out, part in zip(outputs, gathered):
        out[...] = part


def broadcast(tensor, src: int = 0) -> None:
    """Every rank's `tensor` becomes rank `src`'s, in place."""
    comm = _group("broadcast")
    array = _array("broadcast", tensor)
    size = comm.Get_size()
    if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or not 0 <= src < size:
        raise ValueError(f"broadcast: src must be a rank in [0, {size}), got {src!r}")
    _check_same_everywhere("broadcast", comm, array)
    _in_place(array, lambda work: comm.Bcast(work, root=int(src)))
