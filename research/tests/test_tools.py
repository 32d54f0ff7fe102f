"""The research tools: the report of every evaluation (quick mode on a tiny checkpoint), the generalisation suite,
``compare`` and the analysis scripts."""

import json
import math

import pytest
import torch

from l2l_torch.checkpoint import save_learned_optimizer
from l2l_torch.cli import UserError
from l2l_torch.learned_optimizers import LSTMOptimizer
from research.tools import generalize
from research.tools import research_report as report


@pytest.fixture()
def tiny_ckpt(tmp_path):
    path = tmp_path / "optimizer.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=4, preprocess="none"), path, {"task": "quadratic"})
    return path


def test_generalization_suite_end_to_end(tmp_path, tiny_ckpt):
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""
base_task: quadratic
checkpoint: {tiny_ckpt}
steps: 4
seeds: 2
tune_seeds: 1
rows:
  - {{name: dim_5, what: dimension, from: 10, to: 5, set: {{dim: 5, num: 1}}}}
  - {{name: longer, what: horizon, from: 4, to: 6, steps: 6}}
""")
    out = tmp_path / "gen"
    generalize.main([str(suite), "--out", str(out)])
    a = json.loads((out / "dim_5" / "results.json").read_text())
    b = json.loads((out / "longer" / "results.json").read_text())
    assert a["overrides"] == {"dim": 5, "num": 1} and a["steps"] == 4
    assert a["generalization"]["to"] == 5 and b["steps"] == 6
    assert set(a["optimizers"]) >= {"lstm", "adam", "adam_tuned"}


def test_suite_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_task: quadratic\nrows: []\n")
    with pytest.raises(UserError, match="missing key 'checkpoint'"):
        generalize.load_suite(bad)
    with pytest.raises(UserError, match="not found"):
        generalize.load_suite(tmp_path / "nope.yaml")


def test_report_quick_and_markdown(tmp_path, tiny_ckpt, capsys):
    import evaluate

    results = tmp_path / "results"
    evaluate.main(["--task", "quadratic", "--checkpoint", str(tiny_ckpt), "--out", str(results / "quadratic"),
                   "--steps", "4", "--seeds", "2", "--tune-seeds", "1"])
    report.main(["--results", str(results), "--quick"])
    assert "| [quadratic]" in capsys.readouterr().out
    report.main(["--results", str(results), "--no-rerun"])
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.startswith("# Results") and "| [quadratic](experiments/quadratic/)" in text
    assert "`python evaluate.py --task quadratic" in text  # no COMMAND.md: the section carries the command
    (results / "quadratic" / "COMMAND.md").write_text("the exact commands\n")
    report.main(["--results", str(results), "--no-rerun"])
    text = (tmp_path / "RESULTS.md").read_text()
    assert "`python evaluate.py --task quadratic" not in text
    assert "[COMMAND.md](experiments/quadratic/COMMAND.md)" in text


def test_compare_and_judge_paired_unpaired_and_special_cases():
    a = {"final_loss": {"mean": 1.0, "std": 0.1}, "per_seed": {"train_loss": [1.0, 1.1, 0.9, 1.0]}}
    b = {"final_loss": {"mean": 2.0, "std": 0.1}, "per_seed": {"train_loss": [2.0, 2.1, 1.9, 2.05]}}
    tests = [report.compare(a, b, 4), report.compare(b, a, 4), report.compare(a, a, 4),
             report.compare({"final_loss": {"mean": None}}, b, 4), report.compare(a, {"final_loss": {"mean": None}}, 4),
             report.compare({"final_loss": {"mean": 1.0, "std": 0.1}, "per_seed": {"train_loss": [1.0]}},
                            {"final_loss": {"mean": 2.0, "std": 0.1}, "per_seed": {"train_loss": [2.0]}}, 1)]
    assert all(t["paired"] for t in tests)
    assert [v for v, _ in report.judge(tests)] == ["better", "worse", "level", "diverged", "better (Adam diverged)",
                                                   "level (too few seeds)"]
    # old results.json without per-seed values: Welch's test on mean and population std over n seeds
    from scipy import stats as sps

    u = report.compare({"final_loss": {"mean": 1.0, "std": 0.1}}, {"final_loss": {"mean": 1.2, "std": 0.1}}, 5)
    s = 0.1 * math.sqrt(5 / 4)
    assert not u["paired"] and u["p"] == pytest.approx(sps.ttest_ind_from_stats(1.0, s, 5, 1.2, s, 5, False).pvalue)
    rows, unpaired = report.summary_rows({"x": {"steps": 1, "seeds": 5, "optimizers": {
        "lopt": {"lr": None, "final_loss": {"mean": 1.0, "std": 0.1}},
        "adam_tuned": {"lr": 0.01, "final_loss": {"mean": 1.2, "std": 0.1}}}}})
    assert unpaired and " †" in rows[0]


def test_holm_corrected_t_test_overrules_the_old_two_standard_error_rule():
    """Hand-made paired values: three rows of a table, three seeds each. The old rule (paired mean beyond two
    standard errors, no correction) called every row "better"; the t distribution with 2 degrees of freedom and
    Holm's correction across the three rows make them "level"."""
    adam = [0.50, 0.52, 0.51]
    rows = [[0.40, 0.40, 0.44], [0.41, 0.40, 0.45], [0.41, 0.47, 0.42]]
    for learned in rows:  # the old rule, by hand: every row "better"
        d = [x - y for x, y in zip(learned, adam)]
        md = sum(d) / 3
        se = math.sqrt(sum((x - md) ** 2 for x in d) / 2 / 3)
        assert md < -2 * se
    opt = lambda v, lr: {"lr": lr, "per_seed": {"train_loss": v},  # noqa: E731
                         "final_loss": {"mean": sum(v) / len(v), "std": 0.0}}
    tests = [report.compare(opt(r, None), opt(adam, 0.01), 3) for r in rows]
    assert all(t["p"] < 0.05 for t in tests)  # each row would pass alone, uncorrected
    judged = report.judge(tests)
    assert [v for v, _ in judged] == ["level"] * 3
    assert all(p >= 0.05 for _, p in judged)


