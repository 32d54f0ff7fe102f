"""The research STN family with a meta-objective term on other digits (research/tools/stn_aux.py)."""

from __future__ import annotations

import pytest
import torch

from l2l_torch.affnist import CANVAS, DigitSets, affnist_transform
from l2l_torch.learned_optimizers import LSTMOptimizer
from l2l_torch.tasks.stn import STNTask
from research.tools.stn_aux import AuxAffNISTDataModule, AuxSTNFamily, AuxSTNTask
from tests.helpers import SHARED_DATA, needs_data
from tests.test_affnist import fake_digits, fake_sets


def _with_aux(sets: DigitSets, digits: int = 3, n: int = 5) -> DigitSets:
    """``sets`` plus ``digits`` other "digits" of ``n`` images each for the meta-objective's mass term."""
    x = affnist_transform(fake_digits(2 * digits * n, seed=7), 9)[0]
    return DigitSets(sets.splits, sets.target, sets.source, x[:digits * n].view(digits, n, 1, CANVAS, CANVAS),
                     x[digits * n:].view(digits, n, 1, CANVAS, CANVAS))


def test_stn_mass_penalty_is_zero_at_identity_and_enters_meta_loss_and_validation():
    """The mass term on other digits: 0 for the identity STN, ``log(s) ** 2`` for a warp that scales mass by ``s``;
    it enters the unroll's meta-loss (with a meta-gradient) and validation, never the optimizee's loss."""
    from l2l_torch.unroll import init_unroll, truncated_unroll

    sets = _with_aux(fake_sets())
    task = AuxSTNTask(sets, seed=0, batch_size=6, aux_weight=2.0)
    params, buffers = task.init_params(0)
    assert float(task.mass_penalty(params, buffers, sets.aux_val)) == pytest.approx(0.0, abs=1e-8)
    shrunk = {**params, "fc2.bias": torch.tensor([2.0, 0, 0, 0, 2.0, 0])}  # samples 2x the extent
    x = sets.aux_val.flatten(0, 1)
    ratio = (task.forward(shrunk, buffers, x)[0].sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))).view(3, 5).mean(1)
    torch.testing.assert_close(task.mass_penalty(shrunk, buffers, sets.aux_val), ratio.log().square().mean())
    assert float(ratio.max()) < 0.5
    final = {"val_loss": 0.25}
    assert task.validation_loss(final, params, buffers) == pytest.approx(0.25, abs=1e-6)
    assert task.validation_loss(final, shrunk, buffers) == pytest.approx(
        0.25 + 2.0 * float(ratio.log().square().mean()), rel=1e-5)
    plain = STNTask(sets, seed=0, batch_size=6)  # the product task has no such term
    assert plain.meta_penalty(params, buffers, torch.Generator()) is None
    assert plain.validation_loss(final) == 0.25
    lopt = LSTMOptimizer(output_scale=0.01)
    with_term = truncated_unroll(lopt, init_unroll(lopt, task, 0), 3)
    without = truncated_unroll(lopt, init_unroll(lopt, plain, 0), 3)
    assert float(with_term.meta_loss) > float(without.losses.mean())  # the term is > 0 once the STN moves
    with_term.meta_loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lopt.parameters())
    with pytest.raises(ValueError, match="aux_weight"):
        AuxSTNTask(fake_sets(), aux_weight=1.0)


@needs_data("MNIST")
def test_aux_family_gets_the_other_digits_from_its_datamodule():
    family = AuxSTNFamily(data_dir=str(SHARED_DATA), n_train=16, n_val=4, n_test=4, aux_digits=(0, 7), aux_weight=1.0,
                          n_aux=5, n_aux_val=3)
    task = family.sample(0)
    assert isinstance(family.data_module(), AuxAffNISTDataModule) and isinstance(task, AuxSTNTask)
    assert task.data.aux.shape == (2, 5, 1, 40, 40) and task.data.aux_val.shape == (2, 3, 1, 40, 40)
    assert task.describe()["aux_weight"] == 1.0
    assert family.data_source.endswith("mass term (weight 1.0) on digits [0, 7]")
    with pytest.raises(ValueError, match="needs aux_digits"):
        AuxSTNFamily(aux_weight=1.0)
