"""Truncated unrolls of many particles of one learned optimizer at once, vectorised with ``torch.func.vmap``.

A *particle* is one optimizee run by its own copy of the learned optimizer, whose flat parameters ``theta_b``
differ from particle to particle (PES runs ``theta + eps`` and ``theta - eps``). :func:`vmapped_unroll` gives the
values of :func:`~l2l_torch.unroll.truncated_unroll` with ``differentiable=False`` for each of ``B`` particles, but
computes each optimizee step for all of them in two calls instead of ``2 B``:

* the optimizees' losses and gradients: ``vmap(grad_and_value(task.loss))`` over the stacked params ``(B, ...)``,
  buffers ``(B, ...)`` and batches ``(B, ...)`` (each particle's batch is drawn with its own generator, as
  before, then stacked), except where that does not pay (:func:`vectorize_loss`: convolutions on a CPU), where
  each particle's are computed by autograd as in :func:`~l2l_torch.unroll.truncated_unroll`;
* the learned optimizer's step: ``vmap(functional_call(lopt, theta_b, ...))`` over the stacked ``thetas``
  ``(B, P)``, params, gradients and the tensors of the optimizer state (its other leaves, such as the names of
  its groups, are the same for every particle and are closed over).

Nothing needs a gradient w.r.t. ``theta``: the step runs under ``torch.no_grad()``, and only the optimizee's
gradient is taken (by ``torch.func.grad``). :func:`obstacle` says when the particles cannot be batched so (tasks
of different architectures or losses, a task with a meta-penalty, a learned optimizer that is not
:attr:`~l2l_torch.learned_optimizers.base.LearnedOptimizerBase.vmap_safe`, ...); the caller then unrolls them one
by one.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap
from torch.utils._pytree import TreeSpec, tree_flatten, tree_map, tree_unflatten

from l2l_torch.learned_optimizers.base import LearnedOptimizerBase, LOptState
from l2l_torch.tasks.base import Task
from l2l_torch.unroll import UnrollResult, UnrollState


def _signature(task: Task) -> Hashable:
    """What particles must share to use one task's loss for all of them (its own object when it has no
    :meth:`~l2l_torch.tasks.base.Task.loss_signature`)."""
    sig = task.loss_signature()
    return ("instance", id(task)) if sig is None else sig


def _layout(tensors: dict[str, Tensor]) -> list[tuple[str, tuple[int, ...], torch.dtype, torch.device]]:
    return [(k, tuple(v.shape), v.dtype, v.device) for k, v in tensors.items()]


def _state_layout(state: LOptState) -> tuple[TreeSpec, list[Any]]:
    """The optimizer state's tree structure and, per leaf, its shape, dtype and device (a tensor) or value."""
    leaves, spec = tree_flatten(state)
    return spec, [(tuple(x.shape), x.dtype, x.device) if isinstance(x, Tensor) else x for x in leaves]


def obstacle(lopt: LearnedOptimizerBase, states: Sequence[UnrollState]) -> str | None:
    """Why :func:`vmapped_unroll` cannot run these particles (``None``: it can).

    It can when the learned optimizer is ``vmap_safe`` and every particle has a task of the same loss signature
    (:meth:`~l2l_torch.tasks.base.Task.loss_signature`) without a meta-penalty, params and buffers of the same
    names, shapes, dtypes and device, an optimizer state of the same structure, and a batch generator of its own.
    Cheap: it runs nothing but comparisons.
    """
    if not states:
        return "no particles"
    if not lopt.vmap_safe:
        return f"{type(lopt).__name__} is not vmap_safe"
    return stack_obstacle(states)


def batch_groups(lopt: LearnedOptimizerBase, states: Sequence[UnrollState]) -> tuple[list[list[int]], str | None]:
    """The particles split into groups that :func:`vmapped_unroll` can each run at once, and why they are not one.

    Returns:
        ``(groups, reason)``: lists of indices into ``states``, in order of their first member, each in increasing
        order; ``reason`` is :func:`obstacle` of all of them (``None`` and one group when they can run together).
        A particle that cannot be batched with any other is a group of its own (run one by one).
    """
    reason = obstacle(lopt, states)
    if reason is None:
        return [list(range(len(states)))], None
    groups: list[list[int]] = []
    for i, s in enumerate(states):
        for g in groups:
            if obstacle(lopt, [states[g[0]], s]) is None:
                g.append(i)
                break
        else:
            groups.append([i])
    return groups, reason


