"""Adam whose step size per tensor and momentum come from a small learned network ("hyper_adam").

Every coordinate moves along a learned convex mix of the per-tensor-normalised Adam directions
``m_b / sqrt(v)`` (one per momentum decay ``b``)::

    update = -step_mult * exp(magnitude) * sum_b softmax(logits)_b * (m_b / sqrt(v))_normalised

and ``(magnitude, logits)`` come from an MLP that reads only what is the same for every coordinate of a
parameter tensor: by default the log RMS of the tensor's gradient and of its values, optionally the log of its
size, and the step embedding ``tanh(t / tau)``; it is evaluated once per tensor. So the network learns a step
size per layer and a schedule over training (what a hand-tuned per-layer learning rate with warm-up and
decay does, but as a function of the tensor's statistics that applies to new networks) and nothing per
coordinate beyond Adam. Its few weights (a few hundred) make evolution-strategies meta-gradients (PES) far
less noisy than for a per-coordinate network.
It is a feed-forward cousin of learned_optimization's ``NNAdam`` (an LSTM over per-tensor features that
outputs Adam's hyperparameters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from l2l_torch.learned_optimizers.base import register
from l2l_torch.learned_optimizers.feature_base import CoordinatewiseMLP, FeatureOptimizerBase
from l2l_torch.learned_optimizers.features import FeatureSet, canonical_features, segment_starts

#: hyper_adam's default features: the Adam directions at three decays, the log RMS of the gradient and of the
#: values of each tensor, and the step embedding
DEFAULT_FEATURES = ("adam0.5", "adam0.9", "adam0.99", "log_rms_g", "log_rms_p", "t1", "t3", "t10", "t30", "t100")
#: the features hyper_adam can read: the Adam directions it mixes, and what is the same for all of a tensor
PER_TENSOR = ("log_rms_g", "log_rms_p", "log_numel")
#: the momentum decay the initial mix puts most of its weight on (0.96 of it with 3 decays)
INIT_DECAY = 0.9


@register("hyper_adam")
class HyperAdamOptimizer(FeatureOptimizerBase):
    """Normalised Adam with a learned per-tensor step size and momentum mix (see the module docstring).

    Args:
        hidden: hidden widths of the MLP on the per-tensor inputs.
        step_mult: the step is ``step_mult * exp(magnitude)`` times the direction, whose RMS over each tensor is 1
            (``magnitude`` starts at 0).
        per_kind: one MLP per parameter kind (conv / dense).
        features: what the optimizer reads (:class:`~l2l_torch.learned_optimizers.features.FeatureSet` names, in
            any order): the Adam directions ``"adamB"`` it mixes (at least one; the mix starts at (almost only)
            the one whose decay ``B`` is closest to 0.9), and the MLP's inputs, which must be the same for every
            coordinate of a tensor: ``"log_rms_g"``, ``"log_rms_p"``, ``"log_numel"`` (the log of the tensor's
            size: a fixed input, so the network can give each layer its own step size and schedule without the
            feedback of the values' log RMS, which a step size of its own changes) and the step embedding
            ``"tTAU"`` (its schedule). The default: the Adam directions at decays 0.5, 0.9 and 0.99, the log RMS
            of the gradient and of the values, and the step embedding at 1, 3, 10, 30 and 100 steps. The values
            (``"p"``) are read for ``weight_decay`` only, which adds them: they are not named here.
        rms_decay: Adam's second-moment decay.
        warmup: a fixed linear warm-up of the step over the first ``warmup`` steps (0: none), as in
            :class:`~l2l_torch.learned_optimizers.small_fc.SmallFCOptimizer`.
        log_rms_min: clamp the log RMS inputs from below (``None``: no clamp). A zero-initialised tensor
            (BatchNorm shifts, some biases) reads ``log(1e-15) = -34.5`` at its first step, far outside the range
            of the other tensors (about -12 to 0), which a linear map (``hidden: []``) would turn into an extreme
            step.
        normalize: divide the Adam directions by their RMS over each tensor (the default). With ``False`` they
            are Adam's own ``m_b / sqrt(v)``, whose size shrinks where the gradient's sign is noisy, and the
            untrained optimizer is Adam at learning rate ``step_mult`` (0.96 of the mix on the decay closest to
            0.9).
        weight_decay: with ``> 0``, one more output per tensor: a decoupled weight decay ``wd = weight_decay *
            exp(out)`` (starting at ``weight_decay``), applied like AdamW's, ``-step * wd * p`` (``step`` the
            tensor's step size). Needs ``normalize=False``. 0 (the default): no decay and no such output.
        init_from: start from the weights of this ``hyper_adam`` file (the same configuration; a single-network
            file may warm-start a ``per_kind`` one; see :meth:`warm_start`).

    At initialisation the MLP's output layer is zero: every tensor steps ``step_mult`` (RMS) along the
    normalised Adam direction, so meta-training starts at a per-tensor-normalised Adam (at Adam itself with
    ``normalize=False``).

    Example:
        >>> lopt = HyperAdamOptimizer()
        >>> params = {"w": torch.zeros(3, 4)}
        >>> new_params, state = lopt.step(params, {"w": torch.ones(3, 4)}, lopt.init_state(params))
        >>> round(new_params["w"][0, 0].item(), 4)
        -0.01
    """

    def __init__(self, hidden: Sequence[int] = (16, 16), step_mult: float = 1e-2, per_kind: bool = False,
                 features: Sequence[str] = DEFAULT_FEATURES, rms_decay: float = 0.999, warmup: float = 0.0,
                 log_rms_min: float | None = None, normalize: bool = True, weight_decay: float = 0.0,
                 init_from: str | None = None) -> None:
        names = canonical_features(features)
        other = [n for n in names if not n.startswith(("adam", "t")) and n not in PER_TENSOR]
        if other:
            raise ValueError(f"hyper_adam reads the Adam directions ('adamB') and per-tensor inputs only "
                             f"({', '.join(PER_TENSOR)}, 'tTAU'), not {', '.join(map(repr, other))}"
                             + ("; the values 'p' come with weight_decay > 0" if "p" in other else ""))
        if not any(n.startswith("adam") for n in names):
            raise ValueError("hyper_adam needs at least one momentum decay: an Adam direction 'adamB' in features")
        if weight_decay < 0 or (weight_decay > 0 and normalize):
            raise ValueError(f"weight_decay must be >= 0 and needs normalize=False (it decays the raw values), "
                             f"got {weight_decay} with normalize={normalize}")
        if log_rms_min is not None and not {"log_rms_g", "log_rms_p"} & set(names):
            raise ValueError("log_rms_min clamps the log RMS inputs, and features has neither 'log_rms_g' nor "
                             "'log_rms_p'")
        feats = FeatureSet(names + (["p"] if weight_decay > 0 else []), rms_decay=rms_decay, normalize=normalize)
        super().__init__({"hidden": list(hidden), "step_mult": step_mult, "per_kind": per_kind, "features": names,
                          "rms_decay": rms_decay, "warmup": float(warmup),
                          "log_rms_min": None if log_rms_min is None else float(log_rms_min),
                          "normalize": normalize, "weight_decay": float(weight_decay)},
                         feats, per_kind, step_mult, 1.0, warmup)
        self.log_rms_min = log_rms_min
        self.num_decays, self.weight_decay = sum(n.startswith("adam") for n in names), float(weight_decay)
        # feature rows (FeatureSet.names): the raw values (weight_decay only), the Adam directions, then the
        # per-tensor inputs (log RMS of g and/or p, log numel, step embedding)
        self._first_adam = int(weight_decay > 0)  # one feature row (the values) and one output (the log decay)
        self._context = self._first_adam + self.num_decays
        self._num_log_rms = sum(n.startswith("log_rms") for n in names)
        assert all(n.startswith("log_rms") for n in self.feats.names[self._context:self._context + self._num_log_rms])
        n_in = self.feats.num_features - self._context
        n_out = 1 + self.num_decays + self._first_adam  # magnitude, mix logits[, log decay]
        self.nets = nn.ModuleDict({k: CoordinatewiseMLP(n_in, hidden, n_out) for k in self.kinds})
        first = self.feats.adam_index(INIT_DECAY)
        for net in self.nets.values():
            with torch.no_grad():
                net.layers[-1].weight.zero_()
                net.layers[-1].bias.zero_()
                net.layers[-1].bias[1 + first - self._first_adam] = 4.0  # softmax: ~0.96 of the mix (3 decays) on INIT_DECAY
        if init_from:
            self.warm_start(init_from)

    def _net(self, kind: str, x: Tensor, extra: Any, seg: Tensor | None = None,
             num_segments: int = 0) -> tuple[Tensor, Tensor, Any]:
        adam, context = x[self._first_adam:self._context], x[self._context:]
        if seg is not None:  # the context is the same for every coordinate of a tensor: one column per tensor
            context = context.index_select(1, segment_starts(seg, num_segments))
        if self.log_rms_min is not None:  # the context starts with the log RMS of g and/or p (FeatureSet.names)
            k = self._num_log_rms
            context = torch.cat([context[:k].clamp_min(self.log_rms_min), context[k:]])
        out = self.nets[kind](context)
        magnitude, mix = out[0], torch.softmax(out[1:1 + self.num_decays], dim=0)
        decay = self.weight_decay * torch.exp(out[1 + self.num_decays:]) if self.weight_decay else None
        if seg is not None:
            magnitude, mix = magnitude.index_select(0, seg), mix.index_select(1, seg)
            decay = None if decay is None else decay.index_select(1, seg)
        direction = -(mix * adam).sum(0)
        if decay is not None:  # decoupled weight decay on the raw values (feature row 0)
            direction = direction - decay[0] * x[0]
        return direction, magnitude, None
