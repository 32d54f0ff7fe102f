"""Interface of a learned optimizer: an ``nn.Module`` holding ``theta`` with a pure step.

A learned optimizer maps the optimizee's gradients (and its own recurrent state) to updates::

    state = lopt.init_state(params, kinds)
    params, state = lopt.step(params, grads, state)      # nothing is modified in place

Because the step is pure, calling it inside an unroll keeps the graph from the optimizee's
params back to ``theta`` (``lopt.parameters()``), which is what meta-training differentiates.
The same step, run under ``torch.no_grad()``, is what :class:`l2l_torch.LearnedOptimizer` uses
for deployment, so the two can never drift apart.
"""

from __future__ import annotations

import abc
import copy
import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from l2l_torch.checkpoint import REGISTRY, CheckpointError, read_learned_optimizer, register

__all__ = ["REGISTRY", "register", "LOptState", "LearnedOptimizerBase", "group_by_kind"]

LOptState = dict[str, Any]


def group_by_kind(names: list[str], kinds: Mapping[str, str] | None, per_kind: bool,
                  available: list[str]) -> dict[str, list[str]]:
    """Group param names by the network that will handle them.

    Args:
        names: optimizee param names, in order.
        kinds: param name -> kind (``"conv"``/``"dense"``); missing names count as ``"dense"``.
        per_kind: if False every param goes to the single network ``"all"``.
        available: the kinds this optimizer has a network for.

    Raises:
        ValueError: a param's kind has no network (e.g. conv params for a dense-only optimizer).
    """
    if not per_kind:
        return {"all": list(names)}
    groups: dict[str, list[str]] = {}
    for n in names:
        k = (kinds or {}).get(n, "dense")
        if k not in available:
            raise ValueError(f"parameter {n!r} is of kind {k!r}, but this learned optimizer only has "
                             f"networks for {sorted(available)}")
        groups.setdefault(k, []).append(n)
    return groups


class LearnedOptimizerBase(nn.Module, abc.ABC):
    """Base class: subclasses implement :meth:`init_state` and :meth:`step`, and register themselves by name
    (:func:`register`, from :mod:`l2l_torch.checkpoint`).

    ``theta`` is ``self.parameters()``. :meth:`config` returns the constructor kwargs so that a
    checkpoint can rebuild the same architecture (see :mod:`l2l_torch.checkpoint`): every argument, defaults
    included, but ``init_from`` (a checkpoint of a warm-started optimizer stands on its own).
    """

    arch_name: str = "base"
    #: whether several optimizees can be stepped by one call over their concatenated coordinates with
    #: the same result (see :func:`l2l_torch.unroll.batched_unroll`): True only if :meth:`step` never
    #: mixes coordinates (no statistics over coordinates or tensors, no shared counters)
    tasks_batchable: bool = False
    #: whether :meth:`step` runs under ``torch.func.vmap`` over ``theta`` (through :meth:`forward` and
    #: ``torch.func.functional_call``) and over the params, gradients and tensors of the state, with the values of
    #: one step per particle (:mod:`l2l_torch.vmap_unroll`): no ``.item()``, no Python control flow on tensor values,
    #: no in-place writes into tensors that are not the step's own, no custom autograd functions on that path
    vmap_safe: bool = False
    #: the learned-optimizer file :meth:`warm_start` copied ``theta`` from (``None``: a fresh start)
    warm_started_from: str | None = None
    #: config keys with no weights behind them (a fixed schedule or step scale): a warm start may differ in them
    SCHEDULE_KEYS: tuple[str, ...] = ()

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self._config = dict(config)

    def config(self) -> dict[str, Any]:
        """Constructor kwargs (JSON-able) that rebuild this architecture: all of them, defaults included (a copy)."""
        return copy.deepcopy(self._config)

    @abc.abstractmethod
    def init_state(self, params: Mapping[str, Tensor], kinds: Mapping[str, str] | None = None) -> LOptState:
        """Fresh optimizer state for ``params`` (name -> tensor). ``kinds`` maps names to param kinds."""

    @abc.abstractmethod
    def step(self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor],
             state: LOptState) -> tuple[dict[str, Tensor], LOptState]:
        """One update: returns ``(new_params, new_state)`` without modifying the inputs."""

    def forward(self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor],
                state: LOptState) -> tuple[dict[str, Tensor], LOptState]:
        """Same as :meth:`step`, so ``torch.func.functional_call(lopt, theta, (params, grads, state))``
        runs a step with an explicit ``theta``."""
        return self.step(params, grads, state)

    @abc.abstractmethod
    def coord_state(self, state: LOptState) -> dict[str, Tensor]:
        """The per-coordinate part of ``state`` as one ``(N_kind, S)`` tensor per group, in the
        order of ``state["groups"]`` (used to keep state per parameter in :class:`LearnedOptimizer`)."""

    @abc.abstractmethod
    def state_from_coords(self, groups: dict[str, list[str]], coords: Mapping[str, Tensor]) -> LOptState:
        """Inverse of :meth:`coord_state`."""

    def state_bytes_per_param(self) -> int:
        """Bytes of optimizer state kept per optimizee parameter (float32)."""
        return 0

    def warm_start(self, path: str) -> None:
        """Copy ``theta`` from the learned optimizer stored at ``path`` (same architecture): a learned-optimizer
        file or a Lightning checkpoint of meta-training (:func:`~l2l_torch.checkpoint.read_learned_optimizer`).

        The stored optimizer may differ in ``per_kind`` and in :attr:`SCHEDULE_KEYS` only: a
        single-network optimizer (``"all"``) warm-starts every per-kind network of this one, e.g. an
        MLP-trained LSTM as the starting point of a conv/dense LSTM for a CNN.

        Raises:
            CheckpointError: another architecture or configuration, or a per-kind file for a
                single-network optimizer.
        """
        other, _ = read_learned_optimizer(path, expect_arch=self.arch_name)
        src = self._warm_start_weights(other, path)
        new = {}
        for key in self.state_dict():
            alt = re.sub(r"^(nets|skips)\.(conv|dense)\b", r"\1.all", key)
            if key not in src and alt not in src:
                raise CheckpointError(f"init_from={path}: it has no weights for {key!r} "
                                      "(a per-kind optimizer cannot warm-start a single-network one)")
            new[key] = src[key] if key in src else src[alt]
        self.load_state_dict(new)
        self.warm_started_from = str(path)

    def _warm_start_weights(self, other: LearnedOptimizerBase, path: str) -> dict[str, Tensor]:
        """The weights of the loaded optimizer ``other`` that :meth:`warm_start` copies into this one
        (keys of ``other``; a per-kind network may take the single network's). Subclasses may allow more
        differences than ``per_kind`` by adapting the weights.

        Raises:
            CheckpointError: ``other`` differs in more than ``per_kind``.
        """
        free = {"per_kind", *self.SCHEDULE_KEYS}
        mine, theirs = self.config(), other.config()
        if {k: v for k, v in mine.items() if k not in free} != {k: v for k, v in theirs.items() if k not in free}:
            raise CheckpointError(f"init_from={path}: its architecture {theirs} differs from {mine}")
        return other.state_dict()
