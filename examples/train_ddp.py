"""examples/train_ddp.py: data-parallel training of the digits CNN over MPI, e.g.

    mpiexec -n 4 python examples/train_ddp.py --norm sync-batch|batch|group --batch-size 2

The code lives in tinygrad_norm.experiments.train_ddp, so `mpiexec -n 4 tinygrad-norm
train-ddp` runs the same thing; examples/ddp_experiment.py compares the norms at 8 ranks.
"""

import sys

from tinygrad_norm.experiments.train_ddp import main

if __name__ == "__main__":
    sys.exit(main())
