"""Where the examples put what they measured: a JSON file, PNG figures, and printed tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the examples run on machines without a display
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def output_folder(path: str | Path) -> Path:
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def finite_or_none(value):
    """`value` with every inf or nan float replaced by None, so the file is strict JSON
    (an overflowing layer's std is the result to report, and it reads as null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(finite_or_none(data), indent=2, allow_nan=False) + "\n")
    return path


def figure(rows: int = 1, columns: int = 1, width: float = 5.0, height: float = 3.6):
    """A figure of `rows` x `columns` panels sized for a README (small PNGs)."""
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows),
                             squeeze=False)
    return fig, axes


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def format_table(headers: list[str], rows: list[list]) -> str:
    """A plain-text table; floats with 4 significant digits."""
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
