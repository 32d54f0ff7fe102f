"""The STN task with a research-only meta-objective term on other digits (``research/experiments/affnist_mass``).

:class:`AuxSTNFamily` is :class:`~l2l_torch.tasks.stn.STNFamily` plus ``aux_digits``/``aux_weight``: the learned
optimizer's meta-objective (and its validation) adds ``aux_weight * mass_penalty`` on images of other digits, which
asks the trained STN to keep their size; the optimizee itself still trains on ``1 - SSIM`` of its 8s alone. The
other digits come from the same DataModule (:class:`AuxAffNISTDataModule`), never from the test images.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from l2l_torch.affnist import AffNISTDataModule, DigitSets
from l2l_torch.data import DataError
from l2l_torch.tasks.stn import STNFamily, STNTask
from l2l_torch.tasks.stn_model import mass_ratio

#: the digits other than the trained 8 and the test 6 and 1, for ``AuxSTNFamily(aux_digits=...)``
OTHER_DIGITS: tuple[int, ...] = (0, 2, 3, 4, 5, 7, 9)


class AuxAffNISTDataModule(AffNISTDataModule):
    """:class:`~l2l_torch.affnist.AffNISTDataModule` plus ``n_aux`` training and ``n_aux_val`` validation images of
    each of ``aux_digits`` (:attr:`DigitSets.aux`, :attr:`DigitSets.aux_val`)."""

    def __init__(self, *args: Any, aux_digits: tuple[int, ...] = (), n_aux: int = 200, n_aux_val: int = 100,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aux_digits, self.n_aux, self.n_aux_val = tuple(aux_digits), n_aux, n_aux_val

    def digit_set_args(self) -> dict:
        return {**super().digit_set_args(), "aux_digits": self.aux_digits, "n_aux": self.n_aux,
                "n_aux_val": self.n_aux_val}


class AuxSTNTask(STNTask):
    """:class:`~l2l_torch.tasks.stn.STNTask` whose meta-objective adds ``aux_weight * mass_penalty`` on other digits
    (:meth:`meta_penalty`, :meth:`validation_loss`)."""

    def __init__(self, data: DigitSets, seed: int = 0, *args: Any, aux_weight: float = 0.0, **kwargs: Any) -> None:
        super().__init__(data, seed, *args, **kwargs)
        if aux_weight and (data.aux is None or data.aux_val is None):
            raise ValueError("aux_weight > 0 needs the other digits' images (load_digit_sets(aux_digits=...))")
        self.aux_weight = aux_weight

    def mass_penalty(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], images: Tensor) -> Tensor:
        """How far the STN changes the size of other digits: ``mean_d log(mass ratio of digit d) ** 2``.

        Args:
            images: ``(D, n, 1, H, W)``, ``n`` images of each of ``D`` digits.

        Returns:
            A scalar: 0 when every digit's mean foreground-mass ratio (warped / input) is 1.
        """
        per_digit = self.digit_mass_ratios(params, buffers, images)
        return per_digit.clamp_min(1e-6).log().square().mean()  # (a removed digit: large, not infinite)

    def digit_mass_ratios(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], images: Tensor) -> Tensor:
        """``(D, n, 1, H, W)`` images of ``D`` digits -> ``(D,)``: each digit's mean foreground-mass ratio
        (:func:`~l2l_torch.tasks.stn_model.mass_ratio`) under the STN of ``params``."""
        x = images.flatten(0, 1)
        warped, _ = self.forward(params, buffers, x, train=False)
        return mass_ratio(warped, x).view(images.shape[:2]).mean(dim=1)

    def sample_aux(self, generator: torch.Generator) -> Tensor:
        """``(D, batch_size // D, 1, H, W)``: random training images of each of the ``D`` other digits."""
        aux = self.data.aux
        per = max(1, self.batch_size // aux.shape[0])
        idx = torch.randint(aux.shape[1], (aux.shape[0], per), generator=generator, device=self.device)
        return aux[torch.arange(aux.shape[0], device=self.device).unsqueeze(1), idx]

    def meta_penalty(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
                     generator: torch.Generator) -> Tensor | None:
        """``aux_weight * mass_penalty`` on a :meth:`sample_aux` batch of the other digits."""
        if not self.aux_weight:
            return None
        return self.aux_weight * self.mass_penalty(params, buffers, self.sample_aux(generator))

    def validation_loss(self, final: Mapping[str, float], params: Mapping[str, Tensor] | None = None,
                        buffers: Mapping[str, Tensor] | None = None) -> float:
        """The held-out loss, plus ``aux_weight * mass_penalty`` on the other digits' validation images."""
        loss = super().validation_loss(final)
        if not self.aux_weight:
            return loss
        if params is None or buffers is None:
            raise ValueError("aux_weight > 0: validation_loss needs the trained params and buffers")
        with torch.no_grad():
            return loss + self.aux_weight * float(self.mass_penalty(params, buffers, self.data.aux_val))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **_aux_description(self.data, self.aux_weight)}


def _aux_description(data: DigitSets, aux_weight: float) -> dict[str, Any]:
    """The meta-objective term on other digits, for ``describe`` (empty when off)."""
    return {"aux_weight": aux_weight, "aux_images": list(data.aux.shape[:2])} if aux_weight else {}


class AuxSTNFamily(STNFamily):
    """:class:`~l2l_torch.tasks.stn.STNFamily` with the meta-objective term on other digits.

    Args:
        aux_digits, aux_weight: other digits (MNIST/affNIST training and validation images, never test
            ones; they must differ from ``digit`` and ``test_digits``) and the weight of a meta-objective
            term that asks the trained STN to keep their size (:meth:`AuxSTNTask.mass_penalty`). The
            optimizee never sees them; only the learned optimizer's meta-loss and validation do. Default: off.
        n_aux, n_aux_val: training and validation images per other digit.
        The other arguments: as :class:`~l2l_torch.tasks.stn.STNFamily`.
    """

    datamodule_class = AuxAffNISTDataModule
    data_keys = {**STNFamily.data_keys, **{k: k for k in ("aux_digits", "n_aux", "n_aux_val")}}
    task_class = AuxSTNTask

    def __init__(self, *args: Any, aux_digits: tuple[int, ...] = (), aux_weight: float = 0.0, n_aux: int = 200,
                 n_aux_val: int = 100, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if aux_weight < 0 or (aux_weight > 0 and not aux_digits):
            raise DataError(f"aux_weight must be >= 0 and needs aux_digits, got {aux_weight} and {list(aux_digits)}")
        self.aux_digits, self.aux_weight, self.n_aux, self.n_aux_val = tuple(aux_digits), aux_weight, n_aux, n_aux_val

    def task_kwargs(self) -> dict[str, Any]:
        return {**super().task_kwargs(), "aux_weight": self.aux_weight}

    @property
    def data_source(self) -> str:
        term = f"; meta-objective mass term (weight {self.aux_weight}) on digits {list(self.aux_digits)}"
        return super().data_source + (term if self.aux_weight else "")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **_aux_description(self.data, self.aux_weight)}
