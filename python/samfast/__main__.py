"""`python -m samfast ...`: same as the `samfast` console script (see samfast.cli)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
