"""The research meta-objective term on accuracy (research/tools/soft_error.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from l2l_torch.learned_optimizers import LSTMOptimizer
from l2l_torch.tasks.image_classification import ImageClassificationTask
from l2l_torch.unroll import init_unroll, truncated_unroll
from research.tools.soft_error import SoftErrorTask, soft_error
from tests.helpers import needs_data, smoke_train


def _task(weight: float | None) -> ImageClassificationTask:
    """An MLP 64-5-10 on 8x8 random images; with a soft-error term of ``weight`` unless None."""
    g = torch.Generator().manual_seed(0)
    data = {split: (torch.randn(40, 1, 8, 8, generator=g), torch.randint(10, (40,), generator=g))
            for split in ("train", "val", "test")}
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.Tanh(), nn.Linear(5, 10))
    if weight is None:
        return ImageClassificationTask(3, data, module, batch_size=6)
    return SoftErrorTask(3, data, module, batch_size=6, weight=weight)


def test_soft_error_is_the_mean_probability_mass_off_the_label():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 50.0]])
    labels = torch.tensor([0, 0, 0])
    p = 1 / (1 + torch.exp(torch.tensor(-2.0)))  # softmax of the right label in the second row
    torch.testing.assert_close(soft_error(logits, labels), (0.5 + (1 - p) + 1.0) / 3)
    confident = torch.tensor([[40.0, 0.0], [0.0, 40.0]])  # all right: 0; all wrong: 1 (the error rate)
    assert float(soft_error(confident, torch.tensor([0, 1]))) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_error(confident, torch.tensor([1, 0]))) == pytest.approx(1.0, abs=1e-6)


def test_the_term_enters_the_meta_loss_only_and_validation_is_the_error_rate():
    """Same instance, same optimizee losses (the optimizee never sees the term); the meta-loss grows by the weighted
    soft error and has a finite meta-gradient; validation is 1 - val_accuracy; weight 0 is the plain task."""
    plain, term = _task(None), _task(2.0)
    for a, b in zip(plain.init_params(), term.init_params(), strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lopt = LSTMOptimizer(output_scale=0.01)
    without = truncated_unroll(lopt, init_unroll(lopt, plain, 0), 3)
    with_term = truncated_unroll(lopt, init_unroll(lopt, term, 0), 3)
    assert torch.equal(with_term.losses, without.losses)  # the training batches and steps are the plain task's
    extra = float(with_term.meta_loss) - float(without.meta_loss)
    assert 0.0 < extra < 2.0  # 2 x a soft error in (0, 1)
    with_term.meta_loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lopt.parameters())
    assert term.validation_loss({"val_loss": 0.5, "val_accuracy": 0.8}) == pytest.approx(0.2)
    assert plain.validation_loss({"val_loss": 0.5, "val_accuracy": 0.8}) == 0.5
    assert _task(0.0).meta_penalty(*term.init_params(), torch.Generator()) is None
    with pytest.raises(ValueError, match="weight"):
        _task(-1.0)


@needs_data("FashionMNIST")
def test_the_research_config_meta_trains_from_the_warm_start(tmp_path):
    """``python train.py --task fmnist_t1_soft_error`` (one meta-step): it trains SoftErrorTasks of weight 2 from the
    shipped lstm_fmnist_family and writes an optimizer."""
    import json

    out = smoke_train("fmnist_t1_soft_error", tmp_path / "run")
    meta = json.loads((out / "optimizer.json").read_text())
    assert meta["task"]["soft_error_weight"] == 2.0
    assert meta["warm_started_from"].endswith("lstm_fmnist_family.pt")
