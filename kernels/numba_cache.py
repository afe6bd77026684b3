"""Where Numba caches the compiled kernels, and when a cached kernel is stale.

Importing this module installs the locators; kernels.cpu imports it before any kernel is
decorated. Two fixes to Numba's defaults, for the
kernel modules only (every other function keeps Numba's own locators):

- Staleness. Numba stamps a cached function with the hash of its own source file, but a
  kernel compiles in the jitted helpers it calls from sibling modules (stats.py): after an
  edit to stats.py, layer_norm.py's cached kernels would load with the old helper inside.
  Here the stamp is the hash of every .py file in the kernel's directory.
- Read-only installs. Numba tries NUMBA_CACHE_DIR, then the package's __pycache__, then
  ~/.cache/numba, and raises "no locator available" at import when none is writable (a
  read-only site-packages under a read-only home). Here a per-user directory under the
  system temp dir is the last resort.
- Damaged cache files. Numba unpickles the index and data files and lets any error escape,
  so one truncated or corrupted file made every later call of that kernel fail; and the
  data file it loads is the one the index names, unchecked, so two processes that cached
  different signatures at the same moment could leave an index pointing at the other
  signature's machine code. Here a kernel's cache entry that fails to load, or loads with
  another signature, is dropped and the kernel recompiled (and re-cached).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

from numba.core import caching, dispatcher

KERNELS_DIR = Path(__file__).resolve().parent


def _numba_class(name: str):
    """Numba dropped the leading underscore of some of these names in 0.60ish; take either."""
    return getattr(caching, name, None) or getattr(caching, "_" + name)


_CacheImpl = _numba_class("CacheImpl")
_UserProvided = _numba_class("UserProvidedCacheLocator")
_InTree = _numba_class("InTreeCacheLocator")
_UserWide = _numba_class("UserWideCacheLocator")


@functools.lru_cache(maxsize=None)
def _directory_hash(directory: Path, signature: tuple) -> bytes:
    """sha256 over the names and contents of the .py files in `directory`; `signature`
    (names, sizes, mtimes) is the cache key, so an edit while running is seen."""
    digest = hashlib.sha256()
    for name, _, _ in signature:
        digest.update(name.encode() + b"\0" + (directory / name).read_bytes())
    return digest.digest()


def sources_stamp(directory: Path) -> bytes:
    files = sorted(directory.glob("*.py"))
    signature = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _directory_hash(directory, signature)


def _is_kernel_source(py_file: str) -> bool:
    try:
        return Path(py_file).resolve().is_relative_to(KERNELS_DIR)
    except OSError:
        return False


class _KernelSourcesStamp:
    """Mixin: only for files of the kernels package; stamp = hash of the file's directory."""

    def get_source_stamp(self):
        return sources_stamp(Path(self._py_file).resolve().parent)

    @classmethod
    def from_function(cls, py_func, py_file):
        if not _is_kernel_source(py_file):
            return None
        return super().from_function(py_func, py_file)


class KernelUserProvidedLocator(_KernelSourcesStamp, _UserProvided):
    """NUMBA_CACHE_DIR, when the user set it."""


class KernelInTreeLocator(_KernelSourcesStamp, _InTree):
    """kernels/cpu/__pycache__, when the package is writable."""


class KernelUserWideLocator(_KernelSourcesStamp, _UserWide):
    """~/.cache/numba (or the platform's user cache directory)."""


class KernelTempDirLocator(_KernelSourcesStamp, caching._SourceFileBackedLocatorMixin,
                           caching._CacheLocator):
    """Last resort: <tempdir>/tinygrad_norm-numba-<uid>, when nothing above is writable."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        root = Path(tempfile.gettempdir()) / f"tinygrad_norm-numba-{os.getuid()}"
        self._cache_path = str(root / self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self):
        return self._cache_path


LOCATORS = [KernelUserProvidedLocator, KernelInTreeLocator, KernelUserWideLocator,
            KernelTempDirLocator]


class KernelFunctionCache(caching.FunctionCache):
    """Numba's per-function cache, recompiling instead of failing on a bad kernel entry."""

    def load_overload(self, sig, target_context):
        if not isinstance(self._impl.locator, _KernelSourcesStamp):
            return super().load_overload(sig, target_context)
        try:
            result = super().load_overload(sig, target_context)
        except Exception:  # truncated, corrupted or foreign pickle: unusable, not fatal
            self._drop_index()
            return None
        if result is not None and tuple(result.signature.args) != tuple(sig):
            self._drop_index()
            return None
        return result

    def _drop_index(self) -> None:
        """Forget every entry of this function, so the save after recompiling starts clean."""
        try:
            os.remove(self._cache_file._index_path)
        except FileNotFoundError:
            pass


def install() -> None:
    """Put the kernel locators in front of Numba's, and make new dispatchers use
    KernelFunctionCache (idempotent)."""
    classes = _CacheImpl._locator_classes
    if classes[: len(LOCATORS)] != LOCATORS:
        classes[:0] = LOCATORS
    dispatcher.FunctionCache = KernelFunctionCache


install()
