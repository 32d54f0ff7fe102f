"""Differentiable truncations of a population of ``B`` task instances at once: few, large kernels per step.

:func:`population_unroll` gives, per instance, the values and the meta-gradient of
:func:`~l2l_torch.unroll.truncated_unroll` (up to float rounding, tested), but runs each optimizee step of all ``B``
instances as:

* one vectorised optimizee forward (``torch.func.vmap(task.loss)`` over the params ``(B, *shape)``, buffers
  ``(B, *shape)`` and batches ``(B, ...)``; each instance still draws its batch with its own generator) and one
  backward (``autograd.grad`` of the sum of the ``B`` losses w.r.t. the stacked params, which is each instance's own
  gradient: the instances share no weights);
* one learned-optimizer step over all instances' coordinates, in one of two ways:

  - ``"flat"`` (optimizers with ``tasks_batchable``, e.g. the LSTM without batch normalisation): the optimizer
    steps the stacked params ``{name: (B, *shape)}`` as if they were one optimizee's, with its per-coordinate state
    rearranged once per truncation into that layout. No ``vmap`` around the optimizer, so its fast paths (the fused
    LSTM cell on CPUs, torch's fused LSTM cell on CUDA) run as they do for one instance;
  - ``"vmap"`` (other ``vmap_safe`` optimizers, e.g. small_fc, whose features are normalised per tensor):
    ``vmap(lopt.step)`` over the stacked params, gradients and state tensors, with ``theta`` shared (closed over), so
    the meta-gradient flows to it through the vectorised step.

Everything stays in the autograd graph from ``theta`` to the meta-loss, as in :func:`truncated_unroll`; nothing is
written in place. :func:`population_obstacle` says when the instances cannot be stacked (tasks of different
architectures, a meta-penalty, an optimizer that is neither ``tasks_batchable`` nor ``vmap_safe``, ...).
:class:`~l2l_torch.estimators.TruncatedBPTT` uses this path by default on CUDA with several instances per meta-step
(``population="auto"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.func import vmap
from torch.utils._pytree import tree_map

from l2l_torch.learned_optimizers.base import LearnedOptimizerBase, LOptState
from l2l_torch.unroll import UnrollResult, UnrollState
from l2l_torch.vmap_unroll import _lopt_step, _stack_state, _unstack_state, stack_obstacle

MODES = ("auto", "flat", "vmap")


def population_obstacle(lopt: LearnedOptimizerBase, states: Sequence[UnrollState]) -> str | None:
    """Why :func:`population_unroll` cannot run these instances (``None``: it can). Cheap: comparisons only.

    It can when the optimizer is ``tasks_batchable`` or ``vmap_safe`` and the instances' tasks share one
    :meth:`~l2l_torch.tasks.base.Task.loss_signature`, have no meta-penalty, params, buffers and optimizer states of
    the same layout, and generators of their own (:func:`~l2l_torch.vmap_unroll.stack_obstacle`).
    """
    if not (lopt.tasks_batchable or lopt.vmap_safe):
        return f"{type(lopt).__name__} is neither tasks_batchable nor vmap_safe"
    return stack_obstacle(states)


def step_mode(lopt: LearnedOptimizerBase, mode: str = "auto") -> str:
    """``"flat"`` or ``"vmap"``: how :func:`population_unroll` runs the optimizer's step (``"auto"``: flat where the
    optimizer is ``tasks_batchable``, else vmap)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        return "flat" if lopt.tasks_batchable else "vmap"
    if mode == "flat" and not lopt.tasks_batchable:
        raise ValueError(f"{type(lopt).__name__} mixes coordinates in its step (tasks_batchable is False): "
                         "use mode='vmap'")
    if mode == "vmap" and not lopt.vmap_safe:
        raise ValueError(f"{type(lopt).__name__} is not vmap_safe: use mode='flat'")
    return mode


# ----------------------------------------------------------------------------------------------- flat state layout
def _flat_state(lopt: LearnedOptimizerBase, states: Sequence[UnrollState]) -> LOptState:
    """The optimizer state of the stacked params ``{name: (B, *shape)}``: per group, the coordinates of each name
    for instance 0, 1, ..., B-1, names in group order (how the optimizer flattens ``(B, *shape)`` tensors)."""
    groups = states[0].lopt_state["groups"]
    per_instance = [lopt.coord_state(s.lopt_state) for s in states]
    coords = {}
    for kind, names in groups.items():
        sizes = [states[0].params[n].numel() for n in names]
        parts = [c[kind].split(sizes) for c in per_instance]  # B x names x (numel, S)
        coords[kind] = torch.cat([torch.cat([p[i] for p in parts]) for i in range(len(names))])
    return lopt.state_from_coords(groups, coords)