def stack_obstacle(states: Sequence[UnrollState]) -> str | None:
    """Why these unroll states cannot be stacked into one ``(B, ...)`` tensor per param, buffer and optimizer-state
    leaf with one task's loss vectorised over them (``None``: they can): the task-side part of :func:`obstacle`,
    which :mod:`l2l_torch.population_unroll` shares."""
    if not states:
        return "no particles"
    first = states[0]
    if type(first.task).meta_penalty is not Task.meta_penalty:
        return f"{type(first.task).__name__} has a meta_penalty"
    sig = _signature(first.task)
    params, buffers, lopt_state = _layout(first.params), _layout(first.buffers), _state_layout(first.lopt_state)
    for s in states[1:]:
        if _signature(s.task) != sig:
            return "the particles' tasks differ in their loss (architecture, class or settings)"
        if _layout(s.params) != params or _layout(s.buffers) != buffers:
            return "the particles' params or buffers differ in names, shapes, dtypes or devices"
        if _state_layout(s.lopt_state) != lopt_state:
            return "the particles' optimizer states differ in structure"
    if len({id(s.generator) for s in states}) < len(states):
        return "particles share a batch generator object"
    return None


# ----------------------------------------------------------------------------------------------- stacking
def _stack_state(states: Sequence[LOptState]) -> tuple[TreeSpec, list[Any]]:
    """The optimizer states of ``B`` particles as one tree's leaves: every tensor leaf stacked to ``(B, *shape)``,
    except non-floating ones equal in all particles (segment ids), which stay one tensor seen through an expanded
    view of stride 0 along dim 0 (see :func:`_vmap_leaves`); other leaves (names, counts) as they are (equal in
    all particles: :func:`obstacle`)."""
    flat = [tree_flatten(s)[0] for s in states]
    spec = tree_flatten(states[0])[1]
    leaves = []
    for column in zip(*flat):
        x = column[0]
        if not isinstance(x, Tensor):
            leaves.append(x)
        elif not x.is_floating_point() and all(y is x or torch.equal(y, x) for y in column[1:]):
            leaves.append(x.unsqueeze(0).expand(len(column), *x.shape))
        else:
            leaves.append(torch.stack(column))
    return spec, leaves


def _vmap_leaves(leaves: list[Any]) -> tuple[list[Tensor], list[int | None]]:
    """The tensor leaves of a stacked state as ``vmap`` arguments and their ``in_dims``: a leaf of stride 0
    along dim 0 (all its ``B`` slices are the same memory) goes in once, unbatched (``None``), the others batched
    along dim 0."""
    args, dims = [], []
    for x in leaves:
        if isinstance(x, Tensor):
            shared = x.dim() > 0 and x.stride(0) == 0
            args.append(x[0] if shared else x)
            dims.append(None if shared else 0)
    return args, dims


def _unstack(x: Tensor, b: int) -> Tensor:
    """Particle ``b``'s slice of a stacked tensor: the shared tensor itself for a stride-0 one, else a copy (a
    view would keep, and a checkpoint would save, the whole stack)."""
    return x[b] if x.stride(0) == 0 else x[b].clone()


def _unstack_state(spec: TreeSpec, leaves: list[Any], b: int) -> LOptState:
    return tree_unflatten([_unstack(x, b) if isinstance(x, Tensor) else x for x in leaves], spec)


# ----------------------------------------------------------------------------------------------- one step
#: where a tensor leaf goes back into the optimizer state's leaves after the vectorised step
_TENSOR = object()


