"""Fork-based multiprocessing after the parent ran a parallel kernel: the children finish and
compute what the parent computes (GNU OpenMP is not fork-safe; kernels/cpu/fork_safety.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import multiprocessing, threading
    import numpy as np
    import tinygrad_norm as tn

    x = np.random.default_rng(0).standard_normal((64, 4096)).astype(np.float32)  # > 65536
    layer = tn.nn.LayerNorm(4096)
    expected = layer(tn.Tensor(x)).detach().numpy().copy()  # the parallel kernel, in the parent

    def in_child(_):
        ys = [layer(tn.Tensor(x)).detach().numpy().copy()]
        thread = threading.Thread(target=lambda: ys.append(layer(tn.Tensor(x)).detach().numpy()))
        thread.start()  # a thread the child starts gets no OpenMP team either
        thread.join()
        return [float(np.abs(y - expected).max()) for y in ys]

    if __name__ == "__main__":
        with multiprocessing.get_context("fork").Pool(2) as pool:
            errors = pool.map_async(in_child, range(4)).get(timeout=30)
        assert all(len(e) == 2 and max(e) < 1e-5 for e in errors), errors
        print("ok", errors)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="fork is the default start method on Linux")
def test_fork_pool_after_a_parallel_kernel_finishes_with_the_parents_results(tmp_path):
    script = tmp_path / "fork_after_parallel.py"
    script.write_text(SCRIPT)
    run = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True,
                         text=True, timeout=90)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]
