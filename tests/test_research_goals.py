"""The STN goal and the STN ablation table of ``research/tools`` on small made-up ``evaluate.py`` outputs."""

from __future__ import annotations

import json
import statistics

import pytest

from research.tools import stn_ablation, stn_goal


def _summary(ssim: dict[str, list[float]], mass: dict[str, float]) -> dict:
    out = {"per_seed": {f"{s}_ssim": xs for s, xs in ssim.items()}}
    for s, xs in ssim.items():
        out[f"{s}_ssim"] = {"mean": statistics.fmean(xs)}
        out[f"{s}_mass_ratio"] = {"mean": mass[s]}
    return out


ADAM = _summary({"test8": [0.80, 0.82], "test6": [0.70, 0.72], "test1": [0.60, 0.62]},
                {"test8": 1.0, "test6": 1.0, "test1": 1.4})


def _results(ssim: float, mass1: float) -> dict:
    lo = _summary({s: [ssim, ssim] for s in stn_goal.SETS}, {"test8": 1.0, "test6": 1.0, "test1": mass1})
    return {"seeds": 2, "optimizers": {"lstm": lo, "adam_tuned": ADAM}}


def test_goal_bounds() -> None:
    rows = stn_goal.goal(_results(0.705, 1.55), "lstm")
    by_set = {r["set"]: r for r in rows}
    # SE of [0.80, 0.82] is 0.01: the bar is 0.80; of [0.60, 0.62]: 0.60
    assert by_set["test8"]["ssim_bar"] == pytest.approx(0.80)
    assert not by_set["test8"]["ssim_met"] and by_set["test6"]["ssim_met"] and by_set["test1"]["ssim_met"]
    assert by_set["test1"]["mass_cap"] == pytest.approx(1.54)
    assert not by_set["test1"]["mass_met"] and by_set["test8"]["mass_met"]


def test_ablation_row_counts_runs_at_the_goal(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(stn_ablation, "learned_name", lambda res: "lstm")
    dirs = []
    for i, (ssim, mass1) in enumerate([(0.85, 1.50), (0.85, 1.60), (0.75, 1.50)]):
        d = tmp_path / f"run{i}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps(_results(ssim, mass1)))
        dirs.append(d)
    line, _ = stn_ablation.row("recipe", dirs, "adam_tuned")
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:2] == ["recipe", "3"]
    assert cells[2] == f"0.817 ± {statistics.stdev([0.85, 0.85, 0.75]) / 3 ** 0.5:.3f}"
    assert cells[-2:] == ["2 / 3", "1 / 3"]  # the third misses SSIM on 8s; the second the 1s mass cap
    line, _ = stn_ablation.row("one run", dirs[:1], "adam_tuned")
    assert "0.850 (–)" in line
