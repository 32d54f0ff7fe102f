"""Image classification with a research-only meta-objective term on accuracy.

Used by ``research/experiments/fmnist_t1_soft_error``.

On fmnist_t1 the learned LSTMs reach a lower test cross-entropy than tuned Adam but a lower test accuracy: the
meta-objective (the optimizee's cross-entropy along its training) rewards the loss, the goal is the accuracy. Here the
learned optimizer's meta-loss adds ``weight * soft error`` at every optimizee step, the soft error of a fresh
training batch (drawn from a stream of the instance's own) being ``mean(1 - softmax(output)[label])``, a smooth
stand-in for the error rate; checkpoint selection uses the validation error ``1 - val_accuracy``. The optimizee
itself still trains on cross-entropy alone, so an optimizer meta-trained here is deployed and evaluated like any
other (``evaluate.py --task fmnist_t1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from l2l_torch.tasks.image_classification import ImageClassificationFamily, ImageClassificationTask


def soft_error(logits: Tensor, labels: Tensor) -> Tensor:
    """``(N, C)`` logits and ``(N,)`` labels -> the scalar ``mean(1 - softmax(logits)[label])``, in ``[0, 1)``."""
    return 1.0 - logits.softmax(dim=-1).gather(-1, labels.unsqueeze(-1)).mean()


class SoftErrorTask(ImageClassificationTask):
    """:class:`ImageClassificationTask` whose meta-objective adds ``weight *`` :func:`soft_error` on a fresh
    training batch, and whose validation number is the validation error (``1 - val_accuracy``)."""

    def __init__(self, *args: Any, weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.weight = weight
        # the term's batches come from a stream of their own, so that the optimizee's training batches (the shared
        # generator's) are the plain task's; it is not part of a checkpoint (a resumed run draws other term batches)
        self._term_generator = self._fresh_term_generator()

    def _fresh_term_generator(self) -> torch.Generator:
        """The term's batch stream on :attr:`device`, from the instance's seed."""
        return torch.Generator(device=self.device).manual_seed(self.seed)

    def meta_penalty(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
                     generator: torch.Generator) -> Tensor | None:
        if not self.weight:
            return None
        batch = self.sample_batch("train", self._term_generator)
        out, _ = self.forward(params, buffers, self.inputs(batch), train=True)
        return self.weight * soft_error(out, batch[1])

    def validation_loss(self, final: Mapping[str, float], params: Mapping[str, Tensor] | None = None,
                        buffers: Mapping[str, Tensor] | None = None) -> float:
        """The validation error, ``1 - val_accuracy`` (NaN when the run reports no accuracy)."""
        return 1.0 - final.get("val_accuracy", float("nan"))

    def to(self, device: torch.device | str) -> SoftErrorTask:
        super().to(device)
        if self._term_generator.device != self.device:
            self._term_generator = self._fresh_term_generator()
        return self

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "soft_error_weight": self.weight}


class SoftErrorFamily(ImageClassificationFamily):
    """:class:`ImageClassificationFamily` whose instances are :class:`SoftErrorTask`\\ s of ``soft_error_weight``
    (every other argument as the parent's)."""

    def __init__(self, *args: Any, soft_error_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.soft_error_weight = soft_error_weight

    task_class = SoftErrorTask

    def task_options(self) -> dict[str, Any]:
        return {"weight": self.soft_error_weight}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "soft_error_weight": self.soft_error_weight}