def test_update_recorder_counts_every_coordinate_and_step():
    from l2l_torch.evaluation import UpdateRecorder, baseline_factory, train_optimizee
    from l2l_torch.plots import update_summary
    from l2l_torch.tasks.quadratic import QuadraticFamily

    task = QuadraticFamily(dim=4, num=2).sample(0)
    rec = UpdateRecorder()
    train_optimizee(task, baseline_factory("adam", 0.01), 5, 0, record_updates=rec)
    u = rec.to_dict()
    assert sum(u["counts"]) + u["zeros"] == 5 * 8 and len(u["mean_abs"]) == len(u["median_abs"]) == 5
    # Adam's first step moves every coordinate by lr (|m/sqrt(v)| = 1): median ~ 0.01 at bin resolution
    assert abs(u["median_abs"][0] - 0.01) < 1e-4
    st = update_summary({"optimizers": {"adam": u}})["adam"]
    assert 10 ** -2.3 < st["p50"] < 10 ** -1.7 and st["zero_fraction"] == 0


def test_update_histograms_are_written_by_their_range_and_read_in_both_forms():
    from l2l_torch.plots import histogram_edges, update_summary, updates_json
    from l2l_torch.training import UpdateRecorder

    rec = UpdateRecorder()
    rec.before({"w": torch.zeros(3)})
    rec.after({"w": torch.tensor([2e-3, 2e-2, 0.0])})
    u = rec.to_dict()
    edges = histogram_edges(u)
    assert len(edges) == len(u["counts"]) + 1 == 111 and edges[0] == -10.0 and edges[-1] == 1.0
    assert edges[73] == -2.7 and u["counts"][73] == u["counts"][83] == 1 and u["zeros"] == 1  # log10(2e-3) = -2.699
    # a file of the older form, listing its edges: read alike, and rewritten by its range when that gives them back
    old = {k: v for k, v in u.items() if k != "log10_range"} | {"edges": edges}
    assert histogram_edges(old) == edges
    assert update_summary({"optimizers": {"a": old}}) == update_summary({"optimizers": {"a": u}})
    assert json.loads(updates_json({"seed": 0, "optimizers": {"a": old}}))["optimizers"]["a"] == u
    odd = old | {"edges": [*edges[:50], -4.95, *edges[51:]]}  # not an even split of its range: kept as it is
    assert json.loads(updates_json({"optimizers": {"a": odd}}))["optimizers"]["a"] == odd


