"""The MPI side of tests/test_distributed.py: `mpiexec -n N python tests/distributed_worker.py
SUITE` runs every check of SUITE on every rank, in one launch, and prints "ok <check>" on rank
0 for each. A failing check raises, and the exception hook of init_process_group aborts the
whole job with the message, so the pytest side sees a nonzero exit and the traceback.

Suites: "equivalence" (SyncBatchNorm and DDP against PyTorch and against one process; any
world size, the issue's shapes at 4 ranks) and "raise" (rank 1 raises while rank 0 waits).
"""

import sys

import numpy as np
import torch

import tinygrad_norm as tn
from tinygrad_norm import distributed as dist
from tinygrad_norm import nn
from tinygrad_norm.data import DataLoader, TensorDataset
from tinygrad_norm.experiments.models import make_cnn
from tinygrad_norm.nn.parallel import DistributedDataParallel

TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}
TORCH_BN = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d,
            5: torch.nn.BatchNorm3d}


def report(name: str) -> None:
    dist.barrier()
    if dist.get_rank() == 0:
        print(f"ok {name}", flush=True)


def close(ours, expected, dtype, what: str) -> None:
    ours = ours.data if isinstance(ours, tn.Tensor) else ours
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    np.testing.assert_allclose(ours, expected, err_msg=f"rank {dist.get_rank()}: {what}",
                               **TOL[dtype])


def check_sync_batch_norm(counts, tail, dtype, momentum=0.1, steps=2) -> None:
    """Rank r holds counts[r] samples of a global batch of shape (sum(counts), C, *tail);
    SyncBatchNorm (inside DDP) must equal torch's BatchNorm on the whole batch, each step:
    output, input gradient, parameter gradients (DDP's average times the world size, since
    the upstream gradient is a sum over samples) and running statistics."""
    rank, world = dist.get_rank(), dist.get_world_size()
    assert len(counts) == world
    channels = tail[0]
    rng = np.random.default_rng(7)  # the same global data on every rank
    weight, bias = rng.uniform(0.5, 1.5, channels), rng.standard_normal(channels)
    theirs = TORCH_BN[len(tail) + 1](channels, momentum=momentum, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight[:], theirs.bias[:] = torch.tensor(weight), torch.tensor(bias)
    layer = nn.SyncBatchNorm(channels, momentum=momentum, dtype=dtype)
    layer.weight.data[...], layer.bias.data[...] = weight, bias
    ours = DistributedDataParallel(layer)
    start, stop = sum(counts[:rank]), sum(counts[:rank + 1])
    for step in range(steps):
        shape = (sum(counts), *tail)
        x = (rng.standard_normal(shape) * 2 + 3).astype(dtype)
        grad = rng.standard_normal(shape).astype(dtype)
        tx = torch.tensor(x.astype(np.float64), requires_grad=True)
        ty = theirs(tx)
        ty.backward(torch.tensor(grad.astype(np.float64)))
        ours.zero_grad()
        xr = tn.Tensor(x[start:stop].copy(), requires_grad=True)
        y = ours(xr)
        y.backward(grad[start:stop].copy())
        what = f"{counts} {tail} {np.dtype(dtype)} step {step}"
        close(y, ty[start:stop], dtype, f"output {what}")
        close(xr.grad, tx.grad[start:stop], dtype, f"input gradient {what}")
        close(layer.weight.grad.data * world, theirs.weight.grad, dtype, f"dweight {what}")
        close(layer.bias.grad.data * world, theirs.bias.grad, dtype, f"dbias {what}")
        close(layer.running_mean, theirs.running_mean, dtype, f"running_mean {what}")
        close(layer.running_var, theirs.running_var, dtype, f"running_var {what}")
        assert int(layer.num_batches_tracked.data) == int(theirs.num_batches_tracked)
        theirs.zero_grad()


def check_eval_mode_is_local() -> None:
    """In eval mode SyncBatchNorm uses its running statistics and communicates nothing: with
    the collectives replaced by ones that fail, forward and backward still match torch."""
    rank = dist.get_rank()
    rng = np.random.default_rng(11 + rank)  # different data on each rank
    layer = nn.SyncBatchNorm(3, dtype=np.float64)
    layer.running_mean.data[...] = rng.standard_normal(3)
    layer.running_var.data[...] = rng.uniform(0.5, 2, 3)
    layer.weight.data[...] = rng.uniform(0.5, 1.5, 3)
    theirs = torch.nn.BatchNorm2d(3, dtype=torch.float64).eval()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in layer.state_dict().items()})
    layer.eval()
    x = rng.standard_normal((5, 3, 4, 4))
    grad = rng.standard_normal(x.shape)
    saved = dist.all_gather, dist.all_reduce, dist.broadcast, dist.barrier

    def no_communication(*args, **kwargs):
        raise AssertionError("SyncBatchNorm communicated in eval mode")

    dist.all_gather = dist.all_reduce = dist.broadcast = dist.barrier = no_communication
    try:
        xr = tn.Tensor(x, requires_grad=True)
        y = layer(xr)
        y.backward(grad)
    finally:
        dist.all_gather, dist.all_reduce, dist.broadcast, dist.barrier = saved
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty.backward(torch.tensor(grad))
    close(y, ty, np.float64, "eval output")
    close(xr.grad, tx.grad, np.float64, "eval input gradient")


