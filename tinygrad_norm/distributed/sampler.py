"""DistributedSampler: each rank's share of a dataset's indices, reshuffled per epoch."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np


class DistributedSampler:
    """The indices of `dataset` that rank `rank` of `num_replicas` trains on, as
    torch.utils.data.distributed.DistributedSampler: a permutation seeded by seed + epoch
    (the same on every rank; call `set_epoch` before each epoch), padded with its first
    indices to a multiple of num_replicas (or cut to one, with drop_last), and dealt out
    round-robin, so rank r gets positions r, r + num_replicas, ...

    num_replicas and rank default to the default process group's world size and rank.
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None or rank is None:
            from . import get_rank, get_world_size

            num_replicas = get_world_size() if num_replicas is None else num_replicas
            rank = get_rank() if rank is None else rank
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: need num_replicas >= 1 and 0 <= rank < "
                             f"num_replicas, got num_replicas={num_replicas}, rank={rank}")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        if drop_last:
            self.num_samples = len(dataset) // num_replicas
        else:
            self.num_samples = math.ceil(len(dataset) / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of this epoch (every rank must set the same epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            order = np.arange(n)
        if self.total_size > n:  # pad by repeating from the start, as often as needed
            order = np.resize(order, self.total_size)
        order = order[:self.total_size]
        return iter(order[self.rank::self.num_replicas].tolist())
