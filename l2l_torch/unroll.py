"""Truncated unrolls: the optimizee trained by the learned optimizer, differentiably.

One truncation of ``K`` steps from params ``x_0`` computes::

    g_t     = grad f(x_t; batch_t)                  (detached unless second_order)
    x_{t+1} = x_t + lopt(g_t, state_t; theta)
    meta_loss = task.meta_weight * mean_{t=1..K} w_t (f(x_t) / task.loss_scale + r(x_t))

(``task.meta_weight`` is 1 except in weighted task mixtures; ``task.loss_scale`` is 1 except under a
loss-scale augmentation, which the meta-loss divides out; ``r`` is the task's
:meth:`~l2l_torch.tasks.base.Task.meta_penalty`, absent for most tasks.) ``meta_loss`` is differentiable w.r.t.
``theta``. The optimizee's gradient ``g_t`` is taken w.r.t. the *non-leaf* ``x_t`` with
``autograd.grad``, which stops at ``x_t`` and so costs one optimizee backward per step, not a walk
back through the whole unroll. Nothing in the loop writes in place, so the meta-gradient is exact
for the (truncated, first-order) objective. There is no host synchronisation inside the loop.

:func:`batched_unroll` runs ``B`` optimizees (task instances) in the same loop and steps them with
ONE call of the learned optimizer over all ``B`` optimizees' coordinates, which is exact for
optimizers that treat coordinates independently (``lopt.tasks_batchable``): fewer, larger kernels
per step than ``B`` separate unrolls, with the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from l2l_torch.learned_optimizers.base import LearnedOptimizerBase, LOptState
from l2l_torch.tasks.base import Buffers, Params, Task


@dataclass
class UnrollState:
    """Where an optimizee is in its training: task, params, buffers, optimizer state, step count."""

    task: Task
    params: Params
    buffers: Buffers
    lopt_state: LOptState
    step: int
    generator: torch.Generator

    def detached(self) -> UnrollState:
        """The same state cut from the graph (the start of the next truncation)."""
        return replace(self, params={k: v.detach() for k, v in self.params.items()},
                       buffers={k: v.detach() for k, v in self.buffers.items()},
                       lopt_state=_detach_tree(self.lopt_state))


def _detach_tree(obj):
    if isinstance(obj, Tensor):
        return obj.detach()
    if isinstance(obj, dict):
        return {k: _detach_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detach_tree(v) for v in obj)
    return obj


def init_unroll(lopt: LearnedOptimizerBase, task: Task, seed: int | None = None) -> UnrollState:
    """Fresh optimizee of ``task`` (initialised from ``seed``) with a fresh optimizer state."""
    params, buffers = task.init_params(seed)
    gen = torch.Generator(device=task.device).manual_seed(task.seed if seed is None else seed)
    return UnrollState(task, params, buffers, lopt.init_state(params, task.param_kinds()), 0, gen)


def linear_loss_weights(num_steps: int) -> list[float]:
    """The ``linear`` meta-loss weights ``w_t = 2 (t + 1) / (K + 1)`` of a ``K``-step truncation: a ramp with mean 1
    that weights the end of the truncation most (``MetaModule(loss_weights="linear")``)."""
    return [2.0 * (t + 1) / (num_steps + 1) for t in range(num_steps)]


@dataclass
class UnrollResult:
    """Output of :func:`truncated_unroll`. Tensors stay on the device (no ``.item()``)."""

    meta_loss: Tensor  #: scalar, differentiable w.r.t. theta
    losses: Tensor  #: (K,) detached optimizee losses f(x_1) ... f(x_K) (without the task's meta_penalty)
    update_size: Tensor  #: scalar, mean |x_K - x_{K-1}| over coordinates (detached)
    state: UnrollState  #: detached state after the truncation


def truncated_unroll(lopt: LearnedOptimizerBase, state: UnrollState, num_steps: int,
                     weights: Tensor | None = None, second_order: bool = False,
                     differentiable: bool = True) -> UnrollResult:
    """Run ``num_steps`` optimizee steps with ``lopt`` and return the meta-loss.

    Args:
        lopt: the learned optimizer (its parameters are ``theta``).
        state: where the optimizee is; typically the detached state of the previous truncation.
        num_steps: truncation length ``K`` (>= 1).
        weights: ``(K,)`` loss weights ``w_t``; defaults to ones.
        second_order: keep the graph of the optimizee gradients (second derivatives); the
            paper and the default drop them.
        differentiable: keep the graph from theta to the meta-loss (for backpropagation). False computes
            the same values but frees each step's graph at once, so memory does not grow with ``num_steps``
            (PES, which needs no gradient through the unroll).

    Returns:
        An :class:`UnrollResult`.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    task = state.task
    params = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in state.params.items()}
    buffers, lopt_state, gen = state.buffers, state.lopt_state, state.generator
    names = list(params)
    losses, penalties = [], []
    last_params = params
    for t in range(num_steps + 1):
        loss, new_buffers = task.loss(params, buffers, task.sample_batch("train", gen))
        if t > 0:
            penalty = task.meta_penalty(params, buffers, gen)
            losses.append(loss if differentiable else loss.detach())
            penalties.append(penalty if differentiable or penalty is None else penalty.detach())
        if t == num_steps:
            break
        grads = torch.autograd.grad(loss, [params[n] for n in names], retain_graph=differentiable,
                                    create_graph=second_order)
        if not second_order:
            grads = [g.detach() for g in grads]
        buffers = {k: v.detach() for k, v in new_buffers.items()}
        last_params = params
        params, lopt_state = lopt.step(params, dict(zip(names, grads)), lopt_state)
        if not differentiable:  # the next step needs the optimizee's gradient only
            params = {k: v.detach().requires_grad_() for k, v in params.items()}
            lopt_state = _detach_tree(lopt_state)
    return _result(losses, penalties, weights, params, last_params,
                   UnrollState(task, params, buffers, lopt_state, state.step + num_steps, gen))


