"""Persistent Evolution Strategies (PES): an unbiased meta-gradient estimator with no backward through the unroll.

Truncated BPTT (:func:`l2l_torch.unroll.truncated_unroll` plus ``backward``) differentiates each truncation
on its own, so it ignores how ``theta`` changed the state the truncation started from: its estimate of
the gradient of the whole-horizon meta-loss is biased, the more so the shorter the truncations. PES
(Vicol, Metz and Sohl-Dickstein, 2021, "Unbiased gradient estimation in unrolled computation graphs with
persistent evolution strategies") is unbiased for the Gaussian-smoothed meta-loss: each particle keeps
running one optimizee with its own perturbed ``theta + eps_t`` (a fresh ``eps_t`` per truncation) and
accumulates ``xi = sum_t eps_t`` since that optimizee started; the estimate is::

    g = 1 / (N sigma^2) * sum_i xi_i * L_i        (L_i: particle i's meta-loss of this truncation)

With antithetic pairs (``+eps`` and ``-eps`` on the same task instance and the same batches),
``xi_- = -xi_+`` and the pair's term is ``xi_+ (L_+ - L_-) / (2 sigma^2)``. It needs no backward
through the unroll (no memory that grows with the truncation) and no gradient of the loss w.r.t.
``theta`` at all, so it also works where the unroll is not differentiable or its gradients explode; its
price is variance, which grows with the number of parameters and with the accumulated truncations.
:func:`pes_estimate` reports it. :class:`PES` is the estimator object that meta-training uses.

The particles are independent, so they run all at once where they allow it: one vectorised call per optimizee step
for all of them (:mod:`l2l_torch.vmap_unroll`), with the same values as one by one.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from l2l_torch.estimators.base import Estimate, GradientEstimator
from l2l_torch.learned_optimizers.base import LearnedOptimizerBase
from l2l_torch.unroll import UnrollResult, UnrollState, truncated_unroll
from l2l_torch.vmap_unroll import batch_groups, vmapped_unroll

log = logging.getLogger(__name__)
#: reasons for unrolling the particles one by one that have been logged (each once per process)
_LOGGED: set[str] = set()


@dataclass
class PESResult:
    """Output of :func:`pes_estimate`. Tensors stay on the device (no ``.item()``)."""

    grad: Tensor  #: (P,) flat estimate of d meta-loss / d theta (P = number of theta's parameters)
    variance: Tensor  #: scalar: mean over theta's coordinates of the variance of ``grad`` (over pairs / N)
    results: list[UnrollResult]  #: per pair, the + then the - particle's truncation
    xi: list[Tensor]  #: per pair, the + particle's accumulated perturbation (P,) after this truncation


def antithetic_pair(state: UnrollState) -> tuple[UnrollState, UnrollState]:
    """Two particles on one optimizee: same task, params and optimizer state, and batch generators in the
    same state, so both see the same batches; nothing is copied but the generator."""
    gen = torch.Generator(device=state.generator.device)
    gen.set_state(state.generator.get_state())
    return state, replace(state, generator=gen)


def pes_estimate(lopt: LearnedOptimizerBase, pairs: list[tuple[UnrollState, UnrollState]], xi: list[Tensor],
                 num_steps: int, sigma: float, weights: Tensor | None = None, batched: bool = True) -> PESResult:
    """One PES estimate of the meta-gradient from ``len(pairs)`` antithetic pairs of particles.

    Args:
        lopt: the learned optimizer; its ``theta`` is read, never modified (the particles run on a copy, or
            with their own ``theta`` through ``torch.func.functional_call``).
        pairs: per pair, the ``(+, -)`` particles' states (from :func:`antithetic_pair` when the
            optimizee starts, then the ``results`` of the previous call).
        xi: per pair, the accumulated perturbation ``(P,)`` of the ``+`` particle (zeros when its optimizee
            starts).
        num_steps: truncation length ``K``.
        sigma: standard deviation of the perturbations.
        weights: ``(K,)`` loss weights, as in :func:`~l2l_torch.unroll.truncated_unroll`.
        batched: unroll all ``2 * len(pairs)`` particles at once, one vectorised call per optimizee step
            (:func:`~l2l_torch.vmap_unroll.vmapped_unroll`), where they allow it
            (:func:`~l2l_torch.vmap_unroll.obstacle`). Otherwise in groups that allow it (e.g. the two particles of
            each task in a mixture of architectures) and the rest one by one, with one log line per reason
            (:func:`~l2l_torch.vmap_unroll.batch_groups`). Either way the same perturbations and, up to float
            rounding, the same results.

    Returns:
        A :class:`PESResult`. The perturbations come from torch's global RNG (checkpointed with a run): all of
        them first, one per pair in order.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if len(pairs) != len(xi):
        raise ValueError(f"one accumulated perturbation per pair: {len(pairs)} pairs, {len(xi)} xi")
    theta = parameters_to_vector(lopt.parameters()).detach()
    eps = [torch.randn_like(theta) * sigma for _ in pairs]
    thetas = [theta + sign * e for e in eps for sign in (1.0, -1.0)]  # particle order: + then - per pair
    states = [s for pair in pairs for s in pair]
    groups, reason = batch_groups(lopt, states) if batched else ([[i] for i in range(len(states))], None)
    if reason is not None and reason not in _LOGGED:
        _LOGGED.add(reason)
        log.info("PES unrolls its particles in %d groups (%d one by one): %s", len(groups),
                 sum(len(g) == 1 for g in groups), reason)
    results: list[UnrollResult] = [None] * len(states)  # type: ignore[list-item]
    particle = None  # a copy whose parameters need no gradient: no graph through theta is built
    for group in groups:
        if len(group) > 1:
            rs = vmapped_unroll(lopt, torch.stack([thetas[i] for i in group]), [states[i] for i in group], num_steps,
                                weights)
        else:
            if particle is None:
                particle = copy.deepcopy(lopt).requires_grad_(False)
            vector_to_parameters(thetas[group[0]], particle.parameters())
            rs = [truncated_unroll(particle, states[group[0]], num_steps, weights, differentiable=False)]
        for i, r in zip(group, rs, strict=True):
            results[i] = r
    new_xi, terms = [], []
    for i, (e, acc) in enumerate(zip(eps, xi)):
        acc = acc + e
        new_xi.append(acc)
        diff = results[2 * i].meta_loss.detach() - results[2 * i + 1].meta_loss.detach()
        terms.append(acc * (diff / (2 * sigma**2)))
    stacked = torch.stack(terms)
    n = stacked.shape[0]
    variance = stacked.var(dim=0).mean() / n if n > 1 else torch.full((), float("nan"), device=theta.device)
    return PESResult(stacked.mean(0), variance, results, new_xi)