def _lopt_step(lopt: LearnedOptimizerBase, thetas: Tensor | None, params: dict[str, Tensor], grads: dict[str, Tensor],
               spec: TreeSpec, leaves: list[Any]) -> tuple[dict[str, Tensor], TreeSpec, list[Any]]:
    """One step of the learned optimizer for every particle: particle ``b`` runs ``lopt.step`` with the flat
    parameters ``thetas[b]``.

    Args:
        thetas: ``(B, P)``, flat as ``parameters_to_vector(lopt.parameters())``; ``None``: every particle runs
            ``lopt``'s own parameters, which stay outside ``vmap`` (closed over), so autograd reaches them (the
            meta-gradient of :func:`~l2l_torch.population_unroll.population_unroll`).
        params, grads: name -> ``(B, *shape)``.
        spec, leaves: the stacked optimizer state (:func:`_stack_state`).

    Returns:
        ``(new_params, spec, leaves)``: params name -> ``(B, *shape)`` and the new stacked state (a tensor that the
        step passed through unchanged for all particles, such as segment ids, comes back as a stride-0 view).
    """
    names = [n for n, _ in lopt.named_parameters()]
    shapes = [p.shape for p in lopt.parameters()]
    sizes = [p.numel() for p in lopt.parameters()]
    args, dims = _vmap_leaves(leaves)
    out: dict[str, Any] = {}

    def step(theta: Tensor | None, p: dict[str, Tensor], g: dict[str, Tensor], tensors: list[Tensor]):
        it = iter(tensors)
        state = tree_unflatten([next(it) if isinstance(x, Tensor) else x for x in leaves], spec)
        if theta is None:
            new_params, new_state = lopt.step(p, g, state)
        else:
            weights = {n: t.view(s) for n, t, s in zip(names, theta.split(sizes), shapes)}
            new_params, new_state = functional_call(lopt, weights, (p, g, state))
        new_leaves, out["spec"] = tree_flatten(new_state)
        out["leaves"] = [_TENSOR if isinstance(x, Tensor) else x for x in new_leaves]  # (vmap returns tensors only)
        return new_params, [x for x in new_leaves if isinstance(x, Tensor)]

    if thetas is None:
        new_params, tensors = vmap(lambda p, g, a: step(None, p, g, a), in_dims=(0, 0, dims),
                                   randomness="error")(params, grads, args)
    else:
        new_params, tensors = vmap(step, in_dims=(0, 0, 0, dims), randomness="error")(thetas, params, grads, args)
    it = iter(tensors)
    return new_params, out["spec"], [next(it) if x is _TENSOR else x for x in out["leaves"]]


def _draw_batches(states: Sequence[UnrollState], leaders: list[int]) -> list[Any]:
    """One ``"train"`` batch per particle, drawn from the generator of its leader (particles whose generators are
    in the same state see the same batches, drawn once)."""
    drawn = {i: states[i].task.sample_batch("train", states[i].generator) for i in dict.fromkeys(leaders)}
    return [drawn[i] for i in leaders]


def vectorize_loss(task: Task) -> bool:
    """Whether :func:`vmapped_unroll` computes the optimizees' losses and gradients with ``vmap`` (else with
    autograd, particle by particle; the learned optimizer's step is vectorised either way).

    Not for networks with convolutions on a CPU: ``vmap`` runs a convolution with per-particle weights as one
    grouped convolution, whose backward there is several times slower than the particles' own (16 particles of
    the CIFAR-10 conv+dense CNN, batch 128, 2 threads: 14.8 s against 2.8 s for one loss-and-gradient step).
    """
    convolutional = any(isinstance(m, nn.modules.conv._ConvNd) for m in task.module.modules())
    return task.device.type != "cpu" or not convolutional


def _looped_loss_and_grad(task: Task, params: dict[str, Tensor], buffers: dict[str, Tensor],
                          batches: list[Any]) -> tuple[dict[str, Tensor], tuple[Tensor, dict[str, Tensor]]]:
    """What ``vmap(grad_and_value(task.loss, has_aux=True))`` returns (gradients ``(B, *shape)``, losses ``(B,)``
    and new buffers ``(B, *shape)``), computed particle by particle with autograd, as in
    :func:`~l2l_torch.unroll.truncated_unroll`."""
    grads, losses, new_buffers = [], [], []
    with torch.enable_grad():
        for b, batch in enumerate(batches):
            p = {k: v[b].detach().requires_grad_() for k, v in params.items()}
            loss, nb = task.loss(p, {k: v[b] for k, v in buffers.items()}, batch)
            grads.append(torch.autograd.grad(loss, list(p.values())))
            losses.append(loss.detach())
            new_buffers.append({k: v.detach() for k, v in nb.items()})
    return ({k: torch.stack([g[i] for g in grads]) for i, k in enumerate(params)},
            (torch.stack(losses), {k: torch.stack([nb[k] for nb in new_buffers]) for k in buffers}))


