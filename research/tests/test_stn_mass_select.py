"""Checkpoint selection on the STN with bounds on the validation digits' mass (research/tools/stn_mass_select.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from l2l_torch.tasks.base import VAL_SEED_OFFSET
from l2l_torch.tasks.stn import STNTask
from research.tools.stn_mass_select import (
    OUT_OF_BOUNDS,
    MassCappedSTNFamily,
    MassCappedSTNTask,
    mass_excess,
    measure_caps,
)
from tests.test_affnist import fake_sets


def test_mass_excess_sums_the_distance_outside_the_bounds_of_the_capped_splits():
    caps = {"val": 1.1, "val1": 1.5}
    assert mass_excess({"val": 1.0, "val1": 1.5, "val6": 9.0}, caps, 0.8) == 0.0  # val6 is not capped
    assert mass_excess({"val": 1.2, "val1": 1.4}, caps, 0.8) == pytest.approx(0.1)
    assert mass_excess({"val": 0.5, "val1": 1.7}, caps, 0.8) == pytest.approx(0.3 + 0.2)
    assert mass_excess({"val": math.nan, "val1": 1.0}, caps, 0.8) == math.inf


def test_capped_validation_loss_is_the_loss_within_the_bounds_and_worse_than_any_loss_outside():
    sets = fake_sets()
    plain = STNTask(sets, seed=0, batch_size=6)
    params, buffers = plain.init_params(0)
    final = {"val_loss": 0.25, "val_mass_ratio": plain.evaluate(params, buffers, "val")["mass_ratio"]}
    ratios = {s: plain.evaluate(params, buffers, s)["mass_ratio"] for s in ("val", "val1")}
    loose = MassCappedSTNTask(sets, seed=0, batch_size=6, mass_caps={s: r + 0.1 for s, r in ratios.items()})
    assert loose.validation_loss(final, params, buffers) == pytest.approx(0.25)
    assert loose.validation_mass_ratios(final, params, buffers) == pytest.approx(ratios)
    tight = MassCappedSTNTask(sets, seed=0, batch_size=6, mass_caps={"val": 9.0, "val1": ratios["val1"] - 0.05})
    assert tight.validation_loss(final, params, buffers) == pytest.approx(OUT_OF_BOUNDS + 0.05, abs=1e-6)
    # a warp that samples twice the extent shrinks the digits: the lower bound catches it
    shrunk = {**params, "fc2.bias": torch.tensor([2.0, 0, 0, 0, 2.0, 0])}
    low = MassCappedSTNTask(sets, seed=0, batch_size=6, mass_caps={"val1": 9.0}, min_mass=0.8)
    r1 = plain.evaluate(shrunk, buffers, "val1")["mass_ratio"]
    assert r1 < 0.5
    assert low.validation_loss(final, shrunk, buffers) == pytest.approx(OUT_OF_BOUNDS + 0.8 - r1, abs=1e-6)
    assert MassCappedSTNTask(sets, seed=0, batch_size=6).validation_loss(final) == 0.25  # no caps: the plain loss
    assert loose.describe()["mass_caps"] == loose.mass_caps
    with pytest.raises(ValueError, match="not validation splits"):
        MassCappedSTNTask(sets, mass_caps={"test1": 1.5})
    with pytest.raises(ValueError, match="needs the trained params"):
        loose.validation_loss(final)


def test_family_passes_the_bounds_to_its_tasks():
    family = MassCappedSTNFamily(mass_caps={"val1": 1.5}, min_mass=0.7, batch_size=6)
    assert family.task_class is MassCappedSTNTask
    assert family.task_kwargs()["mass_caps"] == {"val1": 1.5} and family.task_kwargs()["min_mass"] == 0.7
    assert family.task_kwargs()["batch_size"] == 6


def test_measure_caps_trains_adam_on_validation_instances_and_scales_its_mean_ratios():
    sets, seeds = fake_sets(), []

    class Family:
        def sample(self, seed):
            seeds.append(seed)
            return STNTask(sets, seed, batch_size=4)

    out = measure_caps(Family(), lr=0.01, instances=2, steps=3, margin=1.1)
    assert seeds == [VAL_SEED_OFFSET, VAL_SEED_OFFSET + 1]
    assert set(out["mean_mass_ratio"]) == {"val", "val1"}
    for split, values in out["mass_ratio_per_instance"].items():
        assert len(values) == 2 and values[0] != values[1]  # two instances, two different STNs
        assert out["mean_mass_ratio"][split] == pytest.approx(sum(values) / 2)
        assert out["caps"][split] == pytest.approx(1.1 * out["mean_mass_ratio"][split])


def test_the_recipe_caps_are_the_measured_caps_rounded():
    """The caps in the STN config are caps.json's, rounded to 4 decimals, for every capped split."""
    root = Path(__file__).resolve().parents[2]
    measured = json.loads((root / "research/experiments/stn_mass_select/caps.json").read_text())["caps"]
    config = yaml.safe_load((root / "research/experiments/stn_mass_select/affnist_mass_select.yaml").read_text())
    caps = config["model"]["task"]["init_args"]["mass_caps"]
    assert caps == {s: round(c, 4) for s, c in measured.items()}
