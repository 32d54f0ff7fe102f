"""A task family made of other task families: meta-train one optimizer on several kinds of problem.

:class:`FamilyMixture` draws each instance from one of its families (an MLP mixture, an STN, a CNN,
...), so a config can mix whole problem types rather than only the settings of one problem. The
family of a seed is a pure function of that seed, so training and validation instances (disjoint
seed ranges, :data:`~l2l_torch.tasks.base.VAL_SEED_OFFSET`) come from the same mixture.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from l2l_torch.tasks.base import Task, TaskFamily

#: fractional part of the golden ratio: ``frac(seed * _PHI)`` is an evenly spread sequence in [0, 1)
_PHI = (math.sqrt(5.0) - 1.0) / 2.0


class FamilyMixture(TaskFamily):
    """Instances drawn from several task families in proportion to ``weights``.

    The family of instance ``seed`` is chosen by the position of ``frac(seed * 0.618...)`` (a Weyl
    sequence) among the cumulative weights: deterministic, independent of any random state, and
    balanced over consecutive seeds, so that even a handful of validation instances (seeds
    ``VAL_SEED_OFFSET + 0, 1, ...``) covers every family in about the right proportion. The chosen
    family then samples its own instance from the same seed.

    A mixture takes no ``data:`` section (:meth:`~l2l_torch.tasks.base.TaskFamily.attach` is one
    :class:`~l2l_torch.data.DataError`): each member family loads its own dataset through its own DataModule class
    when it first needs it.

    Args:
        families: the task families (``class_path``/``init_args`` entries in a config).
        weights: relative frequency of each family (default: equal).
        meta_weights: how much an instance of each family counts in the meta-loss and in validation
            (``Task.meta_weight``; default: 1 each). Unlike a loss scale, this does not change the
            gradients the optimizer sees, only what meta-training optimizes for: e.g. ``[1, 2.5]`` for
            MLPs (final cross-entropy ~0.45) and STNs (final 1 - SSIM ~0.18) makes a relative improvement
            count about the same in both.

    Example:
        >>> from l2l_torch.tasks.quadratic import QuadraticFamily
        >>> mix = FamilyMixture([QuadraticFamily(dim=2), QuadraticFamily(dim=3)])
        >>> [mix.family_index(s) for s in range(6)]
        [0, 1, 0, 1, 0, 0]
        >>> mix.sample(1).describe()["dim"]
        3
    """

    def __init__(self, families: list[TaskFamily], weights: list[float] | None = None,
                 meta_weights: list[float] | None = None) -> None:
        super().__init__()
        if not families:
            raise ValueError("FamilyMixture needs at least one family")
        bad = [type(f).__name__ for f in families if not isinstance(f, TaskFamily)]
        if bad:
            raise TypeError(f"families must be TaskFamily instances, got {bad}")
        weights = _per_family(weights, len(families), "weight", "weights")
        self.meta_weights = _per_family(meta_weights, len(families), "meta-weight", "meta_weights")
        total = sum(weights)
        self.families, self.weights = list(families), [w / total for w in weights]
        self._edges = [sum(self.weights[: i + 1]) for i in range(len(self.weights))]
        self.name = "+".join(f.name for f in self.families)

    def family_index(self, seed: int) -> int:
        """Index (into :attr:`families`) of the family that instance ``seed`` comes from."""
        u = math.fmod(seed * _PHI, 1.0)
        return next((i for i, edge in enumerate(self._edges) if u < edge), len(self._edges) - 1)

    def family_label(self, seed: int) -> str:
        """``"<index>_<name>"`` of the family that instance ``seed`` comes from (e.g. ``"0_mlp_mixture"``)."""
        i = self.family_index(seed)
        return f"{i}_{self.families[i].name}"

    def sample(self, seed: int) -> Task:
        i = self.family_index(seed)
        task = self.families[i].sample(seed)
        task.meta_weight = self.meta_weights[i]
        return task

    def to(self, device: torch.device | str) -> FamilyMixture:
        super().to(device)
        for family in self.families:
            family.to(device)
        return self

    def prepare_data(self) -> None:
        for family in self.families:
            family.prepare_data()

    @property
    def data_source(self) -> str | None:
        sources = [part for family in self.families if family.data_source for part in family.data_source.split("; ")]
        return "; ".join(dict.fromkeys(sources)) or None  # each dataset once, though several families read it

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "families": [f.describe() for f in self.families],
                "weights": [round(w, 6) for w in self.weights],
                **({} if all(w == 1.0 for w in self.meta_weights) else {"meta_weights": self.meta_weights})}


def _per_family(values: list[float] | None, n: int, noun: str, name: str) -> list[float]:
    """``values`` as floats, one per family (default: 1 each), checked finite and > 0."""
    values = [1.0] * n if values is None else [float(v) for v in values]
    if len(values) != n:
        raise ValueError(f"need one {noun} per family ({n}), got {len(values)}")
    if min(values) <= 0 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be finite and > 0, got {values}")
    return values
