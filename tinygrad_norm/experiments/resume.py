"""Random-generator state as plain arrays, so a checkpoint can carry it without pickle.

NumPy's default generator (PCG64) is fully described by two 128-bit integers and a cached
32-bit half-draw; we store them as six uint64 words. Restoring them makes the next shuffle and
the next random draw exactly the ones an uninterrupted run would have made.
"""

from __future__ import annotations

import numpy as np

_WORD = (1 << 64) - 1


def generator_state(generator: np.random.Generator) -> np.ndarray:
    state = generator.bit_generator.state
    if state["bit_generator"] != "PCG64":
        raise TypeError(f"only PCG64 generators can be saved, got {state['bit_generator']}")
    words = state["state"]["state"], state["state"]["inc"]
    return np.array([words[0] >> 64, words[0] & _WORD, words[1] >> 64, words[1] & _WORD,
                     state["has_uint32"], state["uinteger"]], dtype=np.uint64)


def set_generator_state(generator: np.random.Generator, words: np.ndarray) -> None:
    high_state, low_state, high_inc, low_inc, has_uint32, uinteger = (int(w) for w in words)
    generator.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": high_state << 64 | low_state, "inc": high_inc << 64 | low_inc},
        "has_uint32": has_uint32,
        "uinteger": uinteger,
    }
