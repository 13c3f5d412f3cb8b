"""Entry script of the PyInstaller build: the ``ionplan`` console script (planning.cli:main)."""

import sys

from planning.cli import main

if __name__ == "__main__":
    sys.exit(main())
