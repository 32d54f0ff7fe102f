"""The shared machinery of the learned optimizers that read :class:`~l2l_torch.learned_optimizers.features.FeatureSet`
features (small_fc, rnnprop, hyper_adam).

:class:`FeatureOptimizerBase` does the state handling, the per-tensor segment ids and the output parametrisation
``update = direction * exp(mag_mult * magnitude) * step_mult``. With small ``step_mult`` and ``mag_mult`` the
initial updates are small, and the network learns the log step size through ``magnitude`` (one output) and the
direction through the other. An optional linear warm-up (``warmup``) scales the update of step ``t`` (from 1) by
``min(1, t / warmup)``, a fixed schedule with no weights. :class:`CoordinatewiseMLP` is the MLP that small_fc and
hyper_adam apply to every coordinate (or every tensor).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from l2l_torch.learned_optimizers.base import LearnedOptimizerBase, LOptState, group_by_kind
from l2l_torch.learned_optimizers.features import FeatureSet, flat_group, segment_ids


class FeatureOptimizerBase(LearnedOptimizerBase):
    """A learned optimizer whose network maps :class:`FeatureSet` features to (direction, magnitude).

    Subclasses build ``self.nets`` (a ``ModuleDict`` keyed by kind) and implement :meth:`_init_extra`,
    :meth:`_net` and :meth:`_extra_rows` for any recurrent state of their own.

    Args:
        config: every constructor argument of the subclass but ``init_from``, defaults included: what
            :meth:`config` returns (its ``features`` in canonical order, ``FeatureSet.names``).
        feats: the features the network reads.
        per_kind: one network per parameter kind (conv / dense), else one for all.
        step_mult, mag_mult: ``update = direction * exp(mag_mult * magnitude) * step_mult``.
        warmup: the linear warm-up of the update over the first ``warmup`` steps (0: none).

    State: ``{"groups", "acc": {kind: (S, N)}, "seg": {kind: (N,)}, "nseg": {kind: int}, "extra": {kind: ...}}``.
    """

    def __init__(self, config: dict[str, Any], feats: FeatureSet, per_kind: bool, step_mult: float,
                 mag_mult: float, warmup: float) -> None:
        if step_mult <= 0:
            raise ValueError(f"step_mult must be > 0, got {step_mult}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0 steps, got {warmup}")
        super().__init__(**config)
        self.per_kind, self.step_mult, self.mag_mult = per_kind, step_mult, mag_mult
        self.warmup = float(warmup)
        self.feats = feats
        self.kinds = ("conv", "dense") if per_kind else ("all",)

    vmap_safe = True  # the features and the networks are out-of-place tensor maths (the LSTM: see lstm_cell_t)

    #: config keys that only choose features: a warm start may differ in them (see :meth:`_warm_start_weights`)
    FEATURE_KEYS = ("features",)
    #: ``step_mult`` only scales the update, so a warm start may rescale the stored optimizer's steps
    SCHEDULE_KEYS = ("warmup", "step_mult")
    #: ``theta`` entries whose last axis reads the features (``{k}``: a kind), remapped by feature name
    INPUT_WEIGHTS: tuple[str, ...] = ()

    def _warm_start_weights(self, other: LearnedOptimizerBase, path: str) -> dict[str, Tensor]:
        """As the base class, but ``other`` may read other features: the input weights of a feature both
        read are copied, those of a feature only this one reads start at zero (so the warm start computes
        exactly what ``other`` computed), and those of a feature it no longer reads are dropped."""
        mine, theirs = self.config(), other.config()
        rest = (set(mine) | set(theirs)) - {"per_kind", *self.FEATURE_KEYS, *self.SCHEDULE_KEYS}
        if not self.INPUT_WEIGHTS or any(mine.get(k) != theirs.get(k) for k in rest):
            return super()._warm_start_weights(other, path)  # (which raises for other differences)
        old, new = other.feats.names, self.feats.names
        src = other.state_dict()
        for key, w in list(src.items()):
            if any(re.fullmatch(pattern.format(k=r"\w+"), key) for pattern in self.INPUT_WEIGHTS):
                cols = w.new_zeros(*w.shape[:-1], len(new))
                for j, name in enumerate(new):
                    if name in old:
                        cols[..., j] = w[..., old.index(name)]
                src[key] = cols
        return src

    # ------------------------------------------------------------ subclass hooks
    def _init_extra(self, n: int, ref: Tensor) -> Any:
        return None

    def _net(self, kind: str, x: Tensor, extra: Any, seg: Tensor | None = None,
             num_segments: int = 0) -> tuple[Tensor, Tensor, Any]:
        """``x`` (F, N) -> ``(direction (N,), magnitude (N,), new_extra)``.

        ``seg`` (N,) is the parameter-tensor index of each coordinate, in ``[0, num_segments)``, for networks that
        compute something once per tensor (``None``: treat every coordinate on its own)."""
        raise NotImplementedError

    def _extra_rows(self, extra: Any) -> list[Tensor]:
        return []

    def _extra_from_rows(self, rows: Tensor) -> Any:
        return None

    # ------------------------------------------------------------ interface
    def init_state(self, params: Mapping[str, Tensor], kinds: Mapping[str, str] | None = None) -> LOptState:
        groups = group_by_kind(list(params), kinds, self.per_kind, list(self.nets))
        state: LOptState = {"groups": groups, "acc": {}, "seg": {}, "nseg": {}, "extra": {}}
        for k, names in groups.items():
            sizes = [params[n].numel() for n in names]
            ref = params[names[0]]
            state["acc"][k] = self.feats.init_accumulators(sum(sizes), ref)
            state["seg"][k] = segment_ids(sizes, ref.device)  # once per optimizee, not per step
            state["nseg"][k] = len(sizes)
            state["extra"][k] = self._init_extra(sum(sizes), ref)
        return state

    def step(self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor],
             state: LOptState) -> tuple[dict[str, Tensor], LOptState]:
        new_params: dict[str, Tensor] = {}
        new = {"groups": state["groups"], "acc": {}, "seg": {}, "nseg": {}, "extra": {}}
        for kind, names in state["groups"].items():
            sizes = [params[n].numel() for n in names]
            seg = state.get("seg", {}).get(kind)
            if seg is None:  # rebuilt from per-coordinate state (LearnedOptimizer): derive from the sizes
                seg = segment_ids(sizes, params[names[0]].device)
            x, new["acc"][kind] = self.feats(state["acc"][kind], flat_group(grads, names), flat_group(params, names),
                                             seg, len(sizes))
            direction, magnitude, new["extra"][kind] = self._net(kind, x, state["extra"].get(kind), seg,
                                                                       len(sizes))
            update = direction * torch.exp(self.mag_mult * magnitude) * self.step_mult
            if self.warmup:  # the step count t (from 1) is the accumulators' last row
                update = update * torch.clamp(new["acc"][kind][-1] / self.warmup, max=1.0)
            for n, u in zip(names, update.split(sizes), strict=True):
                new_params[n] = params[n] + u.view_as(params[n])
            new["seg"][kind], new["nseg"][kind] = seg, len(sizes)
        return new_params, new

    def coord_state(self, state: LOptState) -> dict[str, Tensor]:
        return {k: torch.cat([state["acc"][k], *self._extra_rows(state["extra"].get(k))]).t()
                for k in state["groups"]}

    def state_from_coords(self, groups: dict[str, list[str]], coords: Mapping[str, Tensor]) -> LOptState:
        s = self.feats.num_accumulators
        acc, extra = {}, {}
        for k in groups:
            rows = coords[k].t().contiguous()
            acc[k], extra[k] = rows[:s], self._extra_from_rows(rows[s:])
        # no segment ids: step() derives them from the parameter sizes
        return {"groups": groups, "acc": acc, "extra": extra}

    def state_bytes_per_param(self) -> int:
        return self.feats.num_accumulators * 4


class CoordinatewiseMLP(nn.Module):
    """An MLP applied to every coordinate: ``(F, N) -> (out, N)``, weights in ``nn.Linear`` modules.

    Computed coordinate-minor (``W @ x``) like :func:`l2l_torch.learned_optimizers.lstm.lstm_cell_t`.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int = 2) -> None:
        super().__init__()
        sizes = [in_features, *hidden, out_features]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = torch.addmm(layer.bias.unsqueeze(1), layer.weight, x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x
