"""Per-coordinate input features for learned optimizers (RNNprop / small_fc_lopt style).

A :class:`FeatureSet` turns flat gradients and params of one group of coordinates into the inputs
of an optimizer network, and keeps the accumulators it needs (momenta, second moments, the step
count) as one functional ``(S, N)`` tensor: one row per accumulator, coordinates along the last
axis, the same coordinate-minor layout as the LSTM's hidden state. Nothing is written in place, so
the features are differentiable w.r.t. the params (and so w.r.t. ``theta`` through earlier steps).

Features, in order (each optional):

* the gradient ``g`` and the parameter value ``p``;
* momenta ``m_b`` (bias-corrected EMA of ``g``) for each decay ``b`` in ``momentum_decays``;
* ``m_b / sqrt(v)`` for each momentum decay (the Adam direction at several decays; RNNprop,
  Lv et al. 2017), with ``v`` the bias-corrected EMA of ``g^2`` at ``rms_decay``;
* ``rsqrt(v)``;
* then every feature above is divided by its root-mean-square over the coordinates of its own
  parameter tensor (the per-tensor second-moment normalisation of Metz et al. 2022), so the inputs
  have unit scale whatever the scale of the loss or of the parameter;
* optionally (``tensor_scale``) the log root-mean-square of ``g`` and of ``p`` over the coordinates of
  their parameter tensor, taken before that normalisation and the same for every coordinate of a tensor:
  what the normalisation hides, so the network can tell layers apart and give each its own step size
  (on fmnist_t1, Adam with one learning rate per layer reaches a far lower loss than with one for all,
  ``research/experiments/fmnist_t1/per_layer_adam.json``);
* optionally (``tensor_size``) the log of the number of coordinates of the parameter tensor minus its mean
  over the coordinates of the group: a fixed input that tells layers apart without the feedback of
  ``log_rms_p`` (a network's output layer is usually its smallest weight matrix). Centred so, it is about 0
  on the tensors that hold most coordinates, so a weight on it changes the steps of the small tensors
  relative to the large ones without moving the bulk (uncentred, it would need a bias of the opposite
  sign grown with it);
* a training-step embedding ``tanh(t / tau)`` for each ``tau`` in ``time_taus`` (not normalised).

The step count is kept per coordinate (the last accumulator row) so that
:class:`l2l_torch.LearnedOptimizer`, which stores per-coordinate state only, keeps it too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def segment_ids(sizes: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """``(N,)`` long tensor mapping each coordinate of a concatenation of tensors to its tensor index.

    Example:
        >>> segment_ids([2, 1, 3])
        tensor([0, 0, 1, 2, 2, 2])
    """
    return torch.repeat_interleave(torch.arange(len(sizes), device=device),
                                   torch.as_tensor(list(sizes), device=device))


def segment_rms_normalize(x: Tensor, seg: Tensor, num_segments: int, eps: float = 1e-20) -> Tensor:
    """Divide every row of ``x`` by its root-mean-square over the coordinates of each segment.

    Args:
        x: ``(F, N)`` features of ``N`` coordinates.
        seg: ``(N,)`` segment (parameter tensor) index of each coordinate, in ``[0, num_segments)``.
        num_segments: number of segments ``T``.
        eps: added to the mean square (keeps all-zero segments at zero, not NaN).

    Returns:
        ``(F, N)``, out of place and differentiable (``index_add`` and ``index_select``).
    """
    rms = torch.sqrt(_segment_mean_square(x, seg, num_segments) + eps)
    return x / rms.index_select(1, seg)


def segment_log_rms(x: Tensor, seg: Tensor, num_segments: int, eps: float = 1e-30) -> Tensor:
    """``log`` of the root-mean-square of every row of ``x`` over each segment, broadcast back.

    Args:
        x: ``(F, N)``. seg: ``(N,)`` segment index of each coordinate. num_segments: ``T``.

    Returns:
        ``(F, N)``: entry ``(f, i)`` is ``log(sqrt(mean_{j in seg(i)} x[f, j]^2 + eps))``.
    """
    return (0.5 * torch.log(_segment_mean_square(x, seg, num_segments) + eps)).index_select(1, seg)


def segment_counts(seg: Tensor, num_segments: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(T,)``: the number of coordinates of each segment, as ``dtype``.

    Example:
        >>> segment_counts(segment_ids([2, 1, 3]), 3)
        tensor([2., 1., 3.])
    """
    return torch.zeros(num_segments, dtype=dtype, device=seg.device).index_add(
        0, seg, torch.ones(seg.shape[0], dtype=dtype, device=seg.device))


