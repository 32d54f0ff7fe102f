"""Task interfaces. Concrete problems live in the top-level ``tasks`` package."""

from l2l_torch.tasks.base import (
    TEST_SEED_OFFSET,
    TUNE_SEED_OFFSET,
    VAL_SEED_OFFSET,
    Batch,
    Buffers,
    Params,
    Task,
    TaskFamily,
)

__all__ = ["Task", "TaskFamily", "Params", "Buffers", "Batch", "VAL_SEED_OFFSET", "TEST_SEED_OFFSET",
           "TUNE_SEED_OFFSET"]
