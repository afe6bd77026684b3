"""2,000 SGD steps of a small CNN keep resident memory flat: the autograd graph of each step is
freed by reference counting as soon as the step ends (no reference cycles: the cyclic garbage
collector is off during the loop), and no cache grows with the number of steps.

A leaked graph would hold at least the step's activations (> 100 KB here), i.e. > 180 MB over
the measured 1,800 steps; the bound below is 16 MB, for allocator noise.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np

import tinygrad_norm as tn

STEPS = 2000
WARM_UP = 200
MAX_GROWTH_BYTES = 16 * 2**20
PAGE_BYTES = 4096


def resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES
    except FileNotFoundError:  # not Linux: peak RSS is the best available
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def small_cnn() -> tn.nn.Module:
    return tn.nn.Sequential(
        tn.nn.Conv2d(1, 8, 3, padding=1), tn.nn.BatchNorm2d(8), tn.nn.ReLU(),
        tn.nn.MaxPool2d(2), tn.nn.Flatten(), tn.nn.Linear(8 * 4 * 4, 10))


def test_training_memory_stays_flat_and_every_graph_is_freed():
    tn.manual_seed(0)
    model = small_cnn()
    optimizer = tn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = tn.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    images = rng.standard_normal((10, 32, 1, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 10, (10, 32))
    graphs = []  # weak references to one node of each step's graph
    gc.collect()
    gc.disable()
    try:
        for step in range(STEPS):
            optimizer.zero_grad()
            loss = loss_fn(model(tn.Tensor(images[step % 10])), tn.Tensor(labels[step % 10]))
            loss.backward()
            optimizer.step()
            if step % 100 == 0:
                graphs.append(weakref.ref(loss._ctx))
            if step == WARM_UP:
                resident_after_warm_up = resident_bytes()
                objects_after_warm_up = len(gc.get_objects())
        resident_at_end = resident_bytes()
        objects_at_end = len(gc.get_objects())
        del loss
        alive = [i for i, graph in enumerate(graphs) if graph() is not None]
    finally:
        gc.enable()
    assert np.isfinite(loss_fn(model(tn.Tensor(images[0])), tn.Tensor(labels[0])).item())
    assert alive == [], f"graphs of steps {[100 * i for i in alive]} are still alive"
    growth = resident_at_end - resident_after_warm_up
    assert growth < MAX_GROWTH_BYTES, f"resident memory grew by {growth / 2**20:.1f} MB"
    assert objects_at_end - objects_after_warm_up < 1000, (
        f"{objects_at_end - objects_after_warm_up} more live objects after "
        f"{STEPS - WARM_UP} steps")


PARTIALS_SCRIPT = """
import tracemalloc
import numpy as np
from kernels import cpu
rows, cols = 2, 40000  # > 65536 elements: the parallel path, with 16 threads for 2 rows
x = np.random.default_rng(0).standard_normal((rows, cols)).astype(np.float32)
w = np.ones(cols, np.float32)
ln = cpu.layer_norm_forward(x, w, w, 1e-5)
rms = cpu.rms_norm_forward(x, w, 1e-5)
x3 = x.reshape(rows, 4, cols // 4)
gn = cpu.group_norm_forward(x3, 1, np.ones(4, np.float32), None, 1e-5)
calls = [lambda: cpu.layer_norm_backward(x, x, ln[1], ln[2], w),
         lambda: cpu.rms_norm_backward(x, x, rms[1], w),
         lambda: cpu.group_norm_backward(x3, x3, gn[1], gn[2], 1, np.ones(4, np.float32))]
for call in calls:
    call()  # compiled
    tracemalloc.start()
    call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(peak)
"""


def test_backward_partials_are_sized_by_rows_not_threads():
    """One float64 partial row per chunk of work: with 16 threads and 2 rows, 2 rows of
    partials (LayerNorm and RMSNorm allocated 16: 10 MB here, 2 GiB at 64 threads and 4M
    columns), as BatchNorm already did."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, NUMBA_NUM_THREADS="16")
    run = subprocess.run([sys.executable, "-c", PARTIALS_SCRIPT], env=env, text=True,
                         capture_output=True, timeout=300,
                         cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode == 0, run.stderr[-2000:]
    cols = 40000
    outputs = 2 * cols * 4 + 2 * cols * 4  # dx, dweight and dbias of float32
    # per chunk and per sum: a float64 partial row and a float32 block row (kernels/cpu/stats.py)
    scratch = 2 * 2 * cols * (8 + 4)
    for peak in map(int, run.stdout.split()):
        assert peak < outputs + scratch + (256 << 10), peak
