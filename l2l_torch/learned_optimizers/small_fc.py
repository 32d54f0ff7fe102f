"""Per-parameter MLP learned optimizer on rich features ("small_fc_lopt", Metz et al. 2022).

The features, the state and the output parametrisation ``update = direction * exp(mag_mult * magnitude) *
step_mult`` come from :class:`~l2l_torch.learned_optimizers.feature_base.FeatureOptimizerBase`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from l2l_torch.learned_optimizers.base import register
from l2l_torch.learned_optimizers.feature_base import CoordinatewiseMLP, FeatureOptimizerBase
from l2l_torch.learned_optimizers.features import DEFAULT_FEATURES, FeatureSet


@register("small_fc")
class SmallFCOptimizer(FeatureOptimizerBase):
    """Per-parameter MLP optimizer (Metz et al. 2022, "small_fc_lopt"): features -> 32 -> 32 -> 2, ReLU.

    Args:
        hidden: hidden widths of the MLP.
        step_mult, mag_mult: ``update = direction * exp(mag_mult * magnitude) * step_mult``. A warm start
            (``init_from``) may differ in ``step_mult``: the stored optimizer with every update rescaled.
        per_kind: one MLP per parameter kind (conv / dense).
        features: the names of the features the MLP reads, e.g. ``["g", "m0.9", "adam0.9", "log_rms_g", "t10"]``
            (see :class:`~l2l_torch.learned_optimizers.features.FeatureSet`: in any order, read in the canonical
            one). The default: ``g``, ``p``, the momenta and Adam directions at decays 0.5, 0.9 and 0.99,
            ``rsqrt`` and the step embedding at 1, 3, 10, 30 and 100 steps. The second moment decays at 0.999
            and the features are normalised per tensor. A warm start (``init_from``) may come from an optimizer
            that reads other features: shared features keep their weights, new ones start at zero
            (:meth:`FeatureOptimizerBase._warm_start_weights`).
        adam_skip: add a learnable linear map from the features to the direction, initialised to
            ``-m/sqrt(v)`` (the normalised Adam direction at the decay closest to 0.9, which ``features`` must
            have), so meta-training starts at Adam.
        warmup: scale the update of step ``t`` (counted from 1) by ``min(1, t / warmup)``, a linear warm-up
            of the step size over the first ``warmup`` steps; 0 (the default) for none. No weights: a warm
            start may add or drop it. A fixed step per coordinate is too large for the first steps of some
            layers (``research/experiments/cifar_convdense/first_step.txt``), and this is the hand-designed remedy.
        init_from: start from the weights of this learned-optimizer file (``optimizer.pt`` of the same
            architecture), e.g. to continue meta-training on another task family. Not part of
            :meth:`config`: a checkpoint of the result stands on its own.

    Example:
        >>> lopt = SmallFCOptimizer()
        >>> params = {"w": torch.zeros(3, 4)}
        >>> new_params, state = lopt.step(params, {"w": torch.ones(3, 4)}, lopt.init_state(params))
        >>> new_params["w"].shape
        torch.Size([3, 4])
    """

    def __init__(self, hidden: Sequence[int] = (32, 32), step_mult: float = 1e-3, mag_mult: float = 1e-3,
                 per_kind: bool = False, features: Sequence[str] = DEFAULT_FEATURES, adam_skip: bool = False,
                 warmup: float = 0.0, init_from: str | None = None) -> None:
        feats = FeatureSet(features)
        super().__init__({"hidden": list(hidden), "step_mult": step_mult, "mag_mult": mag_mult, "per_kind": per_kind,
                          "features": list(feats.names), "adam_skip": adam_skip, "warmup": float(warmup)},
                         feats, per_kind, step_mult, mag_mult, warmup)
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