def test_epoch_and_update_plots_reach_the_report(tmp_path, tiny_ckpt):
    import evaluate
    from l2l_torch import plots

    results = tmp_path / "results"
    out = results / "quadratic"
    evaluate.main(["--task", "quadratic", "--checkpoint", str(tiny_ckpt), "--out", str(out), "--steps", "4",
                   "--epoch-steps", "2", "--seeds", "2", "--tune-seeds", "1", "--baselines", "adam"])
    res = json.loads((out / "results.json").read_text())
    lstm = res["optimizers"]["lstm"]
    assert [e["step"] for e in lstm["epochs"]] == [2, 4] and set(lstm["epochs_std"][0]) == {"val_loss"}
    assert (out / "epochs.png").stat().st_size > 0 and (out / "updates.png").stat().st_size > 0
    upd = json.loads((out / "updates.json").read_text())
    assert set(upd["optimizers"]) == {"lstm", "adam_tuned"} and upd["optimizers"]["adam_tuned"]["lr"] is not None
    assert "Per-epoch val loss" in (out / "table.md").read_text()
    report.main(["--results", str(results), "--no-rerun"])
    text = (tmp_path / "RESULTS.md").read_text()
    assert "(experiments/quadratic/epochs.png)" in text and "(experiments/quadratic/updates.png)" in text
    assert "epoch 2 (step 4)" not in text and "[table.md](experiments/quadratic/table.md)" in text
    (out / "table.md").unlink()  # without the folder's table the section carries it, per-epoch rows included
    report.main(["--results", str(results), "--no-rerun"])
    text = (tmp_path / "RESULTS.md").read_text()
    assert "epoch 2 (step 4)" in text and "| lstm | learned |" in text
    assert "median |update|" in text
    # the stand-alone histogram of a checkpoint (tuned Adam's lr from the folder's results.json)
    other = tmp_path / "other"
    plots.main(["updates", "--task", "quadratic", "--checkpoint", str(tiny_ckpt), "--out", str(other), "--steps", "3"])
    assert json.loads((other / "updates.json").read_text())["optimizers"]["adam"]["lr"] == 1e-3
    plots.main(["updates", "--task", "quadratic", "--checkpoint", str(tiny_ckpt), "--out", str(out)])
    assert json.loads((out / "updates.json").read_text())["steps"] == 4


def test_epoch_table_and_plot_with_accuracy(tmp_path):
    from l2l_torch.plots import epoch_table, plot_epochs

    ep = lambda a: [{"step": 10, "val_loss": 1.0, "val_accuracy": a}, {"step": 20, "val_loss": 0.5, "val_accuracy": a + 0.1}]  # noqa: E731
    sd = [{"val_loss": 0.1, "val_accuracy": 0.01}] * 2
    res = {"task": "t", "seeds": 2, "optimizers": {
        "lstm": {"lr": None, "epochs": ep(0.7), "epochs_std": sd},
        "adam": {"lr": 1e-3, "epochs": ep(0.6), "epochs_std": sd},
        "adam_tuned": {"lr": 1e-2, "epochs": ep(0.65)},  # older results: no std
        "sgd": {"lr": 1e-3, "diverged": 2}}}
    table = epoch_table(res)
    assert "val accuracy (%)" in table and "| lstm | 70.0 ± 1.0 | 80.0 ± 1.0 |" in table
    assert "| adam_tuned | 65.0 ± 0.0 | 75.0 ± 0.0 |" in table and "sgd" not in table
    assert plot_epochs(res, tmp_path / "e.png") and (tmp_path / "e.png").is_file()
    assert epoch_table({"optimizers": {"a": {"lr": None}}}) is None
    assert not plot_epochs({"task": "t", "seeds": 1, "optimizers": {"a": {"lr": None}}}, tmp_path / "n.png")