def _split_flat_state(lopt: LearnedOptimizerBase, state: LOptState, states: Sequence[UnrollState]) -> list[LOptState]:
    """Inverse of :func:`_flat_state`: one optimizer state per instance (their own tensors, not views)."""
    groups = states[0].lopt_state["groups"]
    nb = len(states)
    coords = lopt.coord_state(state)
    per_kind = {}
    for kind, names in groups.items():
        sizes = [states[0].params[n].numel() for n in names]
        blocks = coords[kind].detach().split([nb * s for s in sizes])
        per_kind[kind] = [torch.cat([blk.view(nb, s, -1)[b] for blk, s in zip(blocks, sizes)]) for b in range(nb)]
    return [lopt.state_from_coords(groups, {k: v[b] for k, v in per_kind.items()}) for b in range(nb)]


# ----------------------------------------------------------------------------------------------- the unroll
def _stack(xs: Sequence[Tensor]) -> Tensor:
    return torch.stack([x.detach() for x in xs])


def draw_batches(states: Sequence[UnrollState]) -> Any:
    """One ``"train"`` batch per instance from its own task and generator, stacked leaf by leaf to ``(B, ...)``."""
    batches = [s.task.sample_batch("train", s.generator) for s in states]
    return tree_map(lambda *xs: torch.stack(xs), *batches)


def population_unroll(lopt: LearnedOptimizerBase, states: Sequence[UnrollState], num_steps: int,
                      weights: Tensor | None = None, second_order: bool = False,
                      mode: str = "auto") -> list[UnrollResult]:
    """``B`` truncations of :func:`~l2l_torch.unroll.truncated_unroll` at once, stacked (see the module docstring).

    Args:
        lopt: the learned optimizer (its parameters are ``theta``; the meta-losses are differentiable w.r.t. them).
        states: ``B`` unroll states whose tasks share a loss signature (check :func:`population_obstacle`).
        num_steps: truncation length ``K`` (>= 1).
        weights: ``(K,)`` loss weights, as in :func:`~l2l_torch.unroll.truncated_unroll`.
        second_order: keep the graph of the optimizees' gradients.
        mode: ``"flat"``, ``"vmap"`` or ``"auto"`` (:func:`step_mode`).

    Returns:
        ``B`` :class:`~l2l_torch.unroll.UnrollResult`, one per instance, in order: the meta-loss carries the graph
        to ``theta``; the states are detached and each instance's own tensors (not views of the stacks).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    reason = population_obstacle(lopt, states)
    if reason is not None:
        raise ValueError(f"cannot stack these task instances: {reason}")
    mode = step_mode(lopt, mode)
    task, nb = states[0].task, len(states)
    params = {k: _stack([s.params[k] for s in states]).requires_grad_() for k in states[0].params}
    buffers = {k: _stack([s.buffers[k] for s in states]) for k in states[0].buffers}
    names = list(params)
    if mode == "flat":
        lopt_state: Any = _flat_state(lopt, states)
    else:
        spec, leaves = _stack_state([s.lopt_state for s in states])
    loss_fn = vmap(task.loss, randomness="error")
    losses: list[Tensor] = []
    last_params = params
    for t in range(num_steps + 1):
        loss, new_buffers = loss_fn(params, buffers, draw_batches(states))  # (B,), name -> (B, *shape)
        if t > 0:
            losses.append(loss)
        if t == num_steps:
            break
        grads = torch.autograd.grad(loss.sum(), [params[n] for n in names], retain_graph=True,
                                    create_graph=second_order)
        grads = dict(zip(names, grads if second_order else [g.detach() for g in grads]))
        buffers = {k: v.detach() for k, v in new_buffers.items()}
        last_params = params
        if mode == "flat":
            params, lopt_state = lopt.step(params, grads, lopt_state)
        else:
            params, spec, leaves = _lopt_step(lopt, None, params, grads, spec, leaves)

    stacked = torch.stack(losses, dim=1)  # (B, K)
    meta_weights = torch.tensor([s.task.meta_factor() for s in states], dtype=stacked.dtype, device=stacked.device)
    w = torch.ones_like(stacked[0]) if weights is None else weights.to(stacked)
    meta_losses = (w * meta_weights.unsqueeze(1) * stacked).mean(dim=1)
    with torch.no_grad():
        flat_new = torch.cat([params[n].flatten(1) for n in names], dim=1)
        flat_old = torch.cat([last_params[n].flatten(1) for n in names], dim=1)
        update_sizes = (flat_new - flat_old).abs().mean(dim=1)
    if mode == "flat":
        out_states = _split_flat_state(lopt, lopt_state, states)
    else:
        out_states = [_unstack_state(spec, [x.detach() if isinstance(x, Tensor) else x for x in leaves], b)
                      for b in range(nb)]
    results = []
    for b, s in enumerate(states):
        new = UnrollState(s.task, {k: v[b].detach().clone() for k, v in params.items()},
                          {k: v[b].clone() for k, v in buffers.items()}, out_states[b], s.step + num_steps,
                          s.generator)
        results.append(UnrollResult(meta_losses[b], stacked[b].detach(), update_sizes[b], new))
    return results
