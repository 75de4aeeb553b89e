"""``python -m cfc_bench``: the ``cfc-bench`` command, for environments without its script."""

import sys

from cfc_bench.cli import main

sys.exit(main())
