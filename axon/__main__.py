"""`python -m axon`: the same as the `axon` console script."""

import sys

from axon.cli import main

sys.exit(main())
