"""``python -m plugbox``: the ``plugbox`` command (see ``plugbox --help``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
