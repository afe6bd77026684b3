"""examples/train_cnn.py: train a small CNN on the 8x8 digits with
--norm none|batch|group|instance|layer and --batch-size.

The code lives in tinygrad_norm.experiments.train_cnn, so `tinygrad-norm train-cnn` runs the same
thing from any folder.
--help lists the flags; examples/README.md says what it shows.
"""

import sys

from tinygrad_norm.experiments.train_cnn import main

if __name__ == "__main__":
    sys.exit(main())
