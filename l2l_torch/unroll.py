"""Truncated unrolls: the optimizee trained by the learned optimizer, differentiably.

One truncation of ``K`` steps from params ``x_0`` computes::

    g_t     = grad f(x_t; batch_t)                  (detached unless second_order)
    x_{t+1} = x_t + lopt(g_t, state_t; theta)
    meta_loss = mean_{t=1..K} w_t f(x_t)

``meta_loss`` is differentiable w.r.t. ``theta``. The optimizee's gradient ``g_t`` is taken
w.r.t. the *non-leaf* ``x_t`` with ``autograd.grad``, which stops at ``x_t`` and so costs
one optimizee backward per step, not a walk back through the whole unroll. Nothing in the
loop writes in place, so the meta-gradient is exact for the (truncated, first-order) objective.
There is no host synchronisation inside the loop.
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


@dataclass
class UnrollResult:
    """Output of :func:`truncated_unroll`. Tensors stay on the device (no ``.item()``)."""

    meta_loss: Tensor  #: scalar, differentiable w.r.t. theta
    losses: Tensor  #: (K,) detached optimizee losses f(x_1) ... f(x_K)
    update_size: Tensor  #: scalar, mean |x_K - x_{K-1}| over coordinates (detached)
    state: UnrollState  #: detached state after the truncation


def truncated_unroll(lopt: LearnedOptimizerBase, state: UnrollState, num_steps: int,
                     weights: Tensor | None = None, second_order: bool = False) -> UnrollResult:
    """Run ``num_steps`` optimizee steps with ``lopt`` and return the meta-loss.

    Args:
        lopt: the learned optimizer (its parameters are ``theta``).
        state: where the optimizee is; typically the detached state of the previous truncation.
        num_steps: truncation length ``K`` (>= 1).
        weights: ``(K,)`` loss weights ``w_t``; defaults to ones.
        second_order: keep the graph of the optimizee gradients (second derivatives); the
            paper and the default drop them.

    Returns:
        An :class:`UnrollResult`.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    task = state.task
    params = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in state.params.items()}
    buffers, lopt_state, gen = state.buffers, state.lopt_state, state.generator
    names = list(params)
    losses = []
    last_params = params
    for t in range(num_steps + 1):
        loss, new_buffers = task.loss(params, buffers, task.sample_batch("train", gen))
        if t > 0:
            losses.append(loss)
        if t == num_steps:
            break
        grads = torch.autograd.grad(loss, [params[n] for n in names], retain_graph=True,
                                    create_graph=second_order)
        if not second_order:
            grads = [g.detach() for g in grads]
        buffers = {k: v.detach() for k, v in new_buffers.items()}
        last_params = params
        params, lopt_state = lopt.step(params, dict(zip(names, grads)), lopt_state)
    stacked = torch.stack(losses)
    w = torch.ones_like(stacked) if weights is None else weights.to(stacked)
    meta_loss = (w * stacked).mean()
    with torch.no_grad():
        flat_new = torch.cat([params[n].reshape(-1) for n in names])
        flat_old = torch.cat([last_params[n].reshape(-1) for n in names])
        update_size = (flat_new - flat_old).abs().mean()
    new_state = UnrollState(task, params, buffers, lopt_state, state.step + num_steps, gen).detached()
    return UnrollResult(meta_loss, stacked.detach(), update_size, new_state)
