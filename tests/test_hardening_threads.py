"""Kernels and layers called from several Python threads at once give bitwise the results of
serial calls: no shared scratch buffer, no race in the parallel (> 65536 elements) drivers, and
a thread-safe Numba threading layer (kernels/__init__.py never lets it be 'workqueue')."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest

import tinygrad_norm as tn
from kernels import cpu
from kernels.cases import CASES

THREADS = 4
SHAPES = [(6, 5, 7), (3, 8, 2731)]  # serial kernels; parallel drivers (65544 elements)


def _kernel_calls(shape, seed):
    """(name, thunk) pairs covering every kernel (kernels/cases.py), on inputs from `seed`."""
    n, c, s = shape
    calls = []
    for case in CASES:
        inputs = case.inputs(shape if case.layout == "ncs" else (n * c, s), np.float32, seed)
        saved = case.run_forward(cpu, inputs)
        calls += [(case.forward, lambda case=case, inputs=inputs:
                   case.run_forward(cpu, inputs)["y"]),
                  (case.backward, lambda case=case, inputs=inputs, saved=saved:
                   case.run_backward(cpu, inputs, saved))]
    return calls


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def _assert_bitwise_equal(a, b, what):
    for i, (u, v) in enumerate(zip(_as_tuple(a), _as_tuple(b))):
        assert u.tobytes() == v.tobytes(), f"{what}: output {i} differs from the serial call"


def test_threading_layer_is_thread_safe():
    assert numba.config.THREADING_LAYER in ("threadsafe", "tbb", "omp"), (
        numba.config.THREADING_LAYER)


@pytest.mark.parametrize("shape", SHAPES, ids=["serial-kernels", "parallel-kernels"])
def test_kernels_called_from_many_threads_match_serial_calls(shape):
    calls = [(f"{name} seed {seed}", thunk) for seed in range(3)
             for name, thunk in _kernel_calls(shape, seed)]
    expected = [thunk() for _, thunk in calls]
    work = calls * 3  # every call several times, interleaved across threads
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda call: call[1](), work))
    for (what, _), result, reference in zip(work, results, expected * 3):
        _assert_bitwise_equal(result, reference, what)


def _train_step(layer_kind: str, seed: int):
    """Forward and backward of a fresh layer on seeded data; returns every resulting array."""
    rng = np.random.default_rng(seed)
    layers = {
        "BatchNorm2d": lambda: tn.nn.BatchNorm2d(4),
        "InstanceNorm2d": lambda: tn.nn.InstanceNorm2d(4, affine=True, track_running_stats=True),
        "GroupNorm": lambda: tn.nn.GroupNorm(2, 4),
        "LayerNorm": lambda: tn.nn.LayerNorm([4, 9, 9]),
        "RMSNorm": lambda: tn.nn.RMSNorm([9]),
    }
    layer = layers[layer_kind]()
    size = (8, 4, 9, 9) if seed % 2 else (240, 4, 9, 9)  # the second is > 65536 elements
    x = tn.Tensor(rng.standard_normal(size).astype(np.float32), requires_grad=True)
    out = layer(x)
    (out * tn.Tensor(rng.standard_normal(out.shape).astype(np.float32))).sum().backward()
    arrays = [out.detach().numpy(), x.grad.numpy()]
    arrays += [p.grad.numpy() for p in layer.parameters()]
    arrays += [b.numpy() for b in layer.buffers()]
    return tuple(arrays)


LAYERS = ["BatchNorm2d", "InstanceNorm2d", "GroupNorm", "LayerNorm", "RMSNorm"]


def test_layers_trained_in_many_threads_match_serial_runs():
    jobs = [(kind, seed) for kind in LAYERS for seed in range(4)]
    expected = [_train_step(*job) for job in jobs]
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda job: _train_step(*job), jobs * 2))
    for job, result, reference in zip(jobs * 2, results, expected * 2):
        _assert_bitwise_equal(result, reference, f"{job}")


def test_one_layer_in_eval_mode_shared_by_many_threads_matches_serial_calls():
    layer = tn.nn.BatchNorm2d(4)
    layer.running_mean.data[...] = [0.5, -1, 2, 0]
    layer.running_var.data[...] = [1, 2, 0.5, 3]
    layer.eval()
    rng = np.random.default_rng(7)
    inputs = [rng.standard_normal((n, 4, 9, 9)).astype(np.float32) for n in (3, 900, 5, 1000)]

    def run(x):
        with tn.no_grad():
            return layer(tn.Tensor(x)).numpy()

    expected = [run(x) for x in inputs]
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(run, inputs * 4))
    for result, reference in zip(results, expected * 4):
        assert result.tobytes() == reference.tobytes()
