"""examples/ics.py: the internal covariate shift demonstration, parts a-f (--all: every part).

The code lives in tinygrad_norm.experiments.ics_demo, so `tinygrad-norm ics` runs the same
thing from any folder.
--help lists the flags; examples/README.md says what it shows.
"""

import sys

from tinygrad_norm.experiments.ics_demo import main

if __name__ == "__main__":
    sys.exit(main())
