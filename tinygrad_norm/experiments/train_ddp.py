"""`tinygrad-norm train-ddp` / examples/train_ddp.py: data-parallel training of the digits CNN
over MPI, one process per rank:

    mpiexec -n 4 tinygrad-norm train-ddp --norm sync-batch --batch-size 8
    mpiexec -f hosts -n 8 python examples/train_ddp.py --norm group   # several machines

Every rank trains on its DistributedSampler share of the training set with a per-rank batch of
`--batch-size`; DistributedDataParallel averages the gradients. `--norm batch` is local
BatchNorm (statistics of the rank's own batch), `sync-batch` is SyncBatchNorm (statistics of
the global batch, ranks x batch size), `group` is GroupNorm. Without mpiexec it is one process
(world size 1): `--norm batch --batch-size 16` is BatchNorm on batch 16. Rank 0 evaluates on
the test set after every epoch and writes the results JSON.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

NORMS = ("batch", "sync-batch", "group")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--norm", choices=NORMS, default="sync-batch")
    parser.add_argument("--batch-size", type=int, default=2, help="samples per rank and step")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.05,
                        help="SGD (momentum 0.9) learning rate; / 10 for the last third of "
                             "the epochs")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="results JSON (default runs/ddp-NORM-nRANKS-bBATCH.json)")
    return parser


def _numba_threads_per_rank() -> int:
    """The cores of this machine shared among the ranks on it (ranks are the parallelism)."""
    from mpi4py import MPI

    local = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    threads = max(1, (os.cpu_count() or 1) // local.Get_size())
    local.Free()
    return threads


def run(args: argparse.Namespace) -> dict:
    import numba

    import kernels  # noqa: F401  (sets OpenMP's wait policy before Numba's threads start)

    from .. import distributed as dist
    from .. import nn, optim
    from ..data import DataLoader, TensorDataset, load_digits
    from ..nn.parallel import DistributedDataParallel
    from ..random import manual_seed
    from .blas import one_blas_thread
    from .models import make_cnn
    from .results import output_folder, write_json
    from .trainer import evaluate

    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    numba.set_num_threads(min(numba.config.NUMBA_NUM_THREADS, _numba_threads_per_rank()))
    manual_seed(args.seed)
    model = make_cnn("group" if args.norm == "group" else "batch", args.channels)
    if args.norm == "sync-batch":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = DistributedDataParallel(model)
    x_train, y_train, x_test, y_test = load_digits(seed=args.seed, images=True)
    train = TensorDataset(x_train, y_train)
    sampler = dist.DistributedSampler(train, seed=args.seed)
    # drop_last: every step has a full batch on every rank (the last one would be smaller)
    loader = DataLoader(train, args.batch_size, drop_last=True, sampler=sampler)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    history: dict[str, list[float]] = {"train_loss": [], "test_loss": [], "test_accuracy": []}
    if rank == 0:
        print(f"{world} rank(s), norm={args.norm}, batch {args.batch_size} per rank "
              f"({world * args.batch_size} per step), {len(loader)} steps per epoch")
    start = time.perf_counter()
    with one_blas_thread():
        for epoch in range(args.epochs):
            if epoch == args.epochs - args.epochs // 3:  # the step schedule of `ics` part (c)
                for group in optimizer.param_groups:
                    group["lr"] /= 10
            sampler.set_epoch(epoch)
            total = np.zeros(1)
            for x, y in loader:
                optimizer.zero_grad()
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                total += loss.item()
            dist.all_reduce(total)
            history["train_loss"].append(float(total[0]) / (world * len(loader)))
            test_loss, test_accuracy = evaluate(model, x_test, y_test)
            history["test_loss"].append(test_loss)
            history["test_accuracy"].append(test_accuracy)
            if rank == 0:
                print(f"epoch {epoch + 1:3d}  loss {history['train_loss'][-1]:.4f}  test loss "
                      f"{test_loss:.4f}  test error {100 * (1 - test_accuracy):.2f} %",
                      flush=True)
    seconds = time.perf_counter() - start
    config = {key: getattr(args, key) for key in ("norm", "batch_size", "epochs", "lr",
                                                    "channels", "seed")}
    results = {"config": {**config, "ranks": world}, "seconds": seconds, **history}
    if rank == 0:
        out = args.out or f"runs/ddp-{args.norm}-n{world}-b{args.batch_size}.json"
        write_json(output_folder(Path(out).parent) / Path(out).name, results)
        print(f"{seconds:.1f} s; wrote {os.path.abspath(out)}")
    dist.destroy_process_group()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    run(add_arguments(parser).parse_args(argv))
    return 0
