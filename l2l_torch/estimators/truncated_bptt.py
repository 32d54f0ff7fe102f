"""Truncated backpropagation through time: the paper's meta-gradient estimator."""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import Tensor

from l2l_torch.estimators.base import Estimate, GradientEstimator
from l2l_torch.learned_optimizers.base import LearnedOptimizerBase
from l2l_torch.population_unroll import population_obstacle, population_unroll
from l2l_torch.unroll import UnrollState, batched_unroll, truncated_unroll

log = logging.getLogger(__name__)
#: reasons for not stacking the task instances that have been logged (each once per process)
_LOGGED: set[str] = set()


class TruncatedBPTT(GradientEstimator):
    """Backpropagate the meta-loss of each truncation through its ``K`` unrolled steps.

    Each truncation is differentiated on its own: how theta changed the state it starts from is ignored, so
    the estimate of the whole horizon's gradient is biased, the more so the shorter the truncations. Memory
    grows linearly with ``K`` (``benchmarks/memory.py``).

    Args:
        second_order: keep second derivatives through the optimizee's gradients (the paper drops them).
        batch_tasks: step all optimizees of a meta-step with one learned-optimizer call over all their
            coordinates (:func:`~l2l_torch.unroll.batched_unroll`, same numbers as one by one, tested) when
            the optimizer allows it (``tasks_batchable``); the optimizees' forwards and backwards stay one by one.
        population: run the meta-step's task instances as one stacked population
            (:func:`~l2l_torch.population_unroll.population_unroll`: vectorised optimizee forward and backward and
            one learned-optimizer step for all, same numbers as one by one up to float rounding, tested) where they
            allow it (:func:`~l2l_torch.population_unroll.population_obstacle`). ``"auto"`` (default): on CUDA with
            two or more instances, where a step is bound by kernel launches; on CPUs the instances keep the paths
            above, whose fused LSTM cell is faster there (``benchmarks/launches.py``). ``True``: wherever possible
            (one log line per reason where not); ``False``: never.
    """

    def __init__(self, second_order: bool = False, batch_tasks: bool = False,
                 population: bool | Literal["auto"] = "auto") -> None:
        if population not in (True, False, "auto"):
            raise ValueError(f"population must be true, false or 'auto', got {population!r}")
        self.second_order, self.batch_tasks, self.population = second_order, batch_tasks, population

    def use_population(self, lopt: LearnedOptimizerBase, states: list[UnrollState]) -> bool:
        """Whether :meth:`estimate` stacks ``states`` into one population (see ``population``)."""
        if self.population is False or not states:
            return False
        if self.population == "auto" and (len(states) < 2 or states[0].task.device.type != "cuda"):
            return False
        reason = population_obstacle(lopt, states)
        if reason is not None and self.population is True and reason not in _LOGGED:
            _LOGGED.add(reason)
            log.info("TruncatedBPTT runs its task instances without stacking them: %s", reason)
        return reason is None

    def estimate(self, lopt: LearnedOptimizerBase, states: list[UnrollState], num_steps: int,
                 weights: Tensor | None) -> Estimate:
        if self.use_population(lopt, states):
            results = population_unroll(lopt, states, num_steps, weights, self.second_order)
        elif self.batch_tasks and len(states) > 1 and lopt.tasks_batchable:
            results = batched_unroll(lopt, states, num_steps, weights, self.second_order)
        else:
            results = [truncated_unroll(lopt, s, num_steps, weights, self.second_order) for s in states]
        return Estimate(results, torch.stack([r.meta_loss for r in results]).mean())
