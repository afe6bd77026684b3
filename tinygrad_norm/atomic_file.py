"""Crash-safe file replacement, shared by both checkpoint formats (.npz and .safetensors)."""

from __future__ import annotations

import glob
import os
import stat
import tempfile
from pathlib import Path


def atomic_write(path, write) -> None:
    """Call write(file) on a temporary file beside `path`, flush it to disk and rename it over
    `path`: a crash at any moment leaves the old file or the new one, whole. Like np.savez and
    torch.save, a new file gets the umask's mode and an overwritten one keeps its mode; a
    symlink is written through to its target. Temporary files left by killed saves (their
    writer's pid is in the name) are removed."""
    path = Path(os.path.realpath(path))
    prefix = f".{path.name}."
    _remove_stale_temporaries(path.parent, prefix)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _remove_stale_temporaries(folder: Path, prefix: str) -> None:
    """.NAME.PID.XXXX.tmp files whose process no longer exists."""
    for candidate in folder.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = candidate.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _process_exists(int(pid)):
            candidate.unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
