"""Truncated backpropagation through time: the paper's meta-gradient estimator."""

from __future__ import annotations

import torch
from torch import Tensor

from l2l_torch.estimators.base import Estimate, GradientEstimator
from l2l_torch.learned_optimizers.base import LearnedOptimizerBase
from l2l_torch.unroll import UnrollState, batched_unroll, truncated_unroll


class TruncatedBPTT(GradientEstimator):
    """Backpropagate the meta-loss of each truncation through its ``K`` unrolled steps.

    Each truncation is differentiated on its own: how theta changed the state it starts from is ignored, so
    the estimate of the whole horizon's gradient is biased, the more so the shorter the truncations. Memory
    grows linearly with ``K`` (``benchmarks/memory.py``).

    Args:
        second_order: keep second derivatives through the optimizee's gradients (the paper drops them).
        batch_tasks: step all optimizees of a meta-step with one learned-optimizer call over all their
            coordinates (:func:`~l2l_torch.unroll.batched_unroll`, same numbers as one by one, tested) when
            the optimizer allows it (``tasks_batchable``); fewer, larger kernels, which GPUs favour.
    """

    def __init__(self, second_order: bool = False, batch_tasks: bool = False) -> None:
        self.second_order, self.batch_tasks = second_order, batch_tasks

    def estimate(self, lopt: LearnedOptimizerBase, states: list[UnrollState], num_steps: int,
                 weights: Tensor | None) -> Estimate:
        if self.batch_tasks and len(states) > 1 and lopt.tasks_batchable:
            results = batched_unroll(lopt, states, num_steps, weights, self.second_order)
        else:
            results = [truncated_unroll(lopt, s, num_steps, weights, self.second_order) for s in states]
        return Estimate(results, torch.stack([r.meta_loss for r in results]).mean())