def test_quick_rerun_drops_reuse_of_baselines():
    from research.tools.research_report import _replace

    args = ["--task", "t", "--seeds", "5", "--reuse-baselines", "research/experiments/x", "--out", "o"]
    assert _replace(args, {"--seeds": "2", "--reuse-baselines": None}) == ["--task", "t", "--out", "o", "--seeds", "2"]


def _run(*args: str):
    """``python ARGS`` in the repository root, output captured."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, *args], cwd=report.REPO, capture_output=True, text=True)


def test_compare_checkpoints_on_committed_seeds(tmp_path):
    """python -m research.tools.compare: other checkpoints on an evaluation's exact seeds, paired with its tuned Adam."""
    ckpt = tmp_path / "optimizer.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=4, preprocess="none"), ckpt, {"task": "quadratic"})
    ev = tmp_path / "eval"
    r = _run("evaluate.py", "--task", "quadratic", "--checkpoint", str(ckpt), "--out", str(ev), "--steps", "3",
             "--seeds", "2", "--tune-seeds", "1", "--baselines", "adam", "--no-updates", "--lr-grid", "0.1,0.3")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "cmp"
    r = _run("-m", "research.tools.compare", str(out), f"again={ckpt}", "--", str(ev))
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.with_suffix(".json").read_text())
    res = json.loads((ev / "results.json").read_text())
    assert rows[0]["again"] == res["optimizers"]["lstm"]["per_seed"]["train_loss"]  # same checkpoint, same seeds
    assert "again" in out.with_suffix(".md").read_text()
    r = _run("-m", "research.tools.compare", str(out), f"lstm={ckpt}", "--", str(ev))
    assert r.returncode == 2 and "clash" in r.stderr
    # the checkpoints run on the device the evaluation recorded; one made on CUDA still compares on a CPU machine
    if not torch.cuda.is_available():
        (ev / "results.json").write_text(json.dumps({**res, "device": "cuda"}))
        r = _run("-m", "research.tools.compare", str(out), f"again={ckpt}", "--", str(ev))
        assert r.returncode == 0 and "no CUDA device" in r.stderr, r.stderr
        assert json.loads(out.with_suffix(".json").read_text())[0]["again"] == rows[0]["again"]


def test_compare_follows_the_evaluations_averaging(tmp_path):
    """An evaluation made with --average: compare evaluates the checkpoints at the same moving average."""
    ckpt = tmp_path / "optimizer.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=4, preprocess="none"), ckpt, {"task": "quadratic"})
    ev, out = tmp_path / "eval", tmp_path / "cmp"
    r = _run("evaluate.py", "--task", "quadratic", "--checkpoint", str(ckpt), "--out", str(ev), "--steps", "4",
             "--seeds", "2", "--no-tune", "--baselines", "adam", "--no-updates", "--average", "0.5")
    assert r.returncode == 0, r.stderr
    res = json.loads((ev / "results.json").read_text())
    res["optimizers"]["adam_tuned"] = res["optimizers"]["adam"]  # compare needs a tuned-Adam column
    (ev / "results.json").write_text(json.dumps(res))
    r = _run("-m", "research.tools.compare", str(out), f"again={ckpt}", "--", str(ev))
    assert r.returncode == 0, r.stderr
    assert json.loads(out.with_suffix(".json").read_text())[0]["again"] == \
        res["optimizers"]["lstm"]["per_seed"]["train_loss"]


