"""Entry script of the PyInstaller build: the ``ionplan`` console script (app.launcher:main)."""

import sys

from app.launcher import main

if __name__ == "__main__":
    sys.exit(main())
