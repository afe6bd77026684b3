"""Numba's on-disk cache of the kernels (kernels/numba_cache.py) under hostile conditions.

Each test copies the `kernels` package (sources only, no cache) to a temporary "site" folder and
runs fresh Python processes against that copy, so the cache starts empty and the repository's
own cache is never touched. A child process reports whether each kernel came from the cache
(hit) or was compiled (miss), and checks its results against kernels.reference.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Runs layer_norm_forward (its serial kernel) for the given dtypes and prints
# {"hits": ..., "misses": ..., "kernels_from": ...} as JSON.
CHILD = r"""
import json, sys
import numpy as np
import kernels, kernels.reference as reference
from kernels import cpu
from kernels.cpu import layer_norm

for dtype in sys.argv[1].split(","):
    x = np.random.default_rng(0).standard_normal((8, 37)).astype(dtype)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(cpu.layer_norm_forward(x, None, None, 1e-5)[0],
                               reference.layer_norm_forward(x, None, None, 1e-5)[0], atol=tol)
kernel = layer_norm._forward_rows
print(json.dumps({
    "hits": sum(kernel.stats.cache_hits.values()),
    "misses": sum(kernel.stats.cache_misses.values()),
    "kernels_from": kernels.__file__,
}))
"""


@pytest.fixture
def site(tmp_path) -> Path:
    """A private copy of the kernels package: tmp_path/site/kernels."""
    shutil.copytree(REPO / "kernels", tmp_path / "site" / "kernels",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "home").mkdir()
    return tmp_path / "site"


def _env(site: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    env.update(PYTHONPATH=str(site), HOME=str(site.parent / "home"),
               TMPDIR=str(site.parent / "tmp"), XDG_CACHE_HOME=str(site.parent / "home/.cache"))
    return env


def _child_command(dtypes: str) -> list[str]:
    return [sys.executable, "-c", CHILD, dtypes]


def _report(process: subprocess.CompletedProcess) -> dict:
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


def run_child(site: Path, dtypes: str = "float32", prefix: tuple = ()) -> dict:
    process = subprocess.run([*prefix, *_child_command(dtypes)], env=_env(site),
                             cwd=site.parent, capture_output=True, text=True, timeout=300)
    report = _report(process)
    assert report["kernels_from"].startswith(str(site)), report
    return report


def _read_only_prefix(*folders: Path) -> tuple:
    """A command prefix under which `folders` are read-only: chmod for a normal user; for
    root, whom permissions do not stop, read-only bind mounts in a private mount namespace."""
    if os.geteuid() != 0:
        for folder in folders:
            for path in [folder, *folder.rglob("*")]:
                path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        return ()
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: cannot make a folder read-only")
    mounts = " && ".join(f"mount --bind -o ro '{f}' '{f}'" for f in folders)
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"{mounts} && true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create read-only mounts here: {probe.stderr.strip()}")
    return ("unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "sh")


def _cache_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc")]


def test_read_only_install_under_read_only_home_falls_back_to_temp_dir(site):
    """Before the fallback this failed at import: "cannot cache function 'chunk_bounds': no
    locator available for file .../kernels/cpu/stats.py"."""
    home = site.parent / "home"
    prefix = _read_only_prefix(site, home)
    try:
        first = run_child(site, prefix=prefix)
        second = run_child(site, prefix=prefix)
    finally:
        for path in [site, home, *site.rglob("*"), *home.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert first["misses"] == 1 and second["hits"] == 1, (first, second)
    assert not _cache_files(site) and not _cache_files(home)
    assert _cache_files(site.parent / "tmp"), "the cache should be in the temp dir"


def test_two_processes_compiling_into_one_cache_at_once_both_get_correct_results(site):
    # opposite dtype orders, so the two write different signatures at the same time
    children = [subprocess.Popen(_child_command(order), env=_env(site), cwd=site.parent,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for order in ("float32,float64", "float64,float32")]
    for child in children:
        stdout, stderr = child.communicate(timeout=300)
        _report(subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr))
    after = run_child(site, "float32,float64")  # checks the results of whatever was cached
    assert after["hits"] + after["misses"] == 2


def _entries(site: Path, kernel: str) -> tuple[Path, list[Path]]:
    folder = site / "kernels" / "cpu" / "__pycache__"
    return (next(folder.glob(f"{kernel}-*.nbi")), sorted(folder.glob(f"{kernel}-*.nbc")))


@pytest.mark.parametrize("damage", ["garbage index", "truncated data"])
def test_damaged_cache_file_is_ignored_and_rebuilt(site, damage):
    assert run_child(site)["misses"] == 1
    index, data = _entries(site, "layer_norm._forward_rows")
    target = index if "index" in damage else data[0]
    content = target.read_bytes()
    target.write_bytes(os.urandom(200) if "garbage" in damage else content[: len(content) // 3])
    assert run_child(site)["misses"] == 1, "the damaged entry should be recompiled"
    assert run_child(site)["hits"] == 1, "the rebuilt entry should be cached again"


def test_cache_entry_holding_another_signature_is_not_loaded(site):
    """What a race between two processes caching different signatures can leave behind: an
    index entry naming the data file of another signature. Loading it would run float64
    machine code on float32 arrays."""
    run_child(site, "float32")
    run_child(site, "float64")
    _, data = _entries(site, "layer_norm._forward_rows")
    assert len(data) == 2
    first, second = data[0].read_bytes(), data[1].read_bytes()
    data[0].write_bytes(second)
    data[1].write_bytes(first)
    report = run_child(site, "float32,float64")  # the child checks the results
    assert report["misses"] >= 1, report


def test_editing_a_shared_helper_invalidates_the_kernels_that_compile_it_in(site):
    """Numba alone stamps a kernel with its own file only: an edit to stats.py left
    layer_norm.py's cached kernels, which contain the old stats helpers, in use."""
    run_child(site)
    assert run_child(site)["hits"] == 1
    with open(site / "kernels" / "cpu" / "stats.py", "a") as stats_file:
        stats_file.write("\n# an edit\n")
    assert run_child(site)["misses"] == 1