def check_collective_errors() -> None:
    """Mismatched shapes across ranks raise the same clear error on every rank."""
    rank, world = dist.get_rank(), dist.get_world_size()
    values = np.full(3, float(rank + 1))
    dist.all_reduce(values)
    assert np.all(values == world * (world + 1) / 2), values
    tensor = tn.Tensor(np.array([rank], dtype=np.int64))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    assert tensor.item() == world - 1
    gathered = [np.empty(2) for _ in range(world)]
    dist.all_gather(gathered, np.array([rank, -rank], dtype=np.float64))
    assert [g[0] for g in gathered] == list(range(world))
    value = np.array([rank * 10.0])
    dist.broadcast(value, src=world - 1)
    assert value[0] == (world - 1) * 10.0
    for call in (lambda: dist.all_reduce(np.zeros(2 + rank)),
                 lambda: dist.broadcast(np.zeros((2, 2), np.float32 if rank else np.float64))):
        try:
            call()
        except ValueError as err:
            assert "every rank must pass the same shape and dtype" in str(err), err
            assert "rank 1: shape" in str(err), err
        else:
            raise AssertionError("a mismatched collective did not raise")
    for call, text in ((lambda: dist.all_gather([np.zeros(1)], np.zeros(1)), "world size"),
                       (lambda: dist.broadcast(np.zeros(1), src=world), "src must be a rank")):
        try:
            call()
        except ValueError as err:
            assert text in str(err), err
        else:
            raise AssertionError(f"no error containing {text!r}")


def check_ddp_construction_and_buckets() -> None:
    """Rank 0's parameters and buffers reach every rank; small buckets mean several
    all-reduces per backward but fewer than one per parameter; state_dict keys get the
    "module." prefix."""
    rank = dist.get_rank()
    tn.manual_seed(100 + rank)  # a different initialization on each rank
    model = make_cnn("batch", channels=4).double()
    model[1].running_mean.data[...] = rank
    ddp = DistributedDataParallel(model, bucket_cap_mb=2 ** -10)  # 1 KiB buckets
    for name, value in ddp.state_dict().items():
        assert name.startswith("module."), name
        everyone = [np.empty_like(value) for _ in range(dist.get_world_size())]
        dist.all_gather(everyone, value)
        for other in everyone:
            np.testing.assert_array_equal(other, value, err_msg=name)
    assert set(ddp.state_dict()) == {f"module.{k}" for k in model.state_dict()}
    assert ddp.module is model
    num_params = len(list(model.parameters()))
    assert 1 < len(ddp._buckets) < num_params, (len(ddp._buckets), num_params)
    calls = []
    original = dist.all_reduce

    def counting(tensor, op=dist.ReduceOp.SUM):
        calls.append(tensor.size)
        original(tensor, op)

    dist.all_reduce = counting
    try:
        x = tn.Tensor(np.random.default_rng(rank).standard_normal((4, 1, 8, 8)))
        nn.functional.cross_entropy(ddp(x), tn.Tensor(np.arange(4))).backward()
    finally:
        dist.all_reduce = original
    assert len(calls) == len(ddp._buckets), calls
    assert sum(calls) == sum(p.data.size for p in model.parameters())
    assert len(DistributedDataParallel(make_cnn("batch", channels=4))._buckets) == 1


