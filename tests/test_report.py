"""The results report (quick mode on a tiny checkpoint) and a generalisation suite end to end."""

import json

import pytest

from l2l_torch import generalize, report
from l2l_torch.checkpoint import save_learned_optimizer
from l2l_torch.cli import UserError
from l2l_torch.learned_optimizers import LSTMOptimizer


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
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{report.START}\nold\n{report.END}\ny\n")
    report.main(["--results", str(results), "--no-rerun", "--readme", str(readme)])
    text = readme.read_text()
    assert "old" not in text and "| [quadratic]" in text and text.startswith("x\n") and text.endswith("y\n")
    assert (results / "RESULTS.md").read_text().startswith("# Results")


def test_verdict_paired_and_unpaired():
    a = {"final_loss": {"mean": 1.0, "std": 0.1}, "per_seed": {"train_loss": [1.0, 1.1, 0.9, 1.0]}}
    b = {"final_loss": {"mean": 2.0, "std": 0.1}, "per_seed": {"train_loss": [2.0, 2.1, 1.9, 2.05]}}
    assert report.verdict(a, b, 4) == "better"
    assert report.verdict(b, a, 4) == "worse"
    assert report.verdict(a, a, 4) in ("within noise", "too few seeds")
    assert report.verdict({"final_loss": {"mean": None}}, b, 4) == "diverged"
