"""Per-coordinate input features for learned optimizers (RNNprop / small_fc_lopt style).

A :class:`FeatureSet` turns flat gradients and params of one group of coordinates into the inputs
of an optimizer network, and keeps the accumulators it needs (momenta, second moments, the step
count) as one functional ``(S, N)`` tensor: one row per accumulator, coordinates along the last
axis, the same coordinate-minor layout as the LSTM's hidden state. Nothing is written in place, so
the features are differentiable w.r.t. the params (and so w.r.t. ``theta`` through earlier steps).

A feature set is chosen by naming its features (:data:`FEATURE_FORMS`; :class:`FeatureSet` lists them with their
shapes); whatever order they are named in, the rows come in one canonical order (:func:`canonical_features`), so
the weights of a network that reads them always mean the same inputs.

The step count is kept per coordinate (the last accumulator row) so that
:class:`l2l_torch.LearnedOptimizer`, which stores per-coordinate state only, keeps it too.
"""

from __future__ import annotations

import math
import re
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


#: the named features, in their canonical order (``B`` a momentum decay in ``[0, 1)``, ``TAU`` a time scale > 0)
FEATURE_FORMS = ("g", "p", "mB", "adamB", "rsqrt", "log_rms_g", "log_rms_p", "log_numel", "tTAU")
#: the features of the per-coordinate optimizers (small_fc, rnnprop) unless configured otherwise
DEFAULT_FEATURES = ("g", "p", "m0.5", "m0.9", "m0.99", "adam0.5", "adam0.9", "adam0.99", "rsqrt",
                    "t1", "t3", "t10", "t30", "t100")
_FIXED = {"g": 0, "p": 1, "rsqrt": 4, "log_rms_g": 5, "log_rms_p": 6, "log_numel": 7}
_NUMBERED = re.compile(r"(m|adam|t)(.+)")
_RANK = {"m": 2, "adam": 3, "t": 8}


