"""FamilyMixture: instances from several task families, deterministic and balanced per seed."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from l2l_torch.learned_optimizers import LSTMOptimizer
from l2l_torch.tasks.base import VAL_SEED_OFFSET
from l2l_torch.tasks.family_mixture import FamilyMixture
from l2l_torch.tasks.quadratic import QuadraticFamily
from l2l_torch.tasks.regression import LinearRegressionFamily
from l2l_torch.unroll import init_unroll, truncated_unroll
from tests.helpers import smoke_train, smoke_unroll


def test_family_of_a_seed_is_deterministic_and_in_proportion():
    mix = FamilyMixture([QuadraticFamily(dim=2), QuadraticFamily(dim=3), QuadraticFamily(dim=4)], [2, 1, 1])
    assert mix.weights == [0.5, 0.25, 0.25]
    assert [mix.family_index(s) for s in range(50)] == [mix.family_index(s) for s in range(50)]
    counts = Counter(mix.family_index(s) for s in range(4000))
    assert abs(counts[0] / 4000 - 0.5) < 0.01 and abs(counts[1] / 4000 - 0.25) < 0.01
    # a handful of validation seeds already covers every family
    assert set(mix.family_index(VAL_SEED_OFFSET + i) for i in range(6)) == {0, 1, 2}
    # the chosen family samples the instance, from the same seed
    for seed in (0, 1, 2, 7, VAL_SEED_OFFSET + 3):
        task = mix.sample(seed)
        assert task.describe()["dim"] == 2 + mix.family_index(seed) and task.seed == seed


def test_mixed_problem_types_unroll_and_describe():
    mix = FamilyMixture([QuadraticFamily(), LinearRegressionFamily()])
    kinds = {type(mix.sample(s)).__name__ for s in range(4)}
    assert kinds == {"QuadraticTask", "LinearRegressionTask"}
    for s in range(2):
        smoke_unroll(LSTMOptimizer(), mix.sample(s))
    d = mix.describe()
    assert d["class"] == "FamilyMixture" and [f["name"] for f in d["families"]] == ["quadratic", "regression"]
    assert mix.to("cpu") is mix and all(f.device.type == "cpu" for f in mix.families)


def test_meta_weights_scale_the_meta_loss_and_nothing_else():
    """A family's meta-weight multiplies its instances' meta-loss (so their meta-gradient) exactly, and
    leaves the optimizee's trajectory (what the optimizer sees and does) untouched."""
    plain = FamilyMixture([QuadraticFamily(dim=3), QuadraticFamily(dim=4)])
    weighted = FamilyMixture([QuadraticFamily(dim=3), QuadraticFamily(dim=4)], meta_weights=[1.0, 3.0])
    assert "meta_weights" not in plain.describe() and weighted.describe()["meta_weights"] == [1.0, 3.0]
    lopt = LSTMOptimizer()
    for seed in (0, 1):  # one instance of each family
        i = weighted.family_index(seed)
        runs = []
        for mix in (plain, weighted):
            task = mix.sample(seed)
            assert task.meta_weight == (1.0, 3.0)[i] if mix is weighted else task.meta_weight == 1.0
            r = truncated_unroll(lopt, init_unroll(lopt, task, seed), 4)
            grads = torch.autograd.grad(r.meta_loss, list(lopt.parameters()))
            runs.append((r, grads))
        (r0, g0), (r1, g1) = runs
        w = (1.0, 3.0)[i]
        torch.testing.assert_close(r1.losses, r0.losses)
        torch.testing.assert_close(r1.meta_loss, w * r0.meta_loss)
        for a, b in zip(g0, g1):
            torch.testing.assert_close(b, w * a)


@pytest.mark.parametrize("args, error, match", [
    (([],), ValueError, "at least one family"),
    (([QuadraticFamily()], [1.0, 2.0]), ValueError, "one weight per family"),
    (([QuadraticFamily(), QuadraticFamily()], [1.0, 0.0]), ValueError, "> 0"),
    (([QuadraticFamily(), "quadratic"],), TypeError, "TaskFamily"),
    (([QuadraticFamily()], None, [1.0, 2.0]), ValueError, "one meta-weight per family"),
    (([QuadraticFamily(), QuadraticFamily()], None, [1.0, -1.0]), ValueError, "meta_weights must be"),
])
def test_bad_mixtures_are_refused(args, error, match):
    with pytest.raises(error, match=match):
        FamilyMixture(*args)


def test_mixture_from_the_command_line(tmp_path):
    """LightningCLI builds a FamilyMixture of class_path/init_args entries (as in a YAML config)."""
    spec = {"class_path": "l2l_torch.tasks.family_mixture.FamilyMixture",
            "init_args": {"weights": [3, 1], "families": [
                {"class_path": "l2l_torch.tasks.quadratic.QuadraticFamily", "init_args": {"dim": 3}},
                {"class_path": "l2l_torch.tasks.quadratic.QuadraticFamily", "init_args": {"dim": 5}}]}}
    out = smoke_train("quadratic", tmp_path, "--model.task", json.dumps(spec))
    task = json.loads((out / "optimizer.json").read_text())["task"]
    assert task["class"] == "FamilyMixture" and task["weights"] == [0.75, 0.25]
    assert [f["dim"] for f in task["families"]] == [3, 5]