def test_recorded_commands_survive_the_shell():
    """A rerun splits the recorded command with shlex: --set values must stay one word."""
    import shlex

    args = generalize.row_args({"base_task": "t", "checkpoint": "c"}, {"name": "r", "set": {"hidden": [20, 20]}},
                               report.REPO, quick=False)
    assert "hidden=[20,20]" in args
    cmd = "python evaluate.py " + shlex.join(["--set", "hidden=[20, 20]"])
    assert shlex.split(cmd)[2:] == ["--set", "hidden=[20, 20]"]


def test_study_table_lists_other_learned_optimizers_on_the_same_setting():
    def res(acc: float, seeds: int = 10) -> dict:
        opt = {"test_accuracy": {"mean": acc, "std": 0.004}}
        return {"task": "fmnist_t1", "steps": 100, "seeds": seeds, "overrides": {},
                "optimizers": {"lstm": {"lr": None, **opt}, "adam": {"lr": 1e-3, **opt},
                               "adam_tuned": {"lr": 1e-2, **opt}}}

    table = report.study_table({"fmnist_t1": res(0.803), "family/fmnist_t1_100": res(0.820),
                         "family/fmnist_t1_5seeds": res(0.9, seeds=5)})
    assert "| fmnist_t1 | study, default lrs | 77 | 78 | 77 | 59 | 32 |" in table
    assert "| | ours, learned: [family/fmnist_t1_100](experiments/family/fmnist_t1_100/) | 82.0 ± 0.4 |" in table
    assert "fmnist_t1_5seeds" not in table  # other seeds: not the same comparison


def _results_json(path, learned: dict, adam: dict) -> None:
    """A minimal evaluate.py results.json: per-seed finals of one learned optimizer and tuned Adam."""
    def opt(per_seed, lr):
        return {"lr": lr, "per_seed": per_seed,
                **{k: {"mean": sum(v) / len(v), "std": 0.0} for k, v in per_seed.items()}}
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"optimizers": {"small_fc": opt(learned, None),
                                                                  "adam_tuned": opt(adam, 0.01)}}))


def test_paired_verdicts_flip_higher_is_better_metrics_and_slice_seeds(tmp_path, capsys):
    import research.tools.paired_verdicts as pv

    # SSIM: the learned optimizer is higher on seeds 0-1 and lower on seeds 2-3
    _results_json(tmp_path / "e", {"train_loss": [1.0, 1.0, 1.0, 1.0], "test8_ssim": [0.9, 0.91, 0.5, 0.51]},
                  {"train_loss": [2.0, 2.1, 2.0, 2.1], "test8_ssim": [0.5, 0.5, 0.9, 0.9]})
    f = str(tmp_path / "e" / "results.json")
    pv.main([f, "--key", "test8_ssim", "--seeds", "0:2"])
    pv.main([f, "--key", "test8_ssim", "--seeds", "2:"])
    pv.main([f])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(f)]
    assert [ln.split()[-1] for ln in lines] == ["better", "worse", "better"]
    assert float(lines[0].split()[1]) == pytest.approx(-0.405)  # adam - learned for a higher-is-better key


def test_paired_verdicts_against_another_optimizer(tmp_path, capsys):
    import research.tools.paired_verdicts as pv

    _results_json(tmp_path / "e", {"train_loss": [1.0, 1.1, 1.0]}, {"train_loss": [2.0, 2.1, 2.2]})
    f = tmp_path / "e" / "results.json"
    d = json.loads(f.read_text())
    d["optimizers"]["adam_warmup"] = {**d["optimizers"]["small_fc"],
                                      "per_seed": {"train_loss": [0.5, 0.6, 0.55]}}
    f.write_text(json.dumps(d))
    pv.main([str(f), "small_fc"])
    pv.main([str(f), "small_fc", "--against", "adam_warmup"])
    out = capsys.readouterr().out.splitlines()
    assert "small_fc - adam_warmup" in out[2]
    assert [ln.split()[-1] for ln in out if ln.startswith(str(f))] == ["better", "worse"]


