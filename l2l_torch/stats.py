"""Paired comparisons of two optimizers over the same held-out seeds, corrected for the rows of a table.

A learned optimizer and a baseline train the same task instances (seed ``k`` of both is the same network,
data order and initial weights), so their final figures are paired. :func:`paired_comparison` applies the
paired t-test of :func:`scipy.stats.ttest_rel` and its 95 % confidence interval on the mean difference;
:func:`holm` adjusts the p-values of a table's rows (Holm-Bonferroni step-down, family-wise error at
``alpha``); :func:`verdict` says "better", "level" or "worse" from the adjusted p-value alone.
:func:`unpaired_comparison` is the fallback for figures stored as mean, std and count only (no per-seed values):
Welch's t-test of :func:`scipy.stats.ttest_ind_from_stats`, with the same keys as :func:`paired_comparison`.

Example:
    >>> rows = [paired_comparison([0.50, 0.52, 0.49], [0.55, 0.56, 0.54])]
    >>> rows[0]["mean_diff"] < 0
    True
    >>> [verdict(r["mean_diff"], p) for r, p in zip(rows, holm([r["p"] for r in rows]))]
    ['better']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from scipy import stats

#: family-wise error rate of a table's verdicts
ALPHA = 0.05


def paired_comparison(learned: Sequence[float | None], baseline: Sequence[float | None],
                      confidence: float = 0.95) -> dict[str, Any]:
    """Paired t-test of ``learned - baseline`` over the seeds where both finished.

    Args:
        learned, baseline: one final figure per seed, in the same seed order; ``None`` marks a
            diverged run, and that seed is left out of both.

    Returns:
        ``{"n", "mean_diff", "ci_low", "ci_high", "p"}``: the number of pairs, the mean difference,
        its ``confidence`` interval and the two-sided p-value; the last four are ``nan`` with fewer
        than two pairs or when every difference is the same.

    Raises:
        ValueError: the two sequences differ in length (they cannot be paired).
    """
    if len(learned) != len(baseline):
        raise ValueError(f"cannot pair {len(learned)} values with {len(baseline)}")
    pairs = [(a, b) for a, b in zip(learned, baseline) if a is not None and b is not None
             and math.isfinite(a) and math.isfinite(b)]
    nan = float("nan")
    out: dict[str, Any] = {"n": len(pairs), "mean_diff": nan, "ci_low": nan, "ci_high": nan, "p": nan}
    if len(pairs) < 2:
        return out
    a, b = zip(*pairs)
    out["mean_diff"] = sum(x - y for x, y in pairs) / len(pairs)
    if len({x - y for x, y in pairs}) == 1:
        return out  # no spread: the t statistic is undefined
    res = stats.ttest_rel(a, b)
    ci = res.confidence_interval(confidence)
    out.update(ci_low=float(ci.low), ci_high=float(ci.high), p=float(res.pvalue))
    return out


def unpaired_comparison(learned: tuple[float, float, int], baseline: tuple[float, float, int],
                        confidence: float = 0.95, population_std: bool = True) -> dict[str, Any]:
    """Welch's (unequal-variance) t-test of ``learned - baseline`` from summary figures alone.

    Args:
        learned, baseline: ``(mean, std, n)`` of each optimizer's final figure over its ``n`` finished seeds.
        population_std: the stored ``std`` divides by ``n`` (``torch.std(unbiased=False)``, as ``evaluate.py``
            writes it); it is converted to the sample std, ``std * sqrt(n / (n - 1))``, first. ``False``: ``std``
            is already the sample std.

    Returns:
        The keys of :func:`paired_comparison`; ``"n"`` is the smaller of the two counts. The interval is Welch's,
        on the Welch-Satterthwaite degrees of freedom; the last four values are ``nan`` when either count is
        below two or both spreads are zero (``mean_diff`` is still given then, with two or more on each side).
    """
    (ma, sa, na), (mb, sb, nb) = learned, baseline
    nan = float("nan")
    out: dict[str, Any] = {"n": min(na, nb), "mean_diff": nan, "ci_low": nan, "ci_high": nan, "p": nan}
    if na < 2 or nb < 2:
        return out
    if population_std:
        sa, sb = sa * math.sqrt(na / (na - 1)), sb * math.sqrt(nb / (nb - 1))
    out["mean_diff"] = ma - mb
    va, vb = sa ** 2 / na, sb ** 2 / nb
    if va + vb == 0:
        return out
    res = stats.ttest_ind_from_stats(ma, sa, na, mb, sb, nb, equal_var=False)
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    half = stats.t.ppf(0.5 + confidence / 2, df) * math.sqrt(va + vb)
    out.update(ci_low=ma - mb - half, ci_high=ma - mb + half, p=float(res.pvalue))
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given (``nan`` stays ``nan`` and is not counted).

    The i-th smallest of m p-values is multiplied by ``m - i`` (i from 0), and the adjusted values are
    made non-decreasing in that order and capped at 1. Rejecting where the adjusted value is below
    ``alpha`` keeps the probability of any false verdict in the table at most ``alpha``.
    """
    valid = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    out = [float("nan")] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(valid):
        running = max(running, min(1.0, (len(valid) - rank) * p))
        out[i] = running
    return out


def verdict(mean_diff: float, p_adjusted: float, lower_is_better: bool = True, alpha: float = ALPHA) -> str:
    """``"better"`` or ``"worse"`` when the adjusted p-value is below ``alpha`` (the sign of ``mean_diff``,
    learned minus baseline, says which), else ``"level"``."""
    if math.isnan(p_adjusted) or p_adjusted >= alpha:
        return "level"
    return "better" if (mean_diff < 0) == lower_is_better else "worse"
