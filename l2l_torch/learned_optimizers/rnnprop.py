"""Coordinatewise LSTM on rich, normalised features (RNNprop, Lv et al. 2017, with Metz et al.'s outputs).

The paper's :class:`~l2l_torch.learned_optimizers.lstm.CoordinatewiseLSTM` reads the
:class:`~l2l_torch.learned_optimizers.features.FeatureSet` features instead of the raw
(preprocessed) gradient; its linear head gives the direction and a second head on the top hidden
state the log step size: ``update = direction * exp(mag_mult * magnitude) * step_mult``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from l2l_torch.learned_optimizers.base import register
from l2l_torch.learned_optimizers.feature_base import FeatureOptimizerBase
from l2l_torch.learned_optimizers.features import DEFAULT_FEATURES, FeatureSet
from l2l_torch.learned_optimizers.lstm import CoordinatewiseLSTM


@register("rnnprop")
class RNNpropOptimizer(FeatureOptimizerBase):
    """LSTM optimizer with Adam-style features (m/sqrt(v) at several decays, etc.).

    Args:
        hidden_size, num_layers: the LSTM (per coordinate, weights shared).
        step_mult, mag_mult, per_kind, features, warmup: as in
            :class:`~l2l_torch.learned_optimizers.small_fc.SmallFCOptimizer`.

    State per coordinate: the feature accumulators and, per layer, ``h`` and ``c`` (``(H, N)`` each).
    """

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, step_mult: float = 1e-3, mag_mult: float = 1e-3,
                 per_kind: bool = False, features: Sequence[str] = DEFAULT_FEATURES, warmup: float = 0.0) -> None:
        if hidden_size < 1 or num_layers < 1:
            raise ValueError("hidden_size and num_layers must be >= 1")
        feats = FeatureSet(features)
        super().__init__({"hidden_size": hidden_size, "num_layers": num_layers, "step_mult": step_mult,
                          "mag_mult": mag_mult, "per_kind": per_kind, "features": list(feats.names), "warmup": float(warmup)},
                         feats, per_kind, step_mult, mag_mult, warmup)
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.nets = nn.ModuleDict({k: CoordinatewiseLSTM(self.feats.num_features, hidden_size, num_layers, "none")
                                   for k in self.kinds})
        self.mag_heads = nn.ModuleDict({k: nn.Linear(hidden_size, 1) for k in self.kinds})
        for head in self.mag_heads.values():
            nn.init.zeros_(head.weight)  # exp(0) = 1: the initial step size is step_mult
            nn.init.zeros_(head.bias)

    def _init_extra(self, n: int, ref: Tensor) -> Any:
        zeros = ref.new_zeros(self.hidden_size, n)
        return [(zeros, zeros) for _ in range(self.num_layers)]

    def _net(self, kind: str, x: Tensor, extra: Any, seg: Tensor | None = None,
             num_segments: int = 0) -> tuple[Tensor, Tensor, Any]:
        direction, hidden = self.nets[kind](x, extra)
        head = self.mag_heads[kind]
        magnitude = torch.addmm(head.bias.unsqueeze(1), head.weight, hidden[-1][0]).squeeze(0)
        return direction, magnitude, hidden

    def _extra_rows(self, extra: Any) -> list[Tensor]:
        return [t for hc in extra for t in hc]

    def _extra_from_rows(self, rows: Tensor) -> Any:
        parts = rows.split(self.hidden_size, dim=0)
        return [(parts[2 * i], parts[2 * i + 1]) for i in range(self.num_layers)]

    def state_bytes_per_param(self) -> int:
        return (self.feats.num_accumulators + 2 * self.num_layers * self.hidden_size) * 4
