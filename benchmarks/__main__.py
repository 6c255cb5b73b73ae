"""``python -m benchmarks [--quick] [--parts 1,2,3,4,5] [--out results/bench]``."""

import sys

from benchmarks.bench import main

sys.exit(main())
