"""tinygrad_norm.distributed, nn.SyncBatchNorm and nn.parallel.DistributedDataParallel.

The multi-process checks run under `mpiexec -n 4` and `-n 2` (tests/distributed_worker.py:
one launch per world size runs all its checks, against PyTorch's BatchNorm, computed here and
handed over in a file, and against single-process training); the rest runs here, in one
process without MPI: behaviour without a process group, convert_sync_batchnorm,
DistributedSampler, and the errors. mpiexec comes from the `distributed` extra (the mpich
wheel), next to this Python, as in a fresh venv.
"""

import os
import subprocess
import sys
from pathlib import Path

import distributed_worker as worker
import numpy as np
import pytest
import torch

import tinygrad_norm as tn
from tinygrad_norm import distributed as dist
from tinygrad_norm import nn
from tinygrad_norm.experiments.models import make_cnn

WORKER = Path(__file__).with_name("distributed_worker.py")
TORCH_BATCH_NORM = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d,
                    5: torch.nn.BatchNorm3d}


def torch_expectations(world: int) -> dict:
    """PyTorch's BatchNorm, in float64 on the whole batch, for every check of the worker:
    output, gradients and buffers after each step; and the eval-mode results per rank."""
    expected = {}
    for case in worker.sync_cases(world):
        weight, bias, steps = worker.case_data(case)
        layer = TORCH_BATCH_NORM[len(case["tail"]) + 1](len(weight), momentum=case["momentum"],
                                                        dtype=torch.float64)
        with torch.no_grad():
            layer.weight[:], layer.bias[:] = torch.tensor(weight), torch.tensor(bias)
        for step, (x, grad) in enumerate(steps):
            layer.zero_grad()
            tx = torch.tensor(x.astype(np.float64), requires_grad=True)
            y = layer(tx)
            y.backward(torch.tensor(grad.astype(np.float64)))
            results = dict(output=y, input_grad=tx.grad, weight_grad=layer.weight.grad,
                           bias_grad=layer.bias.grad, running_mean=layer.running_mean,
                           running_var=layer.running_var,
                           num_batches_tracked=layer.num_batches_tracked)
            for name, value in results.items():
                expected[f"{case['name']}/{step}/{name}"] = value.detach().numpy().copy()
    for rank in range(world):
        running_mean, running_var, weight, x, grad = worker.eval_data(rank)
        layer = torch.nn.BatchNorm2d(3, dtype=torch.float64).eval()
        with torch.no_grad():
            layer.running_mean[:], layer.running_var[:] = (torch.tensor(running_mean),
                                                           torch.tensor(running_var))
            layer.weight[:] = torch.tensor(weight)
        tx = torch.tensor(x, requires_grad=True)
        y = layer(tx)
        y.backward(torch.tensor(grad))
        expected[f"eval/{rank}/output"] = y.detach().numpy()
        expected[f"eval/{rank}/input_grad"] = tx.grad.numpy()
    return expected


def _mpiexec() -> str:
    path = Path(sys.executable).parent / "mpiexec"
    assert path.exists(), (f"no mpiexec next to {sys.executable}: install the distributed "
                           f"extra (pip install 'tinygrad_norm[distributed]')")
    return str(path)


def _launch(ranks: int, suite: str, timeout: float,
            args: tuple = ()) -> subprocess.CompletedProcess:
    # the ranks are the parallelism: one Numba thread each, and OpenMP threads that sleep
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_WAIT_POLICY="passive")
    return subprocess.run([_mpiexec(), "-n", str(ranks), sys.executable, str(WORKER), suite,
                           *args],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL, cwd=WORKER.parent.parent)


@pytest.mark.parametrize("ranks", [4, 2])
def test_sync_batch_norm_and_ddp_across_ranks_equal_one_process(ranks, tmp_path):
    expected = tmp_path / "expected.npz"
    np.savez(expected, **torch_expectations(ranks))
    result = _launch(ranks, "equivalence", timeout=300, args=[str(expected)])
    assert result.returncode == 0, result.stdout + result.stderr
    uneven = ", uneven batches and empty ranks" if ranks == 4 else ""
    checks = ["collectives and their errors",
              "SyncBatchNorm equals BatchNorm on the whole batch: 1d/2d/3d, float64/float32, "
              f"momentum=None{uneven}",
              "SyncBatchNorm eval mode is local", "DDP broadcast, buckets and state_dict keys",
              "DDP training with SyncBatchNorm equals one process"]
    assert result.stdout.split("\n")[:-1] == [f"ok {name}" for name in checks], result.stdout


