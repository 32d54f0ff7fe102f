"""Concrete optimizee problems. Each file builds on :mod:`l2l_torch.tasks`."""
