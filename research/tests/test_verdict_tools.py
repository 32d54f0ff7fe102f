"""research/tools: the STN and test-accuracy goal checks, the STN ablation table and paired verdicts over evaluations
of different learned optimizers (seconds)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from research.tools import (
    accuracy_ablation,
    accuracy_goal,
    paired_verdicts,
    rounding_spread,
    stn_ablation,
    stn_goal,
)


def _stn_results(learned: str, ssim: dict[str, list[float]], mass: dict[str, float]) -> dict:
    ref = {"lr": 0.01, "per_seed": {f"{s}_ssim": [0.70, 0.72, 0.74] for s in stn_goal.SETS},
           **{f"{s}_mass_ratio": {"mean": 1.0} for s in stn_goal.SETS}}
    lo = {"lr": None, "per_seed": {f"{s}_ssim": v for s, v in ssim.items()},
          **{f"{s}_ssim": {"mean": statistics.fmean(v)} for s, v in ssim.items()},
          **{f"{s}_mass_ratio": {"mean": m} for s, m in mass.items()}}
    return {"seeds": 3, "optimizers": {learned: lo, "adam_tuned": ref}}


def test_the_stn_goal_is_one_standard_error_below_the_reference_and_a_mass_band():
    se = statistics.stdev([0.70, 0.72, 0.74]) / 3 ** 0.5
    res = _stn_results("lstm", {"test8": [0.72] * 3, "test6": [0.72 - se + 1e-4] * 3, "test1": [0.72 - se - 1e-4] * 3},
                       {"test8": 1.0, "test6": 0.79, "test1": 1.11})
    rows = {r["set"]: r for r in stn_goal.goal(res, "lstm")}
    assert rows["test8"]["ssim_bar"] == pytest.approx(0.72 - se)
    assert [rows[s]["ssim_met"] for s in stn_goal.SETS] == [True, True, False]
    assert [rows[s]["mass_met"] for s in stn_goal.SETS] == [True, False, False]  # below 0.8; above 1.1 x 1.0


def test_paired_verdicts_judge_each_files_own_learned_optimizer(tmp_path, capsys):
    a = _stn_results("small_fc", {"test8": [0.75, 0.78, 0.80]}, {})
    b = _stn_results("lstm", {"test8": [0.69, 0.72, 0.735]}, {})
    paths = []
    for name, res in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(res))
        paths.append(str(tmp_path / f"{name}.json"))
    paired_verdicts.main([*paths, "--key", "test8_ssim"])
    out = capsys.readouterr().out
    assert "small_fc / lstm" in out
    lines = [line for line in out.splitlines() if line.startswith(str(tmp_path))]
    assert len(lines) == 2 and float(lines[0].split()[1]) == pytest.approx(-(0.7767 - 0.72), abs=1e-3)
    assert float(lines[1].split()[1]) == pytest.approx(0.72 - 0.715, abs=1e-3)


def test_the_accuracy_goal_is_one_standard_error_below_the_reference(tmp_path, capsys):
    ref = [0.80, 0.82, 0.84]
    se = statistics.stdev(ref) / 3 ** 0.5
    paths = []
    for name, acc in (("above", 0.82 - se + 1e-4), ("below", 0.82 - se - 1e-4)):
        res = {"seeds": 3, "optimizers": {"lstm": {"lr": None, "per_seed": {"test_accuracy": [acc] * 3}},
                                          "adam_tuned": {"lr": 0.01, "per_seed": {"test_accuracy": ref}}}}
        (tmp_path / f"{name}.json").write_text(json.dumps(res))
        paths.append(str(tmp_path / f"{name}.json"))
    accuracy_goal.main(paths)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {tmp_path}")]
    assert [r.rstrip(" |").rsplit("| ", 1)[1] for r in rows] == ["yes", "no"]
    assert f"≥ {100 * (0.82 - se):.2f} %" in rows[0]


def test_the_ablation_row_averages_over_runs_and_counts_runs_at_the_goal(tmp_path):
    # reference SSIM [0.70, 0.72, 0.74] on every set (bar 0.72 - SE), mass 1.0 (cap 1.1)
    dirs = []
    for i, (ssim, mass1) in enumerate([(0.85, 1.05), (0.85, 1.2), (0.70, 1.05)]):
        d = tmp_path / f"run{i}"
        d.mkdir()
        res = _stn_results("lstm", {s: [ssim] * 3 for s in stn_goal.SETS},
                           {"test8": 1.0, "test6": 1.0, "test1": mass1})
        (d / "results.json").write_text(json.dumps(res))
        dirs.append(d)
    line, _ = stn_ablation.row("recipe", dirs, "adam_tuned")
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:2] == ["recipe", "3"]
    assert cells[2] == f"0.800 ± {statistics.stdev([0.85, 0.85, 0.70]) / 3 ** 0.5:.3f}"
    assert cells[-2:] == ["2 / 3", "1 / 3"]  # the third misses the SSIM bar; the second the 1s mass cap
    line, _ = stn_ablation.row("one run", dirs[:1], "adam_tuned")
    assert "0.850 (–)" in line


def _recipe(tmp_path, name: str, ssims: list[float]) -> str:
    """A recipe argument of stn_ablation: one evaluation folder per run, SSIM ``ssims[i]`` on every set."""
    dirs = []
    for i, v in enumerate(ssims):
        d = tmp_path / f"{name}{i}"
        d.mkdir()
        res = _stn_results("lstm", {s: [v] * 3 for s in stn_goal.SETS}, {s: 1.0 + v / 10 for s in stn_goal.SETS})
        res["optimizers"]["adam_tuned"].update({f"{s}_ssim": {"mean": 0.72} for s in stn_goal.SETS})
        (d / "results.json").write_text(json.dumps(res))
        dirs.append(str(d))
    return f"{name}={','.join(dirs)}"


def test_the_stn_ablation_refuses_runs_judged_against_other_references(tmp_path, capsys):
    same, other = _recipe(tmp_path, "same", [0.80, 0.81]), _recipe(tmp_path, "other", [0.80, 0.81])
    moved = Path(other.split("=")[1].split(",")[1]) / "results.json"
    res = json.loads(moved.read_text())  # one run judged against a reference trained again elsewhere, rounded otherwise
    res["optimizers"]["adam_tuned"]["per_seed"][f"{stn_goal.SETS[2]}_ssim"][0] += 1e-6
    moved.write_text(json.dumps(res))
    stn_ablation.main([same, _recipe(tmp_path, "again", [0.79])])  # one reference for all: a table
    assert "| same | 2 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        stn_ablation.main([same, other])
    assert f"{moved.parent} (other) was judged against other adam_tuned runs" in capsys.readouterr().err
    del res["optimizers"]["adam_tuned"]  # a folder without the reference: the same one-line error, no traceback
    moved.write_text(json.dumps(res))
    with pytest.raises(SystemExit):
        stn_ablation.main([same, other])
    assert f"{moved.parent}: no 'adam_tuned' in its results.json" in capsys.readouterr().err


def _comparisons(out: str, first: str) -> dict[tuple[str, str], list[str]]:
    below = out.split(f"Against the first recipe ({first})", 1)[1]
    return {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line.strip("|").split("|")[2:]
            for line in below.splitlines() if line.startswith("| ") and "---" not in line
            and not line.startswith("| recipe |")}


def test_recipes_against_the_first_are_welch_tests_holm_corrected(tmp_path, capsys):
    stn_ablation.main([_recipe(tmp_path, "base", [0.80, 0.81, 0.82]), _recipe(tmp_path, "same", [0.805, 0.81, 0.815]),
                       _recipe(tmp_path, "lower", [0.70, 0.71, 0.72]), "--versus-first"])
    out = capsys.readouterr().out
    assert out.count("| same | 3 |") == 1  # the ablation table's row, then the comparisons
    rows = _comparisons(out, "base")
    assert len(rows) == 12  # two recipes x six figures
    assert float(rows[("lower", "SSIM 8s")][0]) == pytest.approx(-0.10)
    assert rows[("lower", "SSIM 8s")][-1].strip() == "worse" and rows[("same", "SSIM 1s")][-1].strip() == "level"
    assert rows[("lower", "mass ratio 6s")][-1].strip() == "differs"
    p = [float(rows[("lower", f)][1]) for f in ("SSIM 8s", "SSIM 6s", "SSIM 1s")]
    p_holm = [float(rows[("lower", f)][2]) for f in ("SSIM 8s", "SSIM 6s", "SSIM 1s")]
    assert all(h >= q for h, q in zip(p_holm, p)) and max(p_holm) < 0.05


def test_checkpoints_of_the_same_runs_are_compared_by_a_paired_test(tmp_path, capsys):
    # each run's other checkpoint is 0.01 lower, give or take 0.001: the spread between runs (0.05) hides it from
    # Welch's test, the pairing by run does not
    base, other = [0.80, 0.85, 0.90, 0.82], [0.789, 0.841, 0.889, 0.811]
    args = [_recipe(tmp_path, "validated", base), _recipe(tmp_path, "last", other), "--versus-first"]
    stn_ablation.main(args)
    welch = _comparisons(capsys.readouterr().out, "validated")
    stn_ablation.main([*args, "--paired"])
    out = capsys.readouterr().out
    paired = _comparisons(out, "validated")
    assert "the paired t-test over the runs" in out
    assert welch[("last", "SSIM 8s")][-1].strip() == "level"
    assert paired[("last", "SSIM 8s")][-1].strip() == "worse"
    assert float(paired[("last", "SSIM 8s")][0]) == pytest.approx(-0.01)
    with pytest.raises(SystemExit):  # three runs cannot be paired with four
        stn_ablation.main([args[0], _recipe(tmp_path, "fewer", other[:3]), "--versus-first", "--paired"])
    with pytest.raises(SystemExit):  # --paired alone compares nothing
        stn_ablation.main(args[:2] + ["--paired"])


REF_ACC = [0.80, 0.81, 0.82, 0.81, 0.80]


def _accuracy_run(tmp_path, name: str, acc: list[float], loss: float, ref: list[float] = REF_ACC) -> str:
    """One evaluation folder of a classification task: the learned LSTM's per-seed test accuracies ``acc`` and
    final training losses ``loss`` on every seed, against the reference accuracies ``ref`` (loss 0.5)."""
    d = tmp_path / name
    d.mkdir()
    res = {"seeds": len(acc), "optimizers": {
        "lstm": {"lr": None, "per_seed": {"test_accuracy": acc, "train_loss": [loss] * len(acc)}},
        "adam_tuned": {"lr": 0.01, "per_seed": {"test_accuracy": ref, "train_loss": [0.5] * len(ref)}}}}
    (d / "results.json").write_text(json.dumps(res))
    return str(d)


def test_the_accuracy_ablation_counts_runs_at_the_goal_and_better_runs_holm_corrected(tmp_path, capsys):
    high = [x + 0.02 for x in REF_ACC]                 # 2 points above the reference on every seed, some spread
    high[0] += 0.001
    a = [_accuracy_run(tmp_path, "a0", high, 0.40), _accuracy_run(tmp_path, "a1", [x + 0.001 for x in REF_ACC], 0.48)]
    b = [_accuracy_run(tmp_path, "b0", [0.70] * 5, 0.60), _accuracy_run(tmp_path, "b1", [0.71] * 5, 0.60)]
    for d, step in zip(b, (1500, 250)):  # the meta-steps validation kept, as evaluate.py records them
        res = json.loads((tmp_path / d / "results.json").read_text())
        (tmp_path / d / "results.json").write_text(json.dumps(res | {"checkpoint_meta": {"global_step": step}}))
    accuracy_ablation.main([f"two runs={','.join(a)}", f"lower={','.join(b)}", "--versus-first"])
    out = capsys.readouterr().out
    table, comparisons = out.split("Against the first recipe (two runs)")
    rows = {c[0]: c for c in ([x.strip() for x in line.strip("|").split("|")] for line in table.splitlines()
                              if line.startswith("| ") and "---" not in line)}
    se = statistics.stdev(REF_ACC) / 5 ** 0.5
    assert f"≥ {100 * (0.808 - se):.2f} %" in out.splitlines()[0]
    assert rows["two runs"][1:] == ["2", "–", f"{100 * statistics.fmean([statistics.fmean(high), 0.809]):.2f} ± "
                                         f"{100 * statistics.stdev([statistics.fmean(high), 0.809]) / 2 ** 0.5:.2f}",
                                    "0.440 ± 0.040", "2 / 2", "1 / 2"]  # the second run is 0.1 points above: level
    assert rows["lower"][1:] == ["2", "250 – 1,500", "70.50 ± 0.50", "0.600 ± 0.000", "0 / 2", "0 / 2"]
    assert rows["adam_tuned (the reference, 5 held-out instances)"][3] == f"80.80 ± {100 * se:.2f}"
    lines = [line.split("|") for line in comparisons.splitlines() if line.startswith("| lower |")]
    assert [c[2].strip() for c in lines] == ["test accuracy", "final training loss"]
    assert float(lines[0][3]) == pytest.approx(0.705 - statistics.fmean([statistics.fmean(high), 0.809]), abs=1e-3)


def test_the_accuracy_ablation_refuses_runs_judged_against_other_references(tmp_path):
    a = _accuracy_run(tmp_path, "a", REF_ACC, 0.4)
    b = _accuracy_run(tmp_path, "b", REF_ACC, 0.4, ref=[0.7] * 5)
    with pytest.raises(SystemExit):
        accuracy_ablation.main([f"x={a}", f"y={b}"])


def test_the_rounding_spread_is_the_largest_per_seed_difference_of_the_learned_row(tmp_path, capsys):
    a = _accuracy_run(tmp_path, "threads1", [0.80, 0.81, 0.82], 0.5)
    b = _accuracy_run(tmp_path, "threads2", [0.80, 0.79, 0.825], 0.5)
    res = json.loads((tmp_path / "threads2" / "results.json").read_text())
    res["optimizers"]["lstm"]["per_seed"]["train_loss"] = [0.5, 0.55, 0.48]
    (tmp_path / "threads2" / "results.json").write_text(json.dumps(res))
    rounding_spread.main([f"lstm={a}/results.json,{b}/results.json"])
    row = [c.strip() for c in capsys.readouterr().out.splitlines()[-1].strip("|").split("|")]
    assert row == ["lstm", "81.00 / 80.50 %", "2.00 points", "0.5000 / 0.5100", "0.0500 (10.0 %)"]


def test_the_rounding_spread_refuses_evaluations_of_other_instances(tmp_path):
    a = _accuracy_run(tmp_path, "a", [0.8] * 3, 0.5)
    b = _accuracy_run(tmp_path, "b", [0.8] * 4, 0.5)
    with pytest.raises(SystemExit):
        rounding_spread.main([f"x={a}/results.json,{b}/results.json"])