def test_a_rank_that_raises_ends_the_job_with_its_message():
    """Rank 1 raises while rank 0 waits in a barrier that rank 1 never joins: the job ends
    (well within the timeout) with rank 1's error instead of hanging."""
    result = _launch(2, "raise", timeout=60)
    assert result.returncode != 0
    assert "[rank 1]" in result.stderr and "RuntimeError: rank 1 failed on purpose" in (
        result.stderr), result.stderr
    assert "got past a barrier" not in result.stdout + result.stderr


def _batch_norm_pair(dtype=np.float64):
    rng = np.random.default_rng(0)
    sync, plain = nn.SyncBatchNorm(3, dtype=dtype), nn.BatchNorm2d(3, dtype=dtype)
    sync.weight.data[...] = plain.weight.data[...] = rng.uniform(0.5, 1.5, 3)
    return sync, plain


def test_sync_batch_norm_without_a_process_group_is_batch_norm():
    assert not dist.is_initialized()
    sync, plain = _batch_norm_pair()
    rng = np.random.default_rng(1)
    for mode in ("train", "train", "eval"):
        for layer in (sync, plain):
            layer.train(mode == "train")
        x, grad = rng.standard_normal((4, 3, 5, 2)) + 2, rng.standard_normal((4, 3, 5, 2))
        xs, xp = tn.Tensor(x, requires_grad=True), tn.Tensor(x, requires_grad=True)
        ys, yp = sync(xs), plain(xp)
        ys.backward(grad)
        yp.backward(grad)
        np.testing.assert_array_equal(ys.data, yp.data)
        np.testing.assert_array_equal(xs.grad.data, xp.grad.data)
        np.testing.assert_array_equal(sync.weight.grad.data, plain.weight.grad.data)
    for key, value in plain.state_dict().items():
        np.testing.assert_array_equal(sync.state_dict()[key], value, err_msg=key)


def test_sync_batch_norm_checks_its_input_like_batch_norm():
    layer = nn.SyncBatchNorm(3)
    with pytest.raises(ValueError, match=r"expected at least 2D input \(got 1D input\)"):
        layer(tn.Tensor(np.zeros(3, np.float32)))
    with pytest.raises(RuntimeError, match="input has 4 channels in dimension 1"):
        layer(tn.Tensor(np.zeros((2, 4), np.float32)))
    with pytest.raises(ValueError, match="only the default process group"):
        nn.SyncBatchNorm(3, process_group="group")


def test_convert_sync_batchnorm_shares_parameters_and_buffers():
    model = make_cnn("batch", channels=4).double().eval()
    before = model.state_dict()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    syncs = [m for m in converted.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(syncs) == len(norms) == 3
    assert not any(isinstance(m, nn.BatchNorm2d) for m in converted.modules())
    for sync, norm in zip(syncs, norms):
        assert sync.weight is norm.weight and sync.running_mean is norm.running_mean
        assert not sync.training and sync.num_features == norm.num_features
    assert list(converted.state_dict()) == list(before)
    single = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm1d(5, momentum=None))
    assert isinstance(single, nn.SyncBatchNorm) and single.momentum is None


def test_distributed_sampler_shards_cover_the_data_and_change_with_the_epoch():
    data = list(range(10))
    shards = [list(dist.DistributedSampler(data, num_replicas=4, rank=r)) for r in range(4)]
    assert all(len(s) == 3 for s in shards)  # 10 padded to 12 with repeated indices
    assert set(sum(shards, [])) == set(data) and len(sum(shards, [])) == 12
    sampler = dist.DistributedSampler(data, num_replicas=4, rank=1, seed=5)
    first = list(sampler)
    assert list(sampler) == first  # the same epoch gives the same order
    sampler.set_epoch(1)
    assert list(sampler) != first
    dropped = [list(dist.DistributedSampler(data, 4, r, drop_last=True)) for r in range(4)]
    flat = sum(dropped, [])
    assert len(flat) == 8 and len(set(flat)) == 8
    ordered = [list(dist.DistributedSampler(data, 2, r, shuffle=False)) for r in range(2)]
    assert ordered == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    with pytest.raises(ValueError, match="0 <= rank < num_replicas"):
        dist.DistributedSampler(data, num_replicas=2, rank=2)


def test_collectives_without_init_process_group_say_so():
    for call in (dist.get_rank, dist.get_world_size, dist.barrier,
                 lambda: dist.all_reduce(np.zeros(2)), lambda: dist.broadcast(np.zeros(1)),
                 lambda: nn.parallel.DistributedDataParallel(nn.Linear(2, 2))):
        with pytest.raises(RuntimeError, match="init_process_group"):
            call()
    with pytest.raises(ValueError, match="backend must be 'mpi'"):
        dist.init_process_group("nccl")
    with pytest.raises(RuntimeError, match="not initialized"):
        dist.destroy_process_group()
