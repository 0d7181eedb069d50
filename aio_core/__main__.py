"""`python -m aio_core`: see aio_core/cli.py."""

import sys

from aio_core.cli import main

sys.exit(main())
