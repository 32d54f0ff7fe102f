"""Analysis tools of the research (not part of the l2l_torch package): ``python -m research.tools.NAME``."""