def number_name(x: float) -> str:
    """The spelling of a decay or time scale in a feature name: the shortest decimal that reads back as ``x``
    (``0.9`` -> ``"0.9"``, ``10.0`` -> ``"10"``), so a name holds its number exactly."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def parse_feature(name: str) -> tuple[int, float, str]:
    """``(rank, number, canonical name)`` of one feature name; ``rank`` is its group's place in the canonical
    order, ``number`` its decay or time scale (0 for the features without one).

    Raises:
        ValueError: not a feature name, or a decay outside ``[0, 1)``, or a time scale <= 0.
    """
    if not isinstance(name, str):
        raise ValueError(f"a feature is named by a string, got {name!r}")
    if name in _FIXED:
        return _FIXED[name], 0.0, name
    m = _NUMBERED.fullmatch(name)
    try:
        x = float(m.group(2)) if m else None
    except ValueError:
        x = None
    if x is None or not math.isfinite(x):
        raise ValueError(f"unknown feature {name!r}; the features are {', '.join(FEATURE_FORMS)} "
                         "(B a momentum decay such as 0.9, TAU a time scale in steps such as 10)")
    kind = m.group(1)
    if kind == "t" and not x > 0:
        raise ValueError(f"feature {name!r}: a time scale must be > 0")
    if kind != "t" and not 0.0 <= x < 1.0:
        raise ValueError(f"feature {name!r}: momentum decays must be in [0, 1)")
    return _RANK[kind], x, kind + number_name(x)


def canonical_features(features: Sequence[str]) -> list[str]:
    """``features`` in the canonical order (the order of :data:`FEATURE_FORMS`; decays and time scales
    ascending), each in its canonical spelling (``"t10.0"`` -> ``"t10"``).

    Raises:
        ValueError: an unknown name (see :func:`parse_feature`), a feature named twice, or none at all.

    Example:
        >>> canonical_features(["t10", "adam0.9", "g", "m0.99", "m0.9"])
        ['g', 'm0.9', 'm0.99', 'adam0.9', 't10']
    """
    if isinstance(features, str):
        raise ValueError(f"features is a list of feature names, got the string {features!r}")
    parsed = [parse_feature(n) for n in features]
    names = [c for _, _, c in parsed]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"features: {', '.join(map(repr, twice))} named more than once")
    if not parsed:
        raise ValueError("the feature set is empty: name at least one feature")
    return [c for _, _, c in sorted(parsed)]


class FeatureSet:
    """The features of a learned optimizer and the accumulators behind them (no weights).

    Features (``N`` coordinates of ``T`` parameter tensors; every feature is one ``(N,)`` row of the ``(F, N)``
    feature tensor), in their canonical order, whatever the order they are named in:

    * ``"g"``: the gradient; ``"p"``: the parameter value;
    * ``"mB"`` (e.g. ``"m0.9"``): the momentum at decay ``B`` (the bias-corrected EMA of ``g``);
    * ``"adamB"`` (e.g. ``"adam0.9"``): ``m_B / (sqrt(v) + eps)``, the Adam direction at decay ``B`` (RNNprop's
      inputs, Lv et al. 2017), with ``v`` the bias-corrected EMA of ``g^2`` at ``rms_decay``;
    * ``"rsqrt"``: ``1 / (sqrt(v) + eps)``;
    * with ``normalize``, every feature above is divided by its root-mean-square over the coordinates of its own
      parameter tensor (the per-tensor second-moment normalisation of Metz et al. 2022), so the inputs have unit
      scale whatever the scale of the loss or of the parameter;
    * ``"log_rms_g"``, ``"log_rms_p"``: the log root-mean-square of ``g`` (of ``p``) over the coordinates of its
      parameter tensor, taken before that normalisation and the same for every coordinate of a tensor: what the
      normalisation hides, so the network can tell layers apart and give each its own step size (on fmnist_t1,
      Adam with one learning rate per layer reaches a far lower loss than with one for all,
      ``research/experiments/fmnist_t1/per_layer_adam.json``);
    * ``"log_numel"``: the log of the number of coordinates of the parameter tensor minus its mean over the
      coordinates of the group: a fixed input that tells layers apart without the feedback of ``log_rms_p`` (a
      network's output layer is usually its smallest weight matrix). Centred so, it is about 0 on the tensors that
      hold most coordinates, so a weight on it changes the steps of the small tensors relative to the large ones
      without moving the bulk (uncentred, it would need a bias of the opposite sign grown with it);
    * ``"tTAU"`` (e.g. ``"t10"``): the training-step embedding ``tanh(t / TAU)``, ``t`` counted from 1 (not
      normalised).

    ``"mB"`` and ``"adamB"`` may name different decays (``["m0.9", "adam0.5"]``): one momentum is kept per decay
    either names. Canonically, decays and time scales ascend within their group and are spelt as the shortest
    decimal that reads back as the number (:func:`number_name`).

    Args:
        features: the names of the features (:data:`DEFAULT_FEATURES` by default).
        rms_decay: decay of the second moment ``v``.
        normalize: per-tensor second-moment normalisation of ``g``, ``p``, the momenta, the Adam directions and
            ``rsqrt``.
        eps: the ``eps`` of ``sqrt(v) + eps``.

    Raises:
        ValueError: an unknown feature name, a name given twice, no feature, or ``rms_decay`` outside ``[0, 1)``.

    Accumulators (``S = len(momentum_decays) + 2`` rows): a momentum per decay in :attr:`momentum_decays`
    (ascending), ``v``, and the step count ``t``.
    """

    def __init__(self, features: Sequence[str] = DEFAULT_FEATURES, rms_decay: float = 0.999,
                 normalize: bool = True, eps: float = 1e-8) -> None:
        if not 0.0 <= rms_decay < 1.0:
            raise ValueError(f"decays must be in [0, 1), got rms_decay={rms_decay}")
        self.names = canonical_features(features)
        numbered = [(k, float(x)) for k, x in (_NUMBERED.fullmatch(n).groups() for n in self.names
                                                if n not in _FIXED)]
        m_decays = [x for k, x in numbered if k == "m"]
        adam_decays = [x for k, x in numbered if k == "adam"]
        #: decays of the kept momenta (ascending): those of the ``m`` and ``adam`` features together
        self.momentum_decays = tuple(sorted(set(m_decays) | set(adam_decays)))
        #: time scales of the step embedding (ascending)
        self.time_taus = tuple(x for k, x in numbered if k == "t")
        self.rms_decay, self.normalize, self.eps = float(rms_decay), bool(normalize), eps
        self._m_rows = [self.momentum_decays.index(b) for b in m_decays]
        self._adam_rows = [self.momentum_decays.index(b) for b in adam_decays]
        self._log_rms = [n for n in ("log_rms_g", "log_rms_p") if n in self.names]

    @property
    def num_accumulators(self) -> int:
        """``S``: rows of the accumulator tensor (momenta, second moment, step count)."""
        return len(self.momentum_decays) + 1 + 1

    @property
    def num_features(self) -> int:
        """``F``: rows of the feature tensor."""
        return len(self.names)

    def adam_index(self, decay: float = 0.9) -> int:
        """Row of the ``m_b / sqrt(v)`` feature whose decay ``b`` is closest to ``decay``."""
        adam = [n for n in self.names if n.startswith("adam")]
        if not adam:
            raise ValueError("this feature set has no m/sqrt(v) features (no 'adamB' feature)")
        return self.names.index(min(adam, key=lambda n: abs(float(n[4:]) - decay)))

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
            ``(features (F, N), new_acc (S, N))``, the features in the order of :attr:`names`.
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
        names = self.names
        feats: list[Tensor] = []
        if "g" in names:
            feats.append(g.unsqueeze(0))
        if "p" in names:
            feats.append(p.unsqueeze(0))
        if self._m_rows:
            feats.append(m_hat if len(self._m_rows) == k else m_hat[self._m_rows])
        if self._adam_rows:
            feats.append((m_hat if len(self._adam_rows) == k else m_hat[self._adam_rows]) * rsqrt)
        if "rsqrt" in names:
            feats.append(rsqrt.unsqueeze(0))
        x = torch.cat(feats) if feats else g.new_zeros(0, g.shape[0])
        if self.normalize and x.shape[0]:
            x = segment_rms_normalize(x, seg, num_segments)
        if self._log_rms:
            x = torch.cat([x, segment_log_rms(torch.stack([g if n == "log_rms_g" else p for n in self._log_rms]),
                                              seg, num_segments)])
        if "log_numel" in names:
            log_n = torch.log(segment_counts(seg, num_segments, g.dtype)).index_select(0, seg)
            x = torch.cat([x, (log_n - log_n.mean()).unsqueeze(0)])
        if self.time_taus:
            taus = torch.tensor(self.time_taus, dtype=g.dtype, device=g.device).unsqueeze(1)
            x = torch.cat([x, torch.tanh(t.unsqueeze(0) / taus)])
        return x, new_acc


def flat_group(tensors: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """The tensors ``names`` of ``tensors`` flattened and concatenated: ``(N,)``."""
    return torch.cat([tensors[n].reshape(-1) for n in names])
