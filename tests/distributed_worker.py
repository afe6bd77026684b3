"""The MPI side of tests/test_distributed.py: `mpiexec -n N python tests/distributed_worker.py
SUITE` runs every check of SUITE on every rank, in one launch, and prints "ok <check>" on rank
0 for each. A failing check raises, and the exception hook of init_process_group aborts the
whole job with the message, so the pytest side sees a nonzero exit and the traceback.

Suites: "equivalence EXPECTED.npz" (SyncBatchNorm and DDP against PyTorch and against one
process; any world size, the issue's shapes at 4 ranks) and "raise" (rank 1 raises while rank
0 waits). PyTorch's results come from the pytest side (test_distributed.torch_expectations, on
the data that `sync_cases`/`case_data` and `eval_data` here define), so that the ranks need not
import torch.
"""

import sys

import numpy as np

import tinygrad_norm as tn
from tinygrad_norm import distributed as dist
from tinygrad_norm import nn
from tinygrad_norm.data import DataLoader, TensorDataset
from tinygrad_norm.experiments.models import make_cnn
from tinygrad_norm.nn.parallel import DistributedDataParallel

TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}


def sync_cases(world: int) -> list[dict]:
    """The SyncBatchNorm checks at this world size: per-rank sample counts, the shape after
    the batch dimension (BatchNorm1d without and with length, 2d, 3d), dtype, momentum."""
    cases = [dict(counts=[8] * world, tail=tail, dtype=dtype, momentum=0.1, steps=2)
             for tail in ((3,), (3, 5), (2, 3, 4), (2, 2, 3, 2))
             for dtype in (np.float64, np.float32)]
    if world == 4:
        cases += [dict(counts=[3, 5, 0, 8], tail=(3, 2, 2), dtype=np.float64, momentum=0.1,
                       steps=2),
                  dict(counts=[0, 1, 0, 1], tail=(2,), dtype=np.float64, momentum=0.1, steps=2)]
    cases.append(dict(counts=[4] * world, tail=(3, 2, 2), dtype=np.float64, momentum=None,
                      steps=3))
    for index, case in enumerate(cases):
        case["name"] = f"case{index}"
    return cases


def case_data(case: dict):
    """(weight, bias, [(x, grad) per step]) of the whole batch, the same on every rank."""
    rng = np.random.default_rng(7)
    channels = case["tail"][0]
    weight, bias = rng.uniform(0.5, 1.5, channels), rng.standard_normal(channels)
    shape = (sum(case["counts"]), *case["tail"])
    steps = [((rng.standard_normal(shape) * 2 + 3).astype(case["dtype"]),
              rng.standard_normal(shape).astype(case["dtype"])) for _ in range(case["steps"])]
    return weight, bias, steps


def eval_data(rank: int):
    """(running_mean, running_var, weight, x, grad) of rank `rank`'s eval-mode check."""
    rng = np.random.default_rng(11 + rank)  # different data on each rank
    running = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    weight = rng.uniform(0.5, 1.5, 3)
    x = rng.standard_normal((5, 3, 4, 4))
    return (*running, weight, x, rng.standard_normal(x.shape))


def report(name: str) -> None:
    dist.barrier()
    if dist.get_rank() == 0:
        print(f"ok {name}", flush=True)


def close(ours, expected, dtype, what: str) -> None:
    ours = ours.data if isinstance(ours, tn.Tensor) else ours
    np.testing.assert_allclose(ours, expected, err_msg=f"rank {dist.get_rank()}: {what}",
                               **TOL[dtype])


def check_sync_batch_norm(case: dict, expected) -> None:
    """Rank r holds counts[r] samples of the global batch; SyncBatchNorm (inside DDP) must
    equal torch's BatchNorm on the whole batch, each step: output, input gradient, parameter
    gradients (DDP's average times the world size, since the upstream gradient is a sum over
    samples) and running statistics."""
    rank, world = dist.get_rank(), dist.get_world_size()
    counts, dtype = case["counts"], case["dtype"]
    weight, bias, steps = case_data(case)
    layer = nn.SyncBatchNorm(len(weight), momentum=case["momentum"], dtype=dtype)
    layer.weight.data[...], layer.bias.data[...] = weight, bias
    ours = DistributedDataParallel(layer)
    start, stop = sum(counts[:rank]), sum(counts[:rank + 1])
    for step, (x, grad) in enumerate(steps):
        ours.zero_grad()
        xr = tn.Tensor(x[start:stop].copy(), requires_grad=True)
        y = ours(xr)
        y.backward(grad[start:stop].copy())
        key = f"{case['name']}/{step}"
        what = f"{counts} {case['tail']} {np.dtype(dtype)} momentum={case['momentum']} step {step}"
        close(y, expected[f"{key}/output"][start:stop], dtype, f"output {what}")
        close(xr.grad, expected[f"{key}/input_grad"][start:stop], dtype, f"dx {what}")
        close(layer.weight.grad.data * world, expected[f"{key}/weight_grad"], dtype,
              f"dweight {what}")
        close(layer.bias.grad.data * world, expected[f"{key}/bias_grad"], dtype, f"dbias {what}")
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            close(getattr(layer, name), expected[f"{key}/{name}"], dtype, f"{name} {what}")


def check_eval_mode_is_local(expected) -> None:
    """In eval mode SyncBatchNorm uses its running statistics and communicates nothing: with
    the collectives replaced by ones that fail, forward and backward still match torch."""
    rank = dist.get_rank()
    running_mean, running_var, weight, x, grad = eval_data(rank)
    layer = nn.SyncBatchNorm(3, dtype=np.float64).eval()
    layer.running_mean.data[...], layer.running_var.data[...] = running_mean, running_var
    layer.weight.data[...] = weight
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
    close(y, expected[f"eval/{rank}/output"], np.float64, "eval output")
    close(xr.grad, expected[f"eval/{rank}/input_grad"], np.float64, "eval input gradient")


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


def _train(model, batches) -> list[float]:
    """SGD with momentum over `batches`; the loss of each step."""
    optimizer, losses = tn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), []
    for x, y in batches:
        optimizer.zero_grad()
        losses.append(nn.functional.cross_entropy(model(tn.Tensor(x)), tn.Tensor(y)))
        losses[-1].backward()
        optimizer.step()
    return [loss.item() for loss in losses]


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


def equivalence(expected_path: str) -> None:
    world = dist.get_world_size()
    expected = np.load(expected_path)
    check_collective_errors()
    report("collectives and their errors")
    for case in sync_cases(world):
        check_sync_batch_norm(case, expected)
    report("SyncBatchNorm equals BatchNorm on the whole batch: 1d/2d/3d, float64/float32, "
           "momentum=None" + (", uneven batches and empty ranks" if world == 4 else ""))
    check_eval_mode_is_local(expected)
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
    {"equivalence": equivalence, "raise": fail_on_rank_1}[sys.argv[1]](*sys.argv[2:])
    dist.destroy_process_group()
