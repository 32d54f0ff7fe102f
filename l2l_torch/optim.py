"""Deployment: a trained learned optimizer as a drop-in ``torch.optim.Optimizer``.

Example:
    >>> model = torch.nn.Linear(4, 2)
    >>> opt = LearnedOptimizer(model.parameters(), lopt=LSTMOptimizer())
    >>> model(torch.randn(8, 4)).pow(2).mean().backward()
    >>> opt.step()
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from l2l_torch.checkpoint import CheckpointError, check_compatible, load_learned_optimizer
from l2l_torch.kinds import KINDS, param_groups_by_kind  # noqa: F401  (re-exported)
from l2l_torch.learned_optimizers import LearnedOptimizerBase


class LearnedOptimizer(torch.optim.Optimizer):
    """A trained learned optimizer used like ``torch.optim.Adam``.

    The update is exactly the functional step used in meta-training
    (:meth:`LearnedOptimizerBase.step`), run under ``torch.no_grad()``. Each parameter keeps its own
    recurrent state (``state[p]["coords"]``: ``(numel, S)``), so ``state_dict()`` round-trips
    and param groups can be added later.

    Param groups carry ``lr``, a multiplier on the learned update (default 1.0: the update as meta-trained; a number,
    or a 0-d tensor on the params' device as :class:`~l2l_torch.hypergradient.HypergradientLR` sets it),
    and ``weight_decay`` (decoupled, default 0), so torch's learning-rate schedulers work as with any optimizer:
    ``CosineAnnealingLR(LearnedOptimizer(...), T_max=...)`` anneals the learned step towards zero. One step is

        p <- p * (1 - lr * weight_decay) + lr * (learned update of p)

    Args:
        params: parameters or param groups. A group may set ``"lr"``, ``"weight_decay"`` and ``"kind"``
            (``"conv"``/``"dense"``). An optimizer with one network per kind needs every group's kind:
            pass :func:`~l2l_torch.param_groups_by_kind` of the model, the rule meta-training used.
            ``"scale"`` is the former name of ``"lr"`` and is read as it.
        checkpoint: path of a learned-optimizer file (``optimizer.pt``).
        pretrained: name of an optimizer shipped with l2l_torch (see :func:`l2l_torch.list_pretrained`).
        lopt: an in-memory learned optimizer instead of a file.
        lr: default update multiplier for groups that do not set one.
        weight_decay: default decoupled weight decay for groups that do not set one.
        scale: the former name of ``lr``.

    Exactly one of ``checkpoint``, ``pretrained`` and ``lopt`` must be given.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], checkpoint: str | os.PathLike | None = None,
                 pretrained: str | None = None, lopt: LearnedOptimizerBase | None = None,
                 lr: float = 1.0, weight_decay: float = 0.0, scale: float | None = None) -> None:
        if sum(x is not None for x in (checkpoint, pretrained, lopt)) != 1:
            raise ValueError("give exactly one of checkpoint=, pretrained= or lopt=")
        lr = lr if scale is None else scale
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"lr and weight_decay must be >= 0, got {lr} and {weight_decay}")
        if pretrained is not None:
            from l2l_torch.pretrained import pretrained_path

            checkpoint = pretrained_path(pretrained)
        self.meta: dict[str, Any] = {}
        if checkpoint is not None:
            lopt, self.meta = load_learned_optimizer(checkpoint)
        assert lopt is not None
        self.lopt = lopt
        self._group_cache: tuple = (None, {}, {})
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "kind": None})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if "scale" in param_group:
            param_group = {**param_group, "lr": param_group.get("lr", param_group["scale"])}
            del param_group["scale"]
        kind = param_group.get("kind")
        if kind not in (None, *KINDS):
            raise ValueError(f"param group kind must be 'conv', 'dense' or None, got {kind!r}")
        if kind is None and getattr(self.lopt, "per_kind", False):
            raise ValueError("this learned optimizer has one network per parameter kind (conv / dense): pass "
                             "LearnedOptimizer(l2l_torch.param_groups_by_kind(model), ...) so that each parameter "
                             "goes to the network it was meta-trained with")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        kinds = {str(i): self._kind(group, p) for i, p in enumerate(group["params"])}
        try:
            check_compatible(self.lopt, self.meta, kinds)
        except CheckpointError as e:
            if "never meta-trained" not in str(e):
                raise ValueError(str(e)) from None
            # usable, but that network is at its random initialisation: say so, do not refuse
            warnings.warn(f"this learned optimizer may not suit these parameters: {e}", stacklevel=3)

    def _kind(self, group: dict[str, Any], p: Tensor) -> str:
        return group["kind"] or "dense"  # a kind is read only by a per-kind optimizer, which requires it

    def state_bytes_per_param(self) -> int:
        """Bytes of optimizer state per parameter (Adam keeps 8: two float32 moments)."""
        return self.lopt.state_bytes_per_param()

    def _kinds(self, items, names) -> dict[str, str]:
        return {n: self._kind(g, p) for n, (p, g) in zip(names, items)}

    def _grouping(self, items, names, params) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
        """Groups of param names per network and their sizes, cached while the set of params is unchanged."""
        key = tuple((id(p), self._kind(g, p)) for p, g in items)
        if self._group_cache[0] != key:
            groups = self.lopt.init_state(params, self._kinds(items, names))["groups"]
            sizes = {k: [params[n].numel() for n in ns] for k, ns in groups.items()}
            self._group_cache = (key, groups, sizes)
        return self._group_cache[1], self._group_cache[2]

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        items = [(p, g) for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not items:
            return loss
        if any(p.grad.is_sparse for p, _ in items):
            raise RuntimeError("LearnedOptimizer does not support sparse gradients")
        ref = next(self.lopt.parameters(), None)
        if ref is not None and ref.device != items[0][0].device:
            # a checkpoint loads on the CPU; follow the model to its device once
            self.lopt.to(items[0][0].device)
        # the network runs in its own dtype (float32); params in float64/bf16 are cast to it and back
        dtype = ref.dtype if ref is not None else items[0][0].dtype
        names = [str(i) for i in range(len(items))]
        params = {n: p.to(dtype) for n, (p, _) in zip(names, items)}
        grads = {n: p.grad.to(dtype) for n, (p, _) in zip(names, items)}
        owner = {n: p for n, (p, _) in zip(names, items)}  # the real parameter (state key) of each name
        groups, sizes = self._grouping(items, names, params)
        fresh = None
        for k, ns in groups.items():
            if any("coords" not in self.state[owner[n]] for n in ns):  # first step of these params
                fresh = fresh or self.lopt.coord_state(self.lopt.init_state(params, self._kinds(items, names)))
                for n, c in zip(ns, fresh[k].split(sizes[k])):
                    self.state[owner[n]].setdefault("coords", c)
        # per-parameter (n, S) states are transposed views of the last step's (S, N) tensor: joining their
        # transposes along dim 1 reads contiguous rows and yields the (S, N) working layout in one copy
        coords = {k: torch.cat([self.state[owner[n]]["coords"].to(dtype).t() for n in ns], dim=1).t()
                  for k, ns in groups.items()}
        state = self.lopt.state_from_coords(groups, coords)
        new_params, new_state = self.lopt.step(params, grads, state)
        new_coords = self.lopt.coord_state(new_state)
        for k, ns in groups.items():
            for n, c in zip(ns, new_coords[k].split(sizes[k])):
                # views of one tensor: torch.save stores it once, and load_state_dict (also after
                # torch.load(weights_only=True)) hands the views back, which torch.cat accepts
                self.state[owner[n]]["coords"] = c
        _apply(items, names, params, new_params)
        return loss


def _apply(items: list[tuple[Tensor, dict[str, Any]]], names: list[str], params: dict[str, Tensor],
           new_params: dict[str, Tensor]) -> None:
    """Write the step into the real parameters, all parameters of one ``(lr, weight_decay)`` at once with
    ``torch._foreach_*`` ops (on CUDA a few multi-tensor kernels instead of one or three per parameter)::

        p <- new_p                                                  (lr 1, no weight decay: the meta-trained step)
        p <- p * (1 - lr * weight_decay) + lr * (new_p - p_as_given)

    ``items``: ``(parameter, its group)``; ``params``/``new_params``: name -> the step's input (the parameter, cast
    to the network's dtype) and output, names in the order of ``items``."""
    buckets: dict[tuple[float | Tensor, float], list[int]] = {}
    for i, (_, g) in enumerate(items):
        lr = g["lr"] if isinstance(g["lr"], Tensor) else float(g["lr"])  # a tensor lr stays on its device
        buckets.setdefault((lr, float(g["weight_decay"])), []).append(i)
    for (lr, wd), idx in buckets.items():
        ps = [items[i][0] for i in idx]
        new = [new_params[names[i]] for i in idx]
        if not isinstance(lr, Tensor) and lr == 1.0 and not wd:
            torch._foreach_copy_(ps, new)  # exactly the meta-trained step
            continue
        updates = torch._foreach_sub(new, [params[names[i]] for i in idx])
        if wd:
            torch._foreach_mul_(ps, 1.0 - lr * wd)
        if isinstance(lr, Tensor):
            torch._foreach_add_(ps, torch._foreach_mul(updates, lr))
        else:
            torch._foreach_add_(ps, updates, alpha=lr)