def segment_starts(seg: Tensor, num_segments: int) -> Tensor:
    """``(T,)``: the index of the first coordinate of each segment of a sorted ``seg`` (an empty segment gets the
    last index, so the result can always index: nothing reads it back through ``seg``).

    Computed on ``seg``'s device with no host synchronisation.

    Example:
        >>> segment_starts(segment_ids([2, 1, 3]), 3)
        tensor([0, 2, 3])
    """
    idx = torch.arange(seg.shape[0], device=seg.device)
    return torch.full((num_segments,), seg.shape[0], dtype=idx.dtype, device=seg.device).scatter_reduce(
        0, seg, idx, reduce="amin").clamp_max(max(seg.shape[0] - 1, 0))


def _segment_mean_square(x: Tensor, seg: Tensor, num_segments: int) -> Tensor:
    """``(F, T)``: the mean of ``x ** 2`` over the coordinates of each segment (0 for an empty one)."""
    counts = segment_counts(seg, num_segments, x.dtype)
    sumsq = torch.zeros(x.shape[0], num_segments, dtype=x.dtype, device=x.device).index_add(1, seg, x * x)
    return sumsq / counts.clamp_min(1.0)


class FeatureSet:
    """The features of a learned optimizer and the accumulators behind them (no weights).

    Args:
        use_grad: the (normalised) gradient.
        use_param: the (normalised) parameter value.
        momentum_decays: decays of the momenta ``m_b``; an empty tuple drops momentum features.
        use_momentum: the momenta themselves as features.
        use_adam: ``m_b / sqrt(v)`` for every momentum decay (RNNprop's inputs).
        use_rsqrt: ``rsqrt(v)``.
        rms_decay: decay of the second moment ``v``.
        normalize: per-tensor second-moment normalisation of the features above.
        time_taus: step embedding ``tanh(t / tau)``; empty to drop it.
        tensor_scale: the per-tensor log RMS of ``g`` and of ``p`` (before normalisation).
        tensor_size: the log of the number of coordinates of each parameter tensor, centred (above).
        eps: the ``eps`` of ``sqrt(v) + eps``.
    """

    def __init__(self, use_grad: bool = True, use_param: bool = True,
                 momentum_decays: Sequence[float] = (0.5, 0.9, 0.99), use_momentum: bool = True,
                 use_adam: bool = True, use_rsqrt: bool = True, rms_decay: float = 0.999,
                 normalize: bool = True, time_taus: Sequence[float] = (1.0, 3.0, 10.0, 30.0, 100.0),
                 tensor_scale: bool = False, tensor_size: bool = False, eps: float = 1e-8) -> None:
        for b in (*momentum_decays, rms_decay):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"decays must be in [0, 1), got {b}")
        if any(t <= 0 for t in time_taus):
            raise ValueError(f"time_taus must be > 0, got {list(time_taus)}")
        self.use_grad, self.use_param = use_grad, use_param
        self.momentum_decays = tuple(float(b) for b in momentum_decays)
        self.use_momentum, self.use_adam, self.use_rsqrt = use_momentum, use_adam, use_rsqrt
        self.rms_decay, self.normalize, self.eps = float(rms_decay), normalize, eps
        self.time_taus = tuple(float(t) for t in time_taus)
        self.tensor_scale, self.tensor_size = tensor_scale, tensor_size
        if self.num_features == 0:
            raise ValueError("the feature set is empty: enable at least one feature")

    @property
    def num_accumulators(self) -> int:
        """``S``: rows of the accumulator tensor (momenta, second moment, step count)."""
        return len(self.momentum_decays) + 1 + 1

    @property
    def num_features(self) -> int:
        """``F``: rows of the feature tensor."""
        return len(self.names)

    @property
    def names(self) -> list[str]:
        """The name of every feature row, in order (``"g"``, ``"m0.9"``, ``"adam0.9"``, ``"t10"``, ...)."""
        bs = [f"{b:g}" for b in self.momentum_decays]
        return ((["g"] if self.use_grad else []) + (["p"] if self.use_param else [])
                + ([f"m{b}" for b in bs] if self.use_momentum else [])
                + ([f"adam{b}" for b in bs] if self.use_adam else []) + (["rsqrt"] if self.use_rsqrt else [])
                + (["log_rms_g", "log_rms_p"] if self.tensor_scale else []) + (["log_numel"] if self.tensor_size else [])
                + [f"t{t:g}" for t in self.time_taus])

    def adam_index(self, decay: float = 0.9) -> int:
        """Row of the ``m_b / sqrt(v)`` feature whose decay ``b`` is closest to ``decay``."""
        if not (self.use_adam and self.momentum_decays):
            raise ValueError("this feature set has no m/sqrt(v) features (use_adam=False or no momentum decays)")
        b = min(self.momentum_decays, key=lambda x: abs(x - decay))
        return self.names.index(f"adam{b:g}")

    def init_accumulators(self, n: int, ref: Tensor) -> Tensor:
        """Zero accumulators ``(S, n)`` with ``ref``'s dtype and device (step count 0)."""
        return ref.new_zeros(self.num_accumulators, n)

    def __call__(self, acc: Tensor, g: Tensor, p: Tensor, seg: Tensor, num_segments: int) -> tuple[Tensor, Tensor]:
        """Update the accumulators with ``g`` and compute the features.

        Args:
            acc: ``(S, N)`` accumulators from :meth:`init_accumulators` or a previous call.
            g: ``(N,)`` flat gradients. p: ``(N,)`` flat params.
            seg: ``(N,)`` parameter-tensor index of each coordinate (:func:`segment_ids`).
            num_segments: number of parameter tensors.

        Returns:
            ``(features (F, N), new_acc (S, N))``.
        """
        k = len(self.momentum_decays)
        t = acc[-1] + 1.0
        betas = torch.tensor(self.momentum_decays, dtype=g.dtype, device=g.device).unsqueeze(1)  # (k, 1)
        m = betas * acc[:k] + (1.0 - betas) * g
        v = self.rms_decay * acc[k] + (1.0 - self.rms_decay) * g * g
        new_acc = torch.cat([m, v.unsqueeze(0), t.unsqueeze(0)])
        # bias correction: the zero-initialised averages are too small for the first 1/(1-b) steps
        m_hat = m / (1.0 - betas ** t)
        v_hat = v / (1.0 - self.rms_decay ** t)
        rsqrt = 1.0 / (torch.sqrt(v_hat) + self.eps)
        feats: list[Tensor] = []
        if self.use_grad:
            feats.append(g.unsqueeze(0))
        if self.use_param:
            feats.append(p.unsqueeze(0))
        if self.use_momentum and k:
            feats.append(m_hat)
        if self.use_adam and k:
            feats.append(m_hat * rsqrt)
        if self.use_rsqrt:
            feats.append(rsqrt.unsqueeze(0))
        x = torch.cat(feats) if feats else g.new_zeros(0, g.shape[0])
        if self.normalize and x.shape[0]:
            x = segment_rms_normalize(x, seg, num_segments)
        if self.tensor_scale:
            x = torch.cat([x, segment_log_rms(torch.stack([g, p]), seg, num_segments)])
        if self.tensor_size:
            log_n = torch.log(segment_counts(seg, num_segments, g.dtype)).index_select(0, seg)
            x = torch.cat([x, (log_n - log_n.mean()).unsqueeze(0)])
        if self.time_taus:
            taus = torch.tensor(self.time_taus, dtype=g.dtype, device=g.device).unsqueeze(1)
            x = torch.cat([x, torch.tanh(t.unsqueeze(0) / taus)])
        return x, new_acc


def flat_group(tensors: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """The tensors ``names`` of ``tensors`` flattened and concatenated: ``(N,)``."""
    return torch.cat([tensors[n].reshape(-1) for n in names])
