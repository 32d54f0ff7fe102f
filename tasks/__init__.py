"""Tasks: the interfaces (:mod:`.base`) and the concrete optimizee problems, one file each.

This folder sits at the top of the repository and installs as ``l2l_torch.tasks``.
"""

from l2l_torch.tasks.base import (
    TEST_SEED_OFFSET,
    TUNE_SEED_OFFSET,
    VAL_SEED_OFFSET,
    Batch,
    Buffers,
    DataTaskFamily,
    Params,
    Task,
    TaskFamily,
)

__all__ = ["Task", "TaskFamily", "Params", "Buffers", "Batch", "VAL_SEED_OFFSET", "TEST_SEED_OFFSET",
           "TUNE_SEED_OFFSET", "DataTaskFamily"]
