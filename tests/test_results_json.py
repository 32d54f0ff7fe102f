"""``results.json``: long per-step curves are thinned (every k-th step, ``curve_every``), per-seed finals kept."""

from __future__ import annotations

import json

from l2l_torch.plots import CURVE_POINTS, curve_steps, plot_curves, results_json, thin_curves


def _summary(steps: int) -> dict:
    curve = [1.0 / (t + 1) for t in range(steps)]
    return {"lr": 0.01, "per_seed": [{"train_loss": 0.123456789}], "train_loss": {"mean": 0.123456789, "std": 0.0},
            "curve": curve, "curve_std": [0.1] * steps, "curve_q25": curve, "curve_q75": curve}


def test_long_curves_keep_every_kth_step_and_the_finals_exactly():
    steps = 2110
    got = json.loads(results_json({"task": "t", "optimizers": {"lstm": _summary(steps), "adam": _summary(100)}}))
    long, short = got["optimizers"]["lstm"], got["optimizers"]["adam"]
    every = steps // CURVE_POINTS
    assert long["curve_every"] == every > 1
    for key in ("curve", "curve_std", "curve_q25", "curve_q75"):
        assert len(long[key]) == len(range(0, steps, every))
    assert list(curve_steps(long))[:3] == [0, every, 2 * every]
    assert long["curve"][3] == float(f"{1.0 / (3 * every + 1):.4g}")  # step 3k, to 4 digits
    assert long["per_seed"][0]["train_loss"] == 0.123456789 and long["train_loss"]["mean"] == 0.123456789
    assert "curve_every" not in short and len(short["curve"]) == 100 and list(curve_steps(short)) == list(range(100))


def test_thinning_is_idempotent_so_reused_baselines_are_not_thinned_twice():
    once = thin_curves(_summary(1000))
    assert thin_curves(once) is once
    assert json.loads(results_json({"optimizers": {"adam": once}}))["optimizers"]["adam"]["curve_every"] == 5


def test_plot_draws_a_thinned_curve_at_its_steps(tmp_path):
    res = {"task": "t", "seeds": 1, "optimizers": {"lstm": thin_curves(_summary(2000)), "adam": _summary(2000)}}
    plot_curves(res, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert curve_steps(res["optimizers"]["lstm"])[-1] == curve_steps(res["optimizers"]["adam"])[-1] - 9


def test_written_without_spaces_one_key_a_line_and_read_back_exactly():
    res = {"task": "t", "command": "python evaluate.py --set 'hidden=[20, 20]' --task t", "per_seed": [0.1, 0.30000000000000004],
           "optimizers": {"adam": _summary(3)}}
    text = results_json(res)
    assert '"task":"t",\n' in text and '"per_seed":[0.1,0.30000000000000004],\n' in text
    assert json.loads(text)["command"] == res["command"]  # a list inside a string stays as it was
    assert json.loads(text)["per_seed"] == res["per_seed"] and json.loads(text)["optimizers"]["adam"]["curve"] == [
        1.0, 0.5, float(f"{1 / 3:.4g}")]