class PES(GradientEstimator):
    """Persistent Evolution Strategies with antithetic pairs: each task instance is run by two particles, with
    theta perturbed by ``+eps`` and ``-eps`` (a fresh ``eps`` per truncation), and each pair accumulates its
    perturbations (``xi``) while its optimizee lives. With two or more pairs (``tasks_per_step`` >= 2) the
    estimate's variance over the pairs is logged as ``pes_var``; one pair has none to log.

    Args:
        sigma: standard deviation of the perturbations of theta.
        batched: unroll all particles at once, one vectorised call per optimizee step, where they allow it (see
            :func:`pes_estimate`); the same results as one by one, up to float rounding.
    """

    particles_per_task = 2

    def __init__(self, sigma: float = 0.01, batched: bool = True) -> None:
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma = sigma
        self.batched = batched
        self.xi: list[Tensor] = []  #: per pair, the + particle's accumulated perturbation (P,)

    def start(self, lopt: LearnedOptimizerBase, states: list[UnrollState]) -> list[UnrollState]:
        zeros = torch.zeros_like(parameters_to_vector(lopt.parameters()).detach())
        self.xi = [zeros] * len(states)
        return [p for s in states for p in antithetic_pair(s)]

    def estimate(self, lopt: LearnedOptimizerBase, states: list[UnrollState], num_steps: int,
                 weights: Tensor | None) -> Estimate:
        est = pes_estimate(lopt, list(zip(states[0::2], states[1::2])), self.xi, num_steps, self.sigma, weights,
                           self.batched)
        self.xi = est.xi
        meta_loss = torch.stack([r.meta_loss.detach() for r in est.results]).mean()  # the gradient is est.grad
        return Estimate(est.results, meta_loss, est.grad, {"pes_var": est.variance} if len(states) > 2 else {})

    def state_dict(self) -> dict[str, Any]:
        return {"xi": [x.detach().cpu() for x in self.xi]}

    def load_state_dict(self, state: dict[str, Any], device: Any) -> bool:
        self.xi = [x.to(device) for x in state.get("xi", [])]
        return bool(self.xi)
