"""``python -m spikeport``: the same command line as ``spikeport``."""

import sys

from spikeport.cli import main

sys.exit(main())
