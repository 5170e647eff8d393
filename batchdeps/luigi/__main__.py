"""`python -m batchdeps.luigi --module m Task --param v`: the `luigi` command line."""

from __future__ import annotations

from .interface import main

if __name__ == "__main__":
    main()
