"""The interface of a meta-gradient estimator: one truncation of the optimizees in flight -> one meta-gradient.

An estimator owns what it needs across truncations (PES: the perturbations accumulated by its particles) and
saves it with the run (:meth:`GradientEstimator.state_dict`). :class:`~l2l_torch.meta_module.MetaModule` asks it
for particles when fresh optimizees start (:meth:`GradientEstimator.start`) and for an :class:`Estimate` every
meta-step; it never branches on the estimator's type.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from l2l_torch.learned_optimizers.base import LearnedOptimizerBase
from l2l_torch.unroll import UnrollResult, UnrollState


@dataclass
class Estimate:
    """One truncation's meta-gradient. Tensors stay on the device."""

    results: list[UnrollResult]  #: per particle, its truncation (``results[i].state`` continues particle ``i``)
    meta_loss: Tensor  #: scalar: the particles' mean meta-loss; carries the graph to theta when ``grad`` is None
    grad: Tensor | None = None  #: ``(P,)`` flat meta-gradient when the estimator computed it (else: backprop)
    logs: dict[str, Tensor] = field(default_factory=dict)  #: extra figures to log (``meta_train/<name>``)


class GradientEstimator(abc.ABC):
    """Turns a truncation of ``num_steps`` optimizee steps into an estimate of d meta-loss / d theta."""

    #: optimizees run per sampled task instance (PES: an antithetic pair)
    particles_per_task: int = 1

    def start(self, lopt: LearnedOptimizerBase, states: list[UnrollState]) -> list[UnrollState]:
        """The particles to run for fresh optimizees ``states`` (one per task instance); resets any per-optimizee
        state of the estimator. Returns ``particles_per_task`` states per task instance, task-major."""
        return states

    @abc.abstractmethod
    def estimate(self, lopt: LearnedOptimizerBase, states: list[UnrollState], num_steps: int,
                 weights: Tensor | None) -> Estimate:
        """Run every particle ``num_steps`` steps from ``states`` and estimate the meta-gradient.

        Args:
            lopt: the learned optimizer (its parameters are theta).
            states: the particles in flight, as returned by :meth:`start` or the last estimate's results.
            num_steps: the truncation's length ``K``.
            weights: ``(K,)`` meta-loss weights of the steps, or None for equal weights.
        """

    def state_dict(self) -> dict[str, Any]:
        """What must survive a checkpoint (tensors on the CPU)."""
        return {}

    def load_state_dict(self, state: dict[str, Any], device: Any) -> bool:
        """Restore :meth:`state_dict` onto ``device``. Returns False when ``state`` cannot continue the particles
        (the run then starts fresh optimizees)."""
        return True


def set_flat_grad(module: nn.Module, grad: Tensor) -> None:
    """Write the flat ``(P,)`` ``grad`` into the ``.grad`` of ``module``'s parameters, in their order."""
    params = list(module.parameters())
    for p, g in zip(params, grad.split([p.numel() for p in params]), strict=True):
        p.grad = g.view_as(p).clone()
