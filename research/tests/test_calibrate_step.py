"""The step-multiplier calibration tool: its unwrapping of augmented families, its score, its grid extension, and a
tiny end-to-end run on quadratics."""

import json
import math

import pytest
import torch

from l2l_torch.checkpoint import save_learned_optimizer
from l2l_torch.learned_optimizers import LSTMOptimizer
from research.tools import calibrate_step as cal


def test_unaugmented_unwraps_augmented_families_inside_a_mixture():
    mlp = {"class_path": "l2l_torch.tasks.mixture.MLPMixtureFamily", "init_args": {"widths": [16]}}
    spec = {"class_path": "l2l_torch.tasks.family_mixture.FamilyMixture",
            "init_args": {"weights": [1, 1], "families": [
                {"class_path": "l2l_torch.tasks.task_augmentation.AugmentedFamily", "init_args": {"family": mlp}},
                {"class_path": "l2l_torch.tasks.stn.STNFamily", "init_args": {}}]}}
    out = cal.unaugmented(spec)
    assert out["init_args"]["families"] == [mlp, {"class_path": "l2l_torch.tasks.stn.STNFamily", "init_args": {}}]
    assert out["init_args"]["weights"] == [1, 1]
    assert spec["init_args"]["families"][0]["class_path"].endswith("AugmentedFamily")  # the input is left as it was
    assert cal.unaugmented(spec["init_args"]["families"][0]) == mlp


def test_geometric_mean_is_blind_to_each_instances_loss_scale_and_punishes_divergence():
    assert cal.geometric_mean([1.0, 4.0]) == pytest.approx(2.0)
    assert cal.geometric_mean([0.5, None]) == math.inf
    assert cal.geometric_mean([0.5, float("nan")]) == math.inf
    # instance 2's losses are 100 times larger: it still weighs as much as instance 1 in the choice
    runs = [{"multiplier": 1.0, "train_loss": 0.2}, {"multiplier": 1.0, "train_loss": 100.0},
            {"multiplier": 0.1, "train_loss": 0.1}, {"multiplier": 0.1, "train_loss": 150.0}]
    scores = cal.score(runs)
    assert cal.select(scores) == 0.1  # 0.1 halves instance 1's loss and costs instance 2 only 1.5 times
    assert cal.select({1.0: 0.5, 0.3: 0.5}) == 1.0  # a tie keeps the larger step


def test_the_grid_grows_by_half_decades_past_a_winning_edge_at_most_twice():
    ext = {"up": 0, "down": 0}
    assert cal.extension([0.03, 0.1, 0.3, 1.0], 0.3, ext) is None
    assert cal.extension([0.03, 0.1, 0.3, 1.0], 1.0, ext) == pytest.approx(3.16)
    assert cal.extension([0.03, 0.1, 0.3, 1.0, 3.16], 3.16, ext) == pytest.approx(10.0)
    assert cal.extension([0.03, 0.1, 0.3, 1.0, 3.16, 10.0], 10.0, ext) is None
    assert cal.extension([0.03, 0.1], 0.03, ext) == pytest.approx(0.01)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_calibration_end_to_end_on_quadratics(tmp_path, schedule):
    ckpt = tmp_path / "optimizer.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=4, preprocess="none"), ckpt, {"task": "quadratic"})
    cal.main(["--config", "quadratic", "--checkpoint", str(ckpt), "--multipliers", "1,0.1", "--instances", "2",
              "--horizon", "6", "--min-horizon", "3", "--workers", "1", "--schedule", schedule,
              "--out", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "calibration.json").read_text())
    assert result["schedule"] == schedule
    assert result["seeds"] == [1_009_000, 1_009_001]
    assert result["command"].startswith("python -m research.tools.calibrate_step --config quadratic")
    assert all(3 <= r["steps"] <= 6 for r in result["runs"])
    tried = {r["multiplier"] for r in result["runs"]}
    assert {1.0, 0.1} <= tried and result["selected"] in tried
    assert len(result["runs"]) == 2 * len(tried)
    assert cal.select({float(m): s for m, s in result["scores"].items()}) == result["selected"]
    md = (tmp_path / "out" / "calibration.md").read_text()
    assert f"**{result['selected']:g}**" in md and "1009001" in md


def test_cosine_learned_optimizer_anneals_the_step_over_the_run_and_matches_the_plain_one_at_step_one():
    from l2l_torch.optim import LearnedOptimizer

    torch.manual_seed(0)
    lopt = LSTMOptimizer(hidden_size=4, preprocess="none")
    w0 = torch.randn(5)
    ws = [w0.clone().requires_grad_(), w0.clone().requires_grad_()]
    plain = LearnedOptimizer([ws[0]], lopt=lopt, lr=0.5)
    cosine = cal.cosine_learned_optimizer([ws[1]], 4, lopt=lopt, lr=0.5)
    lrs = []
    for t in range(4):
        for w, opt in zip(ws, (plain, cosine)):
            opt.zero_grad()
            w.pow(2).sum().backward()
            if opt is cosine:
                lrs.append(opt.param_groups[0]["lr"])
            opt.step()
        if t == 0:  # the first step uses the full lr: the same update
            torch.testing.assert_close(ws[0], ws[1])
    assert lrs == pytest.approx([0.5 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)])
    assert not torch.allclose(ws[0], ws[1])  # later steps are smaller
