"""``python -m precision``: the same as the ``precision`` command."""

import sys

from precision.cli import main

sys.exit(main())
