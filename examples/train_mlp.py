"""examples/train_mlp.py: train an MLP on digits with --norm none|batch|layer|rms and
--init default|normal; checkpoints every epoch, --resume continues bit for bit.

The code lives in tinygrad_norm.experiments.train_mlp, so `tinygrad-norm train` runs the same
thing from any folder.
--help lists the flags; examples/README.md says what it shows.
"""

import sys

from tinygrad_norm.experiments.train_mlp import main

if __name__ == "__main__":
    sys.exit(main())
