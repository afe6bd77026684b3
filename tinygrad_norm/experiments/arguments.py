"""Command-line argument types of the examples: each refuses a bad value with a one-line
argparse error (exit 2) instead of a traceback deep inside a run."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from kernels.bench import positive_int  # noqa: F401  (the same rule for every count)


class UsageError(ValueError):
    """A request that parsed but cannot be carried out (e.g. --resume without a training
    checkpoint); the CLI prints it on one line and exits 2."""


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def seed(text: str) -> int:
    """A seed NumPy and scikit-learn both take: 0 <= seed < 2**32."""
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**32 - 1, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def output_folder(text: str) -> str:
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    return text
