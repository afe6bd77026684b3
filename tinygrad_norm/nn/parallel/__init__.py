"""tinygrad_norm.nn.parallel: data-parallel training across processes (MPI)."""

from .distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
