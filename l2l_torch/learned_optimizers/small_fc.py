"""Per-parameter MLP learned optimizer on rich features ("small_fc_lopt", Metz et al. 2022).

The common machinery of optimizers that read :class:`~l2l_torch.learned_optimizers.features.FeatureSet`
features lives in :class:`FeatureOptimizerBase`: state handling, the per-tensor segment ids and the
output parametrisation ``update = direction * exp(mag_mult * magnitude) * step_mult``. With small
``step_mult`` and ``mag_mult`` the initial updates are small, and the network learns the log step
size through ``magnitude`` (one output) and the direction through the other. An optional linear
warm-up (``warmup``) scales the update of step ``t`` (from 1) by ``min(1, t / warmup)``, a fixed
schedule with no weights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from l2l_torch.learned_optimizers.base import LearnedOptimizerBase, LOptState, group_by_kind, register
from l2l_torch.learned_optimizers.features import FeatureSet, flat_group, segment_ids


class FeatureOptimizerBase(LearnedOptimizerBase):
    """A learned optimizer whose network maps :class:`FeatureSet` features to (direction, magnitude).

    Subclasses build ``self.nets`` (a ``ModuleDict`` keyed by kind) and implement :meth:`_init_extra`,
    :meth:`_net` and :meth:`_extra_rows` for any recurrent state of their own.

    State: ``{"groups", "acc": {kind: (S, N)}, "seg": {kind: (N,)}, "nseg": {kind: int}, "extra": {kind: ...}}``.
    """

    def __init__(self, per_kind: bool, step_mult: float, mag_mult: float,
                 momentum_decays: Sequence[float], use_grad: bool, use_param: bool, use_momentum: bool,
                 use_adam: bool, use_rsqrt: bool, rms_decay: float, normalize: bool, time_taus: Sequence[float],
                 tensor_scale: bool = False, warmup: float = 0.0, tensor_size: bool = False, **config: Any) -> None:
        if step_mult <= 0:
            raise ValueError(f"step_mult must be > 0, got {step_mult}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0 steps, got {warmup}")
        if warmup:  # (only then: the config, and so the checkpoints, of optimizers without it stay as they were)
            config["warmup"] = float(warmup)
        if tensor_size:  # (likewise)
            config["tensor_size"] = True
        super().__init__(per_kind=per_kind, step_mult=step_mult, mag_mult=mag_mult,
                         momentum_decays=list(momentum_decays), use_grad=use_grad, use_param=use_param,
                         use_momentum=use_momentum, use_adam=use_adam, use_rsqrt=use_rsqrt, rms_decay=rms_decay,
                         normalize=normalize, time_taus=list(time_taus), tensor_scale=tensor_scale, **config)
        self.per_kind, self.step_mult, self.mag_mult = per_kind, step_mult, mag_mult
        self.warmup = float(warmup)
        self.feats = FeatureSet(use_grad=use_grad, use_param=use_param, momentum_decays=momentum_decays,
                                use_momentum=use_momentum, use_adam=use_adam, use_rsqrt=use_rsqrt,
                                rms_decay=rms_decay, normalize=normalize, time_taus=time_taus,
                                tensor_scale=tensor_scale, tensor_size=tensor_size)
        self.kinds = ("conv", "dense") if per_kind else ("all",)

    #: config keys that only choose features: a warm start may differ in them (see :meth:`_warm_start_weights`)
    FEATURE_KEYS = ("momentum_decays", "use_grad", "use_param", "use_momentum", "use_adam", "use_rsqrt",
                    "time_taus", "tensor_scale", "tensor_size")
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


@register("small_fc")
class SmallFCOptimizer(FeatureOptimizerBase):
    """Per-parameter MLP optimizer (Metz et al. 2022, "small_fc_lopt"): features -> 32 -> 32 -> 2, ReLU.

    Args:
        hidden: hidden widths of the MLP.
        step_mult, mag_mult: ``update = direction * exp(mag_mult * magnitude) * step_mult``. A warm start
            (``init_from``) may differ in ``step_mult``: the stored optimizer with every update rescaled.
        per_kind: one MLP per parameter kind (conv / dense).
        momentum_decays, use_grad, use_param, use_momentum, use_adam, use_rsqrt, rms_decay, normalize,
        time_taus: the features (see :class:`~l2l_torch.learned_optimizers.features.FeatureSet`).
        init_from: start from the weights of this learned-optimizer file (``optimizer.pt`` of the same
            architecture), e.g. to continue meta-training on another task family. Not part of
            :meth:`config`: a checkpoint of the result stands on its own.
        adam_skip: add a learnable linear map from the features to the direction, initialised to
            ``-m/sqrt(v)`` (the normalised Adam direction at decay 0.9), so meta-training starts at Adam.
        warmup: scale the update of step ``t`` (counted from 1) by ``min(1, t / warmup)``, a linear warm-up
            of the step size over the first ``warmup`` steps; 0 (the default) for none. No weights: a warm
            start may add or drop it. A fixed step per coordinate is too large for the first steps of some
            layers (``research/experiments/cifar_convdense/first_step.txt``), and this is the hand-designed remedy.
        tensor_scale: also read the per-tensor log RMS of the gradient and of the parameter (see
            :class:`~l2l_torch.learned_optimizers.features.FeatureSet`). A warm start (``init_from``) may
            come from an optimizer that reads other features: shared features keep their weights, new ones
            start at zero (:meth:`FeatureOptimizerBase._warm_start_weights`).

    Example:
        >>> lopt = SmallFCOptimizer()
        >>> params = {"w": torch.zeros(3, 4)}
        >>> new_params, state = lopt.step(params, {"w": torch.ones(3, 4)}, lopt.init_state(params))
        >>> new_params["w"].shape
        torch.Size([3, 4])
    """

    def __init__(self, hidden: Sequence[int] = (32, 32), step_mult: float = 1e-3, mag_mult: float = 1e-3,
                 per_kind: bool = False, momentum_decays: Sequence[float] = (0.5, 0.9, 0.99),
                 use_grad: bool = True, use_param: bool = True, use_momentum: bool = True, use_adam: bool = True,
                 use_rsqrt: bool = True, rms_decay: float = 0.999, normalize: bool = True,
                 time_taus: Sequence[float] = (1.0, 3.0, 10.0, 30.0, 100.0), adam_skip: bool = False,
                 tensor_scale: bool = False, warmup: float = 0.0, init_from: str | None = None) -> None:
        super().__init__(per_kind, step_mult, mag_mult, momentum_decays, use_grad, use_param, use_momentum,
                         use_adam, use_rsqrt, rms_decay, normalize, time_taus, tensor_scale, warmup,
                         hidden=list(hidden), adam_skip=adam_skip)
        self.nets = nn.ModuleDict({k: CoordinatewiseMLP(self.feats.num_features, hidden) for k in self.kinds})
        for net in self.nets.values():
            with torch.no_grad():  # magnitude starts at exp(0) = 1: the initial step size is step_mult
                net.layers[-1].weight[1].zero_()
                net.layers[-1].bias[1].zero_()
        self.adam_skip = adam_skip
        if adam_skip:
            # a learnable linear path from the features to the direction, starting as -m/sqrt(v) (b = 0.9):
            # meta-training starts from (per-tensor normalised) Adam and learns corrections to it
            w = torch.zeros(self.feats.num_features)
            w[self.feats.adam_index(0.9)] = -1.0
            self.skips = nn.ParameterDict({k: nn.Parameter(w.clone()) for k in self.kinds})
            for net in self.nets.values():
                with torch.no_grad():  # the MLP's direction starts as a small perturbation of that
                    net.layers[-1].weight[0].mul_(0.1)
                    net.layers[-1].bias[0].mul_(0.1)
        if init_from:
            self.warm_start(init_from)

    INPUT_WEIGHTS = (r"nets\.{k}\.layers\.0\.weight", r"skips\.{k}")

    def _net(self, kind: str, x: Tensor, extra: Any, seg: Tensor | None = None,
             num_segments: int = 0) -> tuple[Tensor, Tensor, Any]:
        out = self.nets[kind](x)
        direction = out[0] + self.skips[kind] @ x if self.adam_skip else out[0]
        return direction, out[1], None