def _train(model, batches, lr=0.05):
    optimizer = tn.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(tn.Tensor(x)), tn.Tensor(y))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def check_ddp_training_equals_one_process(steps=20, per_rank=8) -> None:
    """20 SGD steps of the digits CNN with SyncBatchNorm on every rank's 8 samples give the
    loss curve and the weights of single-process training with BatchNorm on the 8·world
    samples, in float64."""
    rank, world = dist.get_rank(), dist.get_world_size()
    rng = np.random.default_rng(5)
    images = rng.uniform(0, 1, (steps * per_rank * world, 1, 8, 8))
    labels = rng.integers(0, 10, len(images))
    dataset = TensorDataset(images, labels)
    sampler = dist.DistributedSampler(dataset, seed=3)
    sampler.set_epoch(1)
    mine = [(x.data, y.data) for x, y in DataLoader(dataset, batch_size=per_rank,
                                                    sampler=sampler)]
    assert len(mine) == steps
    # the ranks deal out one permutation round-robin, so a step's global batch, the union of
    # the ranks' batches of that step, is the next per_rank·world entries of it
    everything = dist.DistributedSampler(dataset, num_replicas=1, rank=0, seed=3)
    everything.set_epoch(1)
    order = np.fromiter(everything, dtype=np.int64).reshape(steps, per_rank * world)
    global_batches = [(images[index], labels[index]) for index in order]
    tn.manual_seed(0)
    single = make_cnn("batch", channels=4).double()
    tn.manual_seed(0)
    model = nn.SyncBatchNorm.convert_sync_batchnorm(make_cnn("batch", channels=4).double())
    single_losses = _train(single, global_batches)
    local_losses = _train(DistributedDataParallel(model), mine)
    losses = np.array(local_losses)
    dist.all_reduce(losses)
    np.testing.assert_allclose(losses / world, single_losses, rtol=1e-6,
                               err_msg=f"rank {rank}: loss curve")
    for (name, a), b in zip(model.state_dict().items(), single.state_dict().values()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9, err_msg=f"rank {rank}: {name}")


def equivalence() -> None:
    world = dist.get_world_size()
    check_collective_errors()
    report("collectives and their errors")
    for tail in ((3,), (3, 5), (2, 3, 4), (2, 2, 3, 2)):
        for dtype in (np.float64, np.float32):
            check_sync_batch_norm([8] * world, tail, dtype)
    report("SyncBatchNorm 1d/2d/3d float64/float32 equals BatchNorm on the whole batch")
    if world == 4:
        check_sync_batch_norm([3, 5, 0, 8], (3, 2, 2), np.float64)
        check_sync_batch_norm([0, 1, 0, 1], (2,), np.float64)
        report("SyncBatchNorm with uneven batches and empty ranks")
    check_sync_batch_norm([4] * world, (3, 2, 2), np.float64, momentum=None, steps=3)
    report("SyncBatchNorm momentum=None")
    check_eval_mode_is_local()
    report("SyncBatchNorm eval mode is local")
    check_ddp_construction_and_buckets()
    report("DDP broadcast, buckets and state_dict keys")
    check_ddp_training_equals_one_process()
    report("DDP training with SyncBatchNorm equals one process")


def fail_on_rank_1() -> None:
    if dist.get_rank() == 1:
        raise RuntimeError("rank 1 failed on purpose")
    dist.barrier()  # rank 0 would wait here forever without the abort
    raise AssertionError("rank 0 got past a barrier that rank 1 never joined")


if __name__ == "__main__":
    dist.init_process_group("mpi")
    {"equivalence": equivalence, "raise": fail_on_rank_1}[sys.argv[1]]()
    dist.destroy_process_group()
