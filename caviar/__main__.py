"""`python -m caviar` and the `caviar` console script."""

from __future__ import annotations

import sys

from caviar.cli import main

if __name__ == "__main__":
    sys.exit(main())