def _result(losses: list[Tensor], penalties: list[Tensor | None], weights: Tensor | None,
            params: dict[str, Tensor], last_params: dict[str, Tensor], new_state: UnrollState) -> UnrollResult:
    """The :class:`UnrollResult` of one truncation: weighted meta-loss over its ``K`` losses plus the task's
    meta-penalties (as in the module docstring: :meth:`~l2l_torch.tasks.base.Task.meta_factor`), the size of its
    last update (``params`` minus ``last_params``) and the detached state after it."""
    stacked = torch.stack(losses)
    task = new_state.task
    objective = stacked * task.meta_factor()
    if penalties[0] is not None:
        objective = objective + torch.stack(penalties) * task.meta_weight
    w = torch.ones_like(stacked) if weights is None else weights.to(stacked)
    with torch.no_grad():
        flat_new = torch.cat([v.reshape(-1) for v in params.values()])
        flat_old = torch.cat([last_params[n].reshape(-1) for n in params])
        update_size = (flat_new - flat_old).abs().mean()
    return UnrollResult((w * objective).mean(), stacked.detach(), update_size, new_state.detached())


def batched_unroll(lopt: LearnedOptimizerBase, states: list[UnrollState], num_steps: int,
                   weights: Tensor | None = None, second_order: bool = False) -> list[UnrollResult]:
    """``B`` truncations of :func:`truncated_unroll` at once, with one optimizer step over all of them.

    Each optimizee keeps its own task, params, buffers and batch generator; at each step their
    gradients are concatenated (param names prefixed ``"{b}/"``) so the learned optimizer runs once
    over ``sum_b N_b`` coordinates (e.g. one LSTM call on ``(F, B*N)`` inputs instead of ``B`` calls on
    ``(F, N)``). Per optimizee the results equal ``truncated_unroll(lopt, states[b], ...)`` up to float
    rounding (tested), including the meta-gradient.

    Args:
        lopt: a learned optimizer with ``tasks_batchable`` (its step must not mix coordinates, e.g.
            no batch normalisation over coordinates).
        states: ``B`` unroll states (typically the detached states of the previous truncation).
        num_steps, weights, second_order: as in :func:`truncated_unroll`.

    Returns:
        ``B`` :class:`UnrollResult`, one per state, in order.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not lopt.tasks_batchable:
        raise ValueError(f"{type(lopt).__name__} mixes coordinates in its step (tasks_batchable is False); "
                         "unroll its tasks one by one with truncated_unroll")
    nb = len(states)
    params = [{k: v if v.requires_grad else v.detach().requires_grad_() for k, v in s.params.items()}
              for s in states]
    buffers = [s.buffers for s in states]
    names = [list(p) for p in params]
    lopt_state = _merge_lopt_states(lopt, [s.lopt_state for s in states])
    losses: list[list[Tensor]] = [[] for _ in range(nb)]
    penalties: list[list[Tensor | None]] = [[] for _ in range(nb)]
    last_params = params
    for t in range(num_steps + 1):
        grads: dict[str, Tensor] = {}
        for b, s in enumerate(states):
            loss, new_buffers = s.task.loss(params[b], buffers[b], s.task.sample_batch("train", s.generator))
            if t > 0:
                losses[b].append(loss)
                penalties[b].append(s.task.meta_penalty(params[b], buffers[b], s.generator))
            if t == num_steps:
                continue
            g = torch.autograd.grad(loss, [params[b][n] for n in names[b]], retain_graph=True,
                                    create_graph=second_order)
            grads.update({f"{b}/{n}": gi if second_order else gi.detach() for n, gi in zip(names[b], g)})
            buffers[b] = {k: v.detach() for k, v in new_buffers.items()}
        if t == num_steps:
            break
        last_params = params
        merged = {f"{b}/{n}": v for b in range(nb) for n, v in params[b].items()}
        new, lopt_state = lopt.step(merged, grads, lopt_state)
        params = [{n: new[f"{b}/{n}"] for n in names[b]} for b in range(nb)]
    out_states = _split_lopt_state(lopt, lopt_state, states)
    return [_result(losses[b], penalties[b], weights, params[b], last_params[b],
                    UnrollState(s.task, params[b], buffers[b], out_states[b], s.step + num_steps, s.generator))
            for b, s in enumerate(states)]


def _merge_lopt_states(lopt: LearnedOptimizerBase, lopt_states: list) -> dict:
    """One optimizer state for ``B`` optimizees: groups with ``"{b}/"``-prefixed names, coordinates stacked.

    Coordinates are concatenated per group in optimizee order, which is the order of the merged
    names in each group, so the merged state is the state of the merged params.
    """
    groups: dict[str, list[str]] = {}
    coords: dict[str, list[Tensor]] = {}
    for b, st in enumerate(lopt_states):
        for kind, c in lopt.coord_state(st).items():
            groups.setdefault(kind, []).extend(f"{b}/{n}" for n in st["groups"][kind])
            coords.setdefault(kind, []).append(c)
    return lopt.state_from_coords(groups, {k: torch.cat(v, dim=0) for k, v in coords.items()})


def _split_lopt_state(lopt: LearnedOptimizerBase, merged: dict, states: list[UnrollState]) -> list:
    """Inverse of :func:`_merge_lopt_states`: one optimizer state per optimizee."""
    coords = lopt.coord_state(merged)
    sizes = {kind: [sum(s.params[n].numel() for n in s.lopt_state["groups"].get(kind, [])) for s in states]
             for kind in coords}
    parts = {kind: c.split(sizes[kind], dim=0) for kind, c in coords.items()}
    return [lopt.state_from_coords(s.lopt_state["groups"],
                                   {k: parts[k][b] for k in s.lopt_state["groups"]})
            for b, s in enumerate(states)]
