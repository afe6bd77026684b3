"""The global random generator behind randn, rand, Dropout and nn.init (seeded by manual_seed)."""

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the global generator, so that runs repeat exactly."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def generator() -> np.random.Generator:
    return _generator