def _leaders(states: Sequence[UnrollState]) -> list[int]:
    """Per particle, the first particle with the same task object and a generator in the same state."""
    seen: dict[tuple[int, bytes], int] = {}
    return [seen.setdefault((id(s.task), s.generator.get_state().numpy().tobytes()), b)
            for b, s in enumerate(states)]


# ----------------------------------------------------------------------------------------------- the unroll
@torch.no_grad()
def vmapped_unroll(lopt: LearnedOptimizerBase, thetas: Tensor, states: Sequence[UnrollState], num_steps: int,
                   weights: Tensor | None = None) -> list[UnrollResult]:
    """``B`` particles' truncations at once: per particle the values of
    ``truncated_unroll(lopt_b, states[b], num_steps, weights, differentiable=False)``, with ``lopt_b`` the learned
    optimizer with flat parameters ``thetas[b]``, up to float rounding (tested).

    Each particle's generator advances as in its own unroll. Check :func:`obstacle` first.

    Args:
        lopt: the learned optimizer (its architecture; its own parameters are not read).
        thetas: ``(B, P)``: per particle the flat parameters, in the order of ``lopt.parameters()``
            (``parameters_to_vector``).
        states: ``B`` unroll states, one per particle.
        num_steps: truncation length ``K`` (>= 1).
        weights: ``(K,)`` loss weights, as in :func:`~l2l_torch.unroll.truncated_unroll`.

    Returns:
        ``B`` :class:`~l2l_torch.unroll.UnrollResult`, one per particle, in order, nothing attached to a graph
        (their tensors are each particle's own, not views of the stacks).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if thetas.shape[0] != len(states):
        raise ValueError(f"one theta per particle: {thetas.shape[0]} thetas, {len(states)} states")
    task = states[0].task
    leaders = _leaders(states)
    params = {k: torch.stack([s.params[k].detach() for s in states]) for k in states[0].params}
    buffers = {k: torch.stack([s.buffers[k].detach() for s in states]) for k in states[0].buffers}
    spec, leaves = _stack_state([s.lopt_state for s in states])
    vectorized = vectorize_loss(task)
    loss_and_grad = vmap(grad_and_value(task.loss, has_aux=True), randomness="error")
    loss_only = vmap(task.loss, randomness="error")
    losses: list[Tensor] = []
    last_params = params
    for t in range(num_steps + 1):
        batches = _draw_batches(states, leaders)
        batch = tree_map(lambda *xs: torch.stack(xs), *batches) if vectorized else None
        if t == num_steps:
            if vectorized:
                loss, _ = loss_only(params, buffers, batch)
            else:
                loss = torch.stack([task.loss({k: v[b] for k, v in params.items()},
                                              {k: v[b] for k, v in buffers.items()}, x)[0]
                                    for b, x in enumerate(batches)])
            losses.append(loss)
            break
        if vectorized:
            grads, (loss, buffers) = loss_and_grad(params, buffers, batch)
        else:
            grads, (loss, buffers) = _looped_loss_and_grad(task, params, buffers, batches)
        if t > 0:
            losses.append(loss)
        last_params = params
        params, spec, leaves = _lopt_step(lopt, thetas, params, grads, spec, leaves)
    for b, s in enumerate(states):  # followers advanced with their leaders
        if leaders[b] != b:
            s.generator.set_state(states[leaders[b]].generator.get_state())

    stacked = torch.stack(losses, dim=1)  # (B, K)
    meta_weights = torch.tensor([s.task.meta_factor() for s in states], dtype=stacked.dtype, device=stacked.device)
    w = torch.ones_like(stacked[0]) if weights is None else weights.to(stacked)
    meta_losses = ((w * meta_weights.unsqueeze(1)) * stacked).mean(dim=1)
    flat_new = torch.cat([v.flatten(1) for v in params.values()], dim=1)
    flat_old = torch.cat([last_params[n].flatten(1) for n in params], dim=1)
    update_sizes = (flat_new - flat_old).abs().mean(dim=1)
    results = []
    for b, s in enumerate(states):
        new = UnrollState(s.task, {k: _unstack(v, b) for k, v in params.items()},
                          {k: _unstack(v, b) for k, v in buffers.items()}, _unstack_state(spec, leaves, b),
                          s.step + num_steps, s.generator)
        results.append(UnrollResult(meta_losses[b].clone(), stacked[b].clone(), update_sizes[b].clone(), new))
    return results
