"""Adam whose step size per tensor and momentum come from a small learned network ("hyper_adam").

Every coordinate moves along a learned convex mix of the per-tensor-normalised Adam directions
``m_b / sqrt(v)`` (one per momentum decay ``b``)::

    update = -step_mult * exp(mag_mult * magnitude) * sum_b softmax(logits)_b * (m_b / sqrt(v))_normalised

and ``(magnitude, logits)`` come from an MLP that reads only what is the same for every coordinate of a
parameter tensor: the log RMS of the tensor's gradient and of its values, optionally the log of its size,
and the step embedding ``tanh(t / tau)``; it is evaluated once per tensor. So the network learns a step
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
from l2l_torch.learned_optimizers.features import segment_starts
from l2l_torch.learned_optimizers.small_fc import CoordinatewiseMLP, FeatureOptimizerBase


@register("hyper_adam")
class HyperAdamOptimizer(FeatureOptimizerBase):
    """Normalised Adam with a learned per-tensor step size and momentum mix (see the module docstring).

    Args:
        hidden: hidden widths of the MLP on the per-tensor inputs.
        step_mult, mag_mult: the step is ``step_mult * exp(mag_mult * magnitude)`` times the direction,
            whose RMS over each tensor is 1 (``magnitude`` starts at 0).
        per_kind: one MLP per parameter kind (conv / dense).
        momentum_decays: the decays ``b`` of the Adam directions mixed; the mix starts at (almost only)
            the one closest to ``init_decay``.
        rms_decay: Adam's second-moment decay.
        time_taus: the step embedding ``tanh(t / tau)`` the MLP reads (its schedule).
        warmup: a fixed linear warm-up of the step over the first ``warmup`` steps (0: none), as in
            :class:`~l2l_torch.learned_optimizers.small_fc.SmallFCOptimizer`.
        init_decay: the momentum decay the initial mix puts most of its weight on (0.96 of it with 3 decays).
        log_rms_min: clamp the log RMS inputs from below (``None``: no clamp). A zero-initialised tensor
            (BatchNorm shifts, some biases) reads ``log(1e-15) = -34.5`` at its first step, far outside the range
            of the other tensors (about -12 to 0), which a linear map (``hidden: []``) would turn into an extreme
            step.
        tensor_scale: read the per-tensor log RMS of the gradient and of the values (the default).
        tensor_size: read the log of the tensor's number of coordinates: a fixed input, so the network can give
            each layer its own step size and schedule without the feedback of the values' log RMS (which a step
            size of its own changes).
        normalize: divide the Adam directions by their RMS over each tensor (the default). With ``False`` they
            are Adam's own ``m_b / sqrt(v)``, whose size shrinks where the gradient's sign is noisy, and the
            untrained optimizer is Adam at learning rate ``step_mult`` (0.96 of the mix on ``init_decay``).
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

    def __init__(self, hidden: Sequence[int] = (16, 16), step_mult: float = 1e-2, mag_mult: float = 1.0,
                 per_kind: bool = False, momentum_decays: Sequence[float] = (0.5, 0.9, 0.99),
                 rms_decay: float = 0.999, time_taus: Sequence[float] = (1.0, 3.0, 10.0, 30.0, 100.0),
                 warmup: float = 0.0, init_decay: float = 0.9, log_rms_min: float | None = None,
                 normalize: bool = True, tensor_scale: bool = True, tensor_size: bool = False,
                 weight_decay: float = 0.0, init_from: str | None = None) -> None:
        if not momentum_decays:
            raise ValueError("hyper_adam needs at least one momentum decay")
        if weight_decay < 0 or (weight_decay > 0 and normalize):
            raise ValueError(f"weight_decay must be >= 0 and needs normalize=False (it decays the raw values), "
                             f"got {weight_decay} with normalize={normalize}")
        super().__init__(per_kind, step_mult, mag_mult, momentum_decays, use_grad=False, use_param=weight_decay > 0,
                         use_momentum=False, use_adam=True, use_rsqrt=False, rms_decay=rms_decay, normalize=normalize,
                         time_taus=time_taus, tensor_scale=tensor_scale, warmup=warmup, tensor_size=tensor_size)
        self._config = {"hidden": list(hidden), "step_mult": step_mult, "mag_mult": mag_mult, "per_kind": per_kind,
                        "momentum_decays": list(momentum_decays), "rms_decay": rms_decay,
                        "time_taus": list(time_taus), "init_decay": init_decay,
                        **({"warmup": float(warmup)} if warmup else {}),
                        **({"log_rms_min": float(log_rms_min)} if log_rms_min is not None else {}),
                        **({} if normalize else {"normalize": False}),
                        **({} if tensor_scale else {"tensor_scale": False}),
                        **({"tensor_size": True} if tensor_size else {}),
                        **({"weight_decay": float(weight_decay)} if weight_decay else {})}
        if log_rms_min is not None and not tensor_scale:
            raise ValueError("log_rms_min clamps the log RMS inputs, which tensor_scale=False drops")
        self.log_rms_min = log_rms_min
        self.num_decays, self.weight_decay = len(momentum_decays), float(weight_decay)
        # feature rows: the raw values (weight_decay only), the Adam directions, then the per-tensor inputs
        # (log RMS of g and p, log numel, step embedding)
        self._first_adam = int(weight_decay > 0)  # one feature row (the values) and one output (the log decay)
        self._context = self._first_adam + self.num_decays
        n_in = self.feats.num_features - self._context
        assert not tensor_scale or self.feats.names[self._context:self._context + 2] == ["log_rms_g", "log_rms_p"]
        n_out = 1 + self.num_decays + self._first_adam  # magnitude, mix logits[, log decay]
        self.nets = nn.ModuleDict({k: CoordinatewiseMLP(n_in, hidden, n_out) for k in self.kinds})
        first = self.feats.adam_index(init_decay)
        for net in self.nets.values():
            with torch.no_grad():
                net.layers[-1].weight.zero_()
                net.layers[-1].bias.zero_()
                net.layers[-1].bias[1 + first - self._first_adam] = 4.0  # softmax: ~0.96 of the mix (3 decays) on init_decay
        if init_from:
            self.warm_start(init_from)

    def _net(self, kind: str, x: Tensor, extra: Any, seg: Tensor | None = None,
             num_segments: int = 0) -> tuple[Tensor, Tensor, Any]:
        adam, context = x[self._first_adam:self._context], x[self._context:]
        if seg is not None:  # the context is the same for every coordinate of a tensor: one column per tensor
            context = context.index_select(1, segment_starts(seg, num_segments))
        if self.log_rms_min is not None:  # the context starts with the log RMS of g and of p (FeatureSet.names)
            context = torch.cat([context[:2].clamp_min(self.log_rms_min), context[2:]])
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
