"""The truncation schedule: how an optimizee's training is cut into truncations, and how their steps count.

An optimizee trains for ``horizon`` steps (T) in truncations of ``unroll`` steps (K); each truncation is one
meta-step. The schedule also says how the steps of a truncation are weighted in its meta-loss
``sum_t w_t f(x_t) / K``. Random lengths draw from torch's global generator, which a run checkpoints, so a
resumed run draws the same lengths.

With ``min_horizon`` set, every optimizee draws its own horizon, log-uniformly in ``[min_horizon, horizon]`` and
deterministically in its task seed (:meth:`TruncationSchedule.horizon_of`), so that one meta-training run sees
short and long trainings and a validation instance always trains for the same number of steps.

Example:
    >>> s = TruncationSchedule(horizon=100, unroll=30)
    >>> [s.length(r) for r in (100, 70, 40, 10)]     # 100 = 30 + 30 + 30 + 10
    [30, 30, 30, 10]
    >>> s = TruncationSchedule(horizon=1000, unroll=20, min_horizon=100)
    >>> all(100 <= s.horizon_of(seed) <= 1000 for seed in range(50)), s.horizon_of(3) == s.horizon_of(3)
    (True, True)
"""

from __future__ import annotations

import math
import random

import torch
from torch import Tensor

from l2l_torch.unroll import linear_loss_weights

WEIGHTINGS = ("linear", "horizon_linear")


class TruncationSchedule:
    """Horizon, truncation length and meta-loss weights of meta-training.

    Args:
        horizon: optimizee steps before a fresh optimizee is sampled (T).
        unroll: optimizee steps per truncation (K); when it does not divide the horizon, the last truncation
            of each optimizee is shorter.
        min_unroll: if set, each truncation's length is drawn log-uniformly from ``[min_unroll, unroll]``.
        horizon_curriculum: meta-steps over which the horizon grows linearly from ``unroll`` to ``horizon``
            (short optimizee runs first); 0 disables it.
        loss_weights: the ``w_t``: ``None`` (all 1); a list of ``unroll`` numbers (a shorter truncation uses the
            first ones); ``"linear"``, the ramp ``2 (t + 1) / (K + 1)`` (mean 1) that weights the end of a
            truncation most; or ``"horizon_linear"``, ``2 s / (T + 1)`` at step ``s = 1 ... T`` of the whole
            horizon (mean 1 over it), which weights the end of the optimizee's training most.
        min_horizon: if set, each optimizee's horizon is drawn log-uniformly from ``[min_horizon, horizon]`` (the
            curriculum's horizon while it grows), deterministically in the optimizee's task seed; ``horizon`` is
            then the longest. A ``min_horizon`` above ``horizon`` is taken as ``horizon`` (so that overriding
            ``horizon`` alone, e.g. for a smoke run, keeps working).
    """

    def __init__(self, horizon: int = 100, unroll: int = 20, min_unroll: int | None = None,
                 horizon_curriculum: int = 0, loss_weights: list[float] | str | None = None,
                 min_horizon: int | None = None) -> None:
        if horizon < 1 or not 1 <= unroll <= horizon:
            raise ValueError(f"unroll ({unroll}) must be in [1, horizon={horizon}]")
        if min_horizon is not None and min_horizon < 1:
            raise ValueError(f"min_horizon must be >= 1 optimizee steps, got {min_horizon}")
        if min_unroll is not None and not 1 <= min_unroll <= unroll:
            raise ValueError(f"min_unroll must be in [1, unroll={unroll}], got {min_unroll}")
        if horizon_curriculum < 0:
            raise ValueError(f"horizon_curriculum must be >= 0 meta-steps, got {horizon_curriculum}")
        if isinstance(loss_weights, str) and loss_weights not in WEIGHTINGS:
            raise ValueError(f"loss_weights must be a list of {unroll} numbers, 'linear', 'horizon_linear' or None, "
                             f"got {loss_weights!r}")
        if isinstance(loss_weights, list | tuple) and len(loss_weights) != unroll:
            raise ValueError(f"loss_weights needs one weight per unrolled step ({unroll}), got {len(loss_weights)}")
        self.horizon, self.unroll, self.min_unroll = horizon, unroll, min_unroll
        self.horizon_curriculum, self.loss_weights, self.min_horizon = horizon_curriculum, loss_weights, min_horizon
        self._fixed = (linear_loss_weights(unroll) if loss_weights == "linear"
                       else None if loss_weights is None or isinstance(loss_weights, str)
                       else [float(w) for w in loss_weights])

    def horizon_at(self, meta_step: int) -> int:
        """The horizon at ``meta_step``: ``horizon``, or less early in a curriculum."""
        if not self.horizon_curriculum:
            return self.horizon
        frac = min(1.0, meta_step / self.horizon_curriculum)
        return int(round(self.unroll + frac * (self.horizon - self.unroll)))

    def horizon_of(self, seed: int | None, meta_step: int | None = None) -> int:
        """The horizon of the optimizee of task seed ``seed`` at ``meta_step`` (None: after any curriculum):
        :meth:`horizon_at`, or with ``min_horizon`` a log-uniform draw in ``[min_horizon, horizon_at]`` that depends on
        ``seed`` alone (the same quantile of the range at every meta-step). ``seed`` None: :meth:`horizon_at`."""
        longest = self.horizon if meta_step is None else self.horizon_at(meta_step)
        if self.min_horizon is None or seed is None:
            return longest
        lo = min(self.min_horizon, longest)
        u = random.Random(f"horizon/{seed}").random()
        return max(lo, min(longest, int(round(math.exp(math.log(lo) + u * (math.log(longest) - math.log(lo)))))))

    def length(self, remaining: int) -> int:
        """Steps of the next truncation, never past the horizon (``remaining`` steps left)."""
        k = self.unroll
        if self.min_unroll is not None and self.min_unroll < self.unroll:
            u = float(torch.empty(()).uniform_(math.log(self.min_unroll), math.log(self.unroll + 1)))
            k = min(self.unroll, int(math.exp(u)))
        return max(1, min(k, remaining))

    def weights(self, k: int, start: int, horizon: int, device: torch.device | str) -> Tensor | None:
        """``(k,)`` meta-loss weights of a ``k``-step truncation that starts after optimizee step ``start`` of a
        ``horizon``-step run, or None for equal weights."""
        if self.loss_weights == "horizon_linear":
            s = torch.arange(1, k + 1, device=device, dtype=torch.float32) + start
            return 2.0 * s / (horizon + 1)
        return None if self._fixed is None else torch.tensor(self._fixed[:k], device=device)