def test_find_results_skips_evaluations_without_tuned_adam(tmp_path):
    _results_json(tmp_path / "a", {"train_loss": [1.0, 1.1]}, {"train_loss": [2.0, 2.1]})
    _results_json(tmp_path / "b" / "warm", {"train_loss": [1.0, 1.1]}, {"train_loss": [2.0, 2.1]})
    f = tmp_path / "b" / "warm" / "results.json"
    d = json.loads(f.read_text())
    d["optimizers"]["adam_warmup_tuned"] = d["optimizers"].pop("adam_tuned")
    f.write_text(json.dumps(d))
    assert list(report.find_results(tmp_path)) == ["a"]


def test_family_rows_table_reads_rows_from_per_row_evaluations(tmp_path, capsys):
    import research.tools.family_rows_table as t8

    for a in ("sigmoid", "tanh", "relu"):
        for s in (100, 200):
            _results_json(tmp_path / f"fmnist_t1_{a}_{s}", {"train_loss": [0.4, 0.41, 0.4, 0.39, 0.41]},
                          {"train_loss": [0.5, 0.5, 0.52, 0.5, 0.51]})
    _results_json(tmp_path / "fmnist_t1_sigmoid_2000", {"train_loss": [0.6, 0.6, 0.61]}, {"train_loss": [0.3, 0.31, 0.3]})
    t8.main(["--long", "2000", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert "sigmoid 2,000" in out[0]
    assert out[2].split(" | ")[1:7] == ["0.506"] * 6  # tuned Adam, MLP rows
    cells = out[3].split(" | ")[1:]
    assert cells[:6] == ["**0.402**"] * 6 and cells[6] == "0.603 (w)" and cells[7] == "–"
    assert "Holm-corrected across the 7 tested cells" in out[-1]


def test_schedule_control_adam_schedule_and_output_layer_rate():
    from research.tools.schedule_control import ScheduledAdam

    def run(**cfg):
        torch.manual_seed(0)
        ps = [torch.randn(3, 2, requires_grad=True) for _ in range(4)]  # the last two: the "output layer"
        opt = ScheduledAdam([{"params": ps, "kind": "dense"}], steps=4, **cfg)
        lrs = []
        for _ in range(4):
            sum((p ** 2).sum() for p in ps).backward()
            opt.step()
            opt.zero_grad()
            lrs.append([g["lr"] for g in opt.param_groups])
        return ps, lrs

    # no warm-up, no decay, head_mult 1: exactly torch.optim.Adam
    ps, _ = run(lr=0.1, betas=(0.8, 0.99), head_mult=1.0, warmup=0, cosine=False)
    torch.manual_seed(0)
    ref = [torch.randn(3, 2, requires_grad=True) for _ in range(4)]
    adam = torch.optim.Adam(ref, lr=0.1, betas=(0.8, 0.99))
    for _ in range(4):
        sum((p ** 2).sum() for p in ref).backward()
        adam.step()
        adam.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(ps, ref))
    # warm-up over 2 steps then cosine to 0 at step 5 of 4 (t - 1 = steps); the output layer at 10x
    _, lrs = run(lr=0.1, betas=(0.9, 0.999), head_mult=10.0, warmup=2, cosine=True)
    cos = [0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]
    expect = [min(1.0, (t + 1) / 2) * cos[t] * 0.1 for t in range(4)]
    assert [lr[0] for lr in lrs] == pytest.approx(expect)
    assert [lr[1] for lr in lrs] == pytest.approx([10 * e for e in expect])


def test_tensor_update_rms_reports_adams_first_step_exactly(capsys):
    """Adam's first update is lr * sign(g) in every coordinate, so each tensor's update RMS at step 1 is the lr."""
    from research.tools.tensor_update_rms import main

    main(["--task", "quadratic", "--steps", "3", "--at", "1", "3", "--adam-lr", "0.05"])
    out = capsys.readouterr().out.splitlines()
    step1 = next(line for line in out if line.strip().startswith("step    1"))
    values = step1.split()[3::2]  # "step 1 name value name value ..."
    assert values and all(v == "5.00e-02" for v in values)
    assert any(line.strip().startswith("step    3") for line in out)


def test_affnist_frontier_judges_both_goals_and_counts_reused_runs_once(tmp_path):
    import research.tools.affnist_frontier as fr

    def opt(ssim, mass):  # the same SSIM / mass ratio on the 8s, 6s and 1s
        return {"lr": 0.01, "diverged": 0, **{f"test{d}_{m}": {"mean": v} for d in fr.DIGITS
                                              for m, v in (("ssim", ssim), ("mass_ratio", mass))}}

    res = {"task": "affnist", "steps": 200, "seeds": 5, "overrides": {},
           "optimizers": {"adam_tuned": opt(0.80, 1.4), "small_fc": opt(0.79, 1.2), "lstm": opt(0.77, 1.0)}}
    for name in ("a", "b"):  # b reuses a's baselines: its adam_tuned is the same run
        (tmp_path / name).mkdir()
        r = dict(res, optimizers=dict(res["optimizers"], small_fc=opt(0.79, 1.2 if name == "a" else 1.3)))
        (tmp_path / name / "results.json").write_text(json.dumps(r))
    (tmp_path / "c").mkdir()  # other steps: not an STN-brief evaluation
    (tmp_path / "c" / "results.json").write_text(json.dumps(dict(res, steps=100)))
    pts = fr.committed_points(tmp_path, 200)
    assert sorted((p["optimizer"], p["mass1"]) for p in pts) == [
        ("adam_tuned", 1.4), ("lstm", 1.0), ("small_fc", 1.2), ("small_fc", 1.3)]
    bar = {f"ssim{d}": 0.80 for d in fr.DIGITS}  # goal (a): SSIM >= 0.78 everywhere
    verdicts = {(p["optimizer"], p["mass1"]): (p["ssim_ok"], p["mass_ok"], p["both"])
                for p in (fr.judge(p, bar) for p in pts)}
    assert verdicts == {("adam_tuned", 1.4): (True, False, False), ("small_fc", 1.2): (True, True, True),
                        ("small_fc", 1.3): (True, False, False), ("lstm", 1.0): (False, True, False)}


def test_summary_row_flags_reused_baselines_that_did_not_reproduce():
    from research.tools.research_report import summary_rows

    opt = lambda v, lr: {"lr": lr, "per_seed": {"train_loss": v},  # noqa: E731
                         "final_loss": {"mean": sum(v) / len(v), "std": 0.0}}
    res = {"steps": 10, "seeds": 4, "optimizers": {"small_fc": opt([0.4, 0.41, 0.4, 0.42], None),
                                                   "adam_tuned": opt([0.5, 0.52, 0.5, 0.51], 0.01)}}
    assert summary_rows({"x": res})[0][0].endswith(" | better |")
    res["reuse_check"] = {"reproduced": True, "max_rel_diff": 0.0}
    assert summary_rows({"x": res})[0][0].endswith(" | better |")
    res["reuse_check"] = {"reproduced": False, "max_rel_diff": 0.011}
    assert summary_rows({"x": res})[0][0].endswith(" | better (reused baselines off by 1.1 %) |")


@pytest.mark.slow
def test_kill_resume_script(tmp_path):
    """SIGKILL part way, resume with --ckpt_path last: the script's own checks (see research/tools/kill_resume.py)."""
    from research.tools import kill_resume as kr

    rc = kr.main(["--out", str(tmp_path), "--work", str(tmp_path / "work"), "--steps", "200", "--kills", "1",
                  "--checkpoint_every", "5", "--horizon", "8", "--unroll", "4", "--val_every", "100",
                  "--max_delay", "0.3"])
    res = json.loads((tmp_path / "kill_resume.json").read_text())
    assert rc == 0 and res["passed"], res["checks"]
    assert 0 < res["kills"][0]["left_behind"]["global_step"] < 200
