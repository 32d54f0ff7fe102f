"""Kept so that the commands recorded in the COMMAND.md files still run: the comparison now lives in the
library as ``python -m research.tools.compare`` (same arguments)."""

from research.tools.compare import main

if __name__ == "__main__":
    main()
