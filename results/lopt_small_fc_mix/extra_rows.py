"""Kept so that the commands recorded in the COMMAND.md files still run: the comparison now lives in the
library as ``python -m l2l_torch.compare`` (same arguments)."""

from l2l_torch.compare import main

if __name__ == "__main__":
    main()
