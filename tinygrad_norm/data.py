"""Datasets and a batching DataLoader, plus the bundled digits data the examples train on.

`load_digits()` reads scikit-learn's copy of the UCI handwritten digits (1,797 8x8 images,
shipped inside the package: no download) and splits it into fixed, stratified train and test
sets, so every run of an example sees the same data.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .tensor import Tensor


class TensorDataset:
    """Samples are the rows of equally long arrays (e.g. images and labels)."""

    def __init__(self, *arrays) -> None:
        self.arrays = [a.data if isinstance(a, Tensor) else np.asarray(a) for a in arrays]
        lengths = {len(a) for a in self.arrays}
        if len(lengths) != 1:
            raise ValueError(f"TensorDataset: arrays have different lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)


class DataLoader:
    """Iterates over a dataset in batches of Tensors, reshuffled every epoch when shuffle=True.

    The order comes from its own generator seeded by `seed`, so a run repeats exactly.
    A `sampler` (e.g. distributed.DistributedSampler) gives the order instead of shuffle.
    """

    def __init__(self, dataset: TensorDataset, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, sampler=None) -> None:
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True are mutually exclusive")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.sampler = sampler
        self.generator = np.random.default_rng(seed)

    def __len__(self) -> int:
        size = len(self.dataset) if self.sampler is None else len(self.sampler)
        full, rest = divmod(size, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[tuple]:
        n = len(self.dataset)
        if self.sampler is not None:
            order = np.fromiter(self.sampler, dtype=np.int64)
        else:
            order = self.generator.permutation(n) if self.shuffle else np.arange(n)
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield tuple(Tensor(np.ascontiguousarray(a)) for a in self.dataset[index])


def load_digits(test_fraction: float = 0.25, seed: int = 0, images: bool = False):
    """(x_train, y_train, x_test, y_test) as NumPy arrays: pixels scaled to [0, 1] float32,
    labels int64; images=True gives (N, 1, 8, 8) instead of (N, 64). Needs scikit-learn."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ImportError(
            "the digits data comes with scikit-learn: pip install 'tinygrad_norm[examples]'"
        ) from None
    digits = sklearn_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    if images:
        x = x.reshape(-1, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return x_train, y_train, x_test, y_test
