"""Every shipped learned optimizer makes the updates it made when ``tests/data/pretrained_reference.pt`` was
written (``tests/data/make_pretrained_reference.py``): 3 steps of ``LearnedOptimizer`` on a fixed MLP and a fixed
CNN with BatchNorm, on fixed batches."""

from __future__ import annotations

import pytest
import torch

from tests.data.make_pretrained_reference import MODELS, PRETRAINED, REFERENCE, STEPS, run

_REF = torch.load(REFERENCE, weights_only=True)
SHIPPED = sorted(p.stem for p in PRETRAINED.glob("*.pt"))


def test_the_reference_covers_every_shipped_optimizer():
    assert _REF["steps"] == STEPS
    assert sorted(_REF["optimizers"]) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("model", list(MODELS))
def test_shipped_optimizer_makes_the_reference_updates(name, model):
    ref = _REF["optimizers"][name][model]
    got = run(PRETRAINED / f"{name}.pt", model)
    assert list(got) == list(ref)
    start = dict(MODELS[model][0]().named_parameters())
    for k, v in got.items():
        assert not torch.equal(ref[k], start[k].detach())  # (the reference moved every parameter)
        torch.testing.assert_close(v, ref[k], msg=lambda m, k=k: f"{name}, {model}, {k}: {m}")
