"""`python -m bench` (from the repository's root): the same as `python bench/run.py`."""

import sys

from bench.cli import main

sys.exit(main())
