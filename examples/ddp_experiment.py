"""examples/ddp_experiment.py: the digits CNN trained on 8 MPI ranks with 2 samples each,
local BatchNorm vs SyncBatchNorm vs GroupNorm, and one process with BatchNorm on batch 16.

    python examples/ddp_experiment.py [--epochs 6 --figure examples/figures/ddp_small_batch.png]

It launches the runs itself with mpiexec (examples/train_ddp.py); examples/README.md says
what it shows.
"""

import sys

from tinygrad_norm.experiments.ddp_experiment import main

if __name__ == "__main__":
    sys.exit(main())
