"""Every launch path of kernels.cuda, reached at small shapes by shrinking the launch
geometry (helpers.geometry): each row-length bucket of the warp-per-row kernels with
several rows per warp and idle warps, the block-per-row kernels with the row in registers
and those of longer rows with and without the shared-memory row cache, fewer backward warps
when their shared partial rows do not fit, several partial rows, GroupNorm's per-(sample,
channel) sums over several trips and its sets split over several blocks, BatchNorm's merge
of more partials than a warp has lanes and of several channel blocks, float64. Checked
against kernels.reference (float64 NumPy) and for bitwise determinism. Runs under the
simulator or on a GPU (tests/conftest.py)."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
from numba import cuda as numba_cuda
from numba import float64

from kernels import reference
from tinygrad_norm import device

if device._cuda_unavailable_reason() is not None:
    pytest.skip(f"no CUDA device or simulator: {device._cuda_unavailable_reason()}",
                allow_module_level=True)

from kernels import cuda  # noqa: E402
from kernels.cuda import batch_norm, helpers, layer_norm  # noqa: E402

TOL = {np.float32: dict(atol=3e-5, rtol=1e-4), np.float64: dict(atol=1e-10, rtol=1e-8)}
BUCKETS = helpers.GEOMETRY.row_buckets


def dev(*arrays):
    return [None if a is None else device.to_device(a, "cuda") for a in arrays]


def host(*arrays):
    return [device.to_host(a) for a in arrays]


def check(ours, expected, dtype, what):
    for i, (a, b) in enumerate(zip(host(*ours), expected)):
        assert a.dtype == dtype, f"{what} output {i} has dtype {a.dtype}"
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale,
                                   err_msg=f"{what} output {i}")


def data(shape, dtype=np.float32, seed=0, affine=True, features=None):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) + 3.0).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    features = features or shape[-1]
    weight = (1 + 0.5 * rng.standard_normal(features)).astype(dtype) if affine else None
    bias = rng.standard_normal(features).astype(dtype) if affine else None
    return x, dy, weight, bias


def twice(function):
    """function() run twice: results must be bitwise equal (no atomics, fixed orders)."""
    first, second = host(*function()), host(*function())
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    return first


def layer_norm_round_trip(x, dy, weight, bias, dtype):
    y, mean, inv_std = cuda.layer_norm_forward(*dev(x, weight, bias), 1e-5)
    check((y, mean, inv_std), reference.layer_norm_forward(x, weight, bias, 1e-5), dtype, "fwd")
    grads = twice(lambda: cuda.layer_norm_backward(*dev(dy, x), mean, inv_std, *dev(weight)))
    expected = reference.layer_norm_backward(dy, x, *host(mean, inv_std), weight)
    check(grads, expected, dtype, "backward")


# One row-length per bucket (the longest row of the bucket, and a ragged one), 5 rows on
# one block of 2 warps: every warp takes several rows and one warp idles on the last trip.
@pytest.mark.parametrize("per_lane", BUCKETS)
def test_layer_norm_each_warp_bucket_with_rows_per_warp(per_lane):
    cols = helpers.WARP * per_lane - 3
    assert helpers.row_bucket(cols, np.float32) == per_lane
    x, dy, weight, bias = data((5, cols), seed=per_lane)
    with helpers.geometry(block=64, blocks=1):
        layer_norm_round_trip(x, dy, weight, bias, np.float32)


def test_layer_norm_backward_partial_rows_of_several_blocks_float64():
    x, dy, weight, bias = data((9, 40), np.float64, seed=7)
    with helpers.geometry(block=64, blocks=3):
        assert helpers.blocks_for(9, 2) == 3
        layer_norm_round_trip(x, dy, weight, bias, np.float64)


def test_layer_norm_backward_shrinks_its_warps_to_fit_shared_memory():
    x, dy, weight, bias = data((4, 40), seed=8)
    with helpers.geometry(block=64, blocks=1, shared_bytes=2 * 40 * 4):
        assert layer_norm.backward_warps(40, 4, partials=2) == 1
        layer_norm_round_trip(x, dy, weight, bias, np.float32)


# Rows longer than a warp's registers: a block per row with the row in registers (64
# threads hold 256 columns), or (32 threads hold 128) the long-row kernels with the row
# cached in shared memory or loaded again, where the backward's shared partial row does not
# fit either; 3 rows on 2 blocks, so one block adds a second row into its partial row.
@pytest.mark.parametrize("block, shared_bytes", [(64, 47 * 1024), (32, 47 * 1024), (32, 64)])
def test_layer_norm_block_rows_in_registers_and_long_rows(block, shared_bytes):
    cols = helpers.WARP_ROW_MAX + 21
    assert helpers.row_bucket(cols, np.float32) is None
    in_registers = helpers.row_bucket(cols, np.float32, threads=block) is not None
    assert in_registers == (block == 64)
    x, dy, weight, bias = data((3, cols), seed=9)
    with helpers.geometry(block=block, blocks=2, shared_bytes=shared_bytes):
        layer_norm_round_trip(x, dy, weight, bias, np.float32)


def test_layer_norm_without_bias():
    x, dy, weight, _ = data((3, 40), seed=10)
    y, mean, inv_std = cuda.layer_norm_forward(*dev(x, weight), None, 1e-5)
    check((y,), reference.layer_norm_forward(x, weight, None, 1e-5)[:1], np.float32, "fwd")


@pytest.mark.parametrize("cols, affine, block", [
    (helpers.WARP * BUCKETS[-1], True, 64), (40, False, 64),
    (helpers.WARP_ROW_MAX + 5, False, 64), (helpers.WARP_ROW_MAX + 5, True, 32)])
def test_rms_norm_paths(cols, affine, block):
    x, dy, weight, _ = data((5, cols), seed=11, affine=affine)
    with helpers.geometry(block=block, blocks=1):
        y, inv_rms = cuda.rms_norm_forward(*dev(x, weight), 1e-6)
        check((y, inv_rms), reference.rms_norm_forward(x, weight, 1e-6), np.float32, "fwd")
        grads = twice(lambda: cuda.rms_norm_backward(*dev(dy, x), inv_rms, *dev(weight)))
    expected = reference.rms_norm_backward(dy, x, *host(inv_rms), weight)
    check(grads, expected[:len(grads)], np.float32, "backward")


# (shape, num_groups, blocks, block): sets in a warp bucket with per-channel affine; spatial
# longer than a warp's UNROLL trip (channel_sums loops) and one set split over several
# blocks; sets longer than a warp's registers (a block per set, in registers or not).
@pytest.mark.parametrize("shape, num_groups, blocks, block", [
    ((3, 4, 5), 2, 1, 64),
    ((1, 2, helpers.WARP * batch_norm.UNROLL + 3), 1, 4, 64),
    ((2, 2, helpers.WARP_ROW_MAX // 2 + 7), 1, 2, 64),
    ((2, 2, helpers.WARP_ROW_MAX // 2 + 7), 1, 2, 32),
])
def test_group_norm_paths(shape, num_groups, blocks, block):
    x, dy, weight, bias = data(shape, seed=12, features=shape[1])
    with helpers.geometry(block=block, blocks=blocks):
        forward = cuda.group_norm_forward(*dev(x), num_groups, *dev(weight, bias), 1e-5)
        _, mean, inv_std, _ = forward
        grads = twice(lambda: cuda.group_norm_backward(*dev(dy, x), mean, inv_std, num_groups,
                                                       *dev(weight)))
    check(forward, reference.group_norm_forward(x, num_groups, weight, bias, 1e-5),
          np.float32, "forward")
    expected = reference.group_norm_backward(dy, x, *host(mean, inv_std), num_groups, weight)
    check(grads, expected, np.float32, "backward")


def test_batch_norm_merges_more_partials_than_lanes():
    # one channel over 36 blocks of 32 threads: lane 0..3 merge two partials each
    shape = (3, 1, 400)
    x, dy, weight, bias = data(shape, seed=13, features=1)
    with helpers.geometry(block=32, blocks=36):
        assert batch_norm._grid(np.empty(shape))[0] == 36
        outputs = host(*cuda.batch_norm_forward_train(*dev(x, weight, bias), 1e-5))
        grads = twice(lambda: cuda.batch_norm_backward(*dev(dy, x), *dev(*outputs[1:3]),
                                                       *dev(weight)))
    check(outputs, reference.batch_norm_forward_train(x, weight, bias, 1e-5), np.float32, "fwd")
    expected = reference.batch_norm_backward(dy, x, *outputs[1:3], weight)
    check(grads, expected, np.float32, "backward")


def test_batch_norm_channels_over_several_merge_blocks_float64():
    shape = (2, batch_norm.MERGE_WARPS + 2, 7)
    x, dy, weight, bias = data(shape, np.float64, seed=14, features=shape[1])
    rng = np.random.default_rng(15)
    running_mean = rng.standard_normal(shape[1])
    running_var = 0.5 + rng.random(shape[1])
    with helpers.geometry(block=32, blocks=shape[1]):
        outputs = cuda.batch_norm_forward_train(*dev(x, weight, bias), 1e-5)
        y_eval = cuda.batch_norm_forward_eval(*dev(x, running_mean, running_var, weight, bias),
                                              1e-5)
        grads_eval = cuda.batch_norm_backward_eval(*dev(dy, x, running_mean, running_var,
                                                        weight), 1e-5)
    check(outputs, reference.batch_norm_forward_train(x, weight, bias, 1e-5), np.float64, "fwd")
    check((y_eval,), (reference.batch_norm_forward_eval(x, running_mean, running_var, weight,
                                                        bias, 1e-5),), np.float64, "eval")
    check(grads_eval, reference.batch_norm_backward_eval(dy, x, running_mean, running_var,
                                                         weight, 1e-5), np.float64, "eval bwd")


@pytest.mark.skipif(not helpers.SIMULATOR, reason="the switch interval is a simulator setting")
def test_simulator_hands_the_gil_over_quickly():
    """kernels/cuda/simulator.py shortens CPython's 5 ms switch interval under the simulator (one
    Python thread per CUDA thread): at 5 ms this suite's simulator tests take ~4x longer."""
    assert sys.getswitchinterval() <= 2e-4


@pytest.mark.skipif(not helpers.SIMULATOR, reason="a fix of the simulator")
def test_simulator_gives_every_thread_of_a_block_the_same_shared_array(monkeypatch):
    """kernels/cuda/simulator.py: numba's simulator made a block's shared array with no lock
    between its look-up and its store, so a thread switch there gave two threads two arrays
    (in CI: a wrong BatchNorm weight gradient in the first block). A sleeping np.empty puts
    a thread switch there on every call."""
    numpy_empty = np.empty

    def slow_empty(*args, **kwargs):
        time.sleep(1e-3)
        return numpy_empty(*args, **kwargs)

    @numba_cuda.jit
    def block_total(out):
        scratch = numba_cuda.shared.array(32, float64)
        scratch[numba_cuda.threadIdx.x] = 1.0
        numba_cuda.syncthreads()
        if numba_cuda.threadIdx.x == 0:
            total = 0.0
            for t in range(numba_cuda.blockDim.x):
                total += scratch[t]
            out[numba_cuda.blockIdx.x] = total

    out = np.zeros(2)
    with monkeypatch.context() as patch:
        patch.setattr(np, "empty", slow_empty)
        block_total[2, 32](out)
    np.testing.assert_array_equal(out, [32.0, 32.0])
