"""Paired verdicts (scipy's paired t-test, Holm's correction) and the README's generated tables."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from l2l_torch import report
from l2l_torch.stats import holm, paired_comparison, verdict


def test_paired_comparison_is_scipys_paired_t_test():
    learned = [0.50, 0.52, 0.47, 0.51, 0.49]
    adam = [0.55, 0.53, 0.52, 0.56, 0.50]
    got = paired_comparison(learned, adam)
    ref = sps.ttest_rel(learned, adam)
    ci = ref.confidence_interval(0.95)
    assert got["n"] == 5 and got["p"] == pytest.approx(ref.pvalue)
    assert got["mean_diff"] == pytest.approx(sum(a - b for a, b in zip(learned, adam)) / 5)
    assert (got["ci_low"], got["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_paired_comparison_leaves_out_diverged_seeds_and_needs_two_pairs():
    got = paired_comparison([0.5, None, 0.4, float("nan")], [0.6, 0.6, 0.45, 0.5])
    assert got["n"] == 2 and got["p"] == pytest.approx(sps.ttest_rel([0.5, 0.4], [0.6, 0.45]).pvalue)
    assert math.isnan(paired_comparison([0.5], [0.6])["p"])
    with pytest.raises(ValueError, match="cannot pair"):
        paired_comparison([0.5, 0.4], [0.6])


def test_holm_step_down():
    # sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04, raised to 0.06 to stay monotone
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    adj = holm([float("nan"), 0.02])
    assert math.isnan(adj[0]) and adj[1] == pytest.approx(0.02)  # nan neither counted nor changed


def test_verdict_reads_only_the_corrected_p_value():
    assert verdict(-0.1, 0.01) == "better" and verdict(0.1, 0.01) == "worse"
    assert verdict(-0.1, 0.06) == "level" and verdict(-0.1, float("nan")) == "level"
    assert verdict(0.1, 0.01, lower_is_better=False) == "better"


def test_a_row_significant_alone_is_level_after_correction():
    # three rows of p = 0.02 each: uncorrected all "better", Holm multiplies the smallest by 3
    adj = holm([0.02, 0.02, 0.02])
    assert [verdict(-1.0, p) for p in adj] == ["level"] * 3


def test_readme_tables_are_generated_from_committed_files():
    """`python -m l2l_torch.report` changes nothing: the README's tables are what the committed files give."""
    text = (report.REPO / "README.md").read_text()
    assert report.render_readme(text) == text, "README tables are stale: run python -m l2l_torch.report"


def test_every_verdict_of_the_readme_table_holds_when_recomputed_from_the_per_seed_values():
    """Each verdict cell of the README's results table, recomputed here from its results.json with scipy's paired
    t-test and a Holm step-down written out in this test: "better" / "worse" only where the adjusted p is below
    0.05, with the sign of the mean difference."""
    import json
    import re

    text = (report.REPO / "README.md").read_text()
    block = text.split(report.RESULTS[0], 1)[1].split(report.RESULTS[1], 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("|") and "](" in line]
    cells, pvalues = [], []
    for line in rows:
        folder = re.search(r"\]\(([^)]+)/\)", line).group(1)
        res = json.loads((report.REPO / folder / "results.json").read_text())
        learned = next(k for k, v in res["optimizers"].items() if v.get("lr") is None)
        ours = res["optimizers"][learned]["per_seed"]["train_loss"]
        verdicts = re.findall(r"\*\*(better|level|worse)\*\*", line)
        assert len(verdicts) == len(report.REFERENCES), line
        for ref, v in zip(report.REFERENCES, verdicts):
            theirs = res["optimizers"][ref]["per_seed"]["train_loss"]
            pvalues.append(sps.ttest_rel(ours, theirs).pvalue)
            cells.append((v, sum(a - b for a, b in zip(ours, theirs)) / len(ours)))
    order = sorted(range(len(pvalues)), key=pvalues.__getitem__)
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    assert len(cells) == 2 * len(report.HEADLINE)
    for (v, diff), p in zip(cells, adjusted):
        expected = "level" if p >= 0.05 else ("better" if diff < 0 else "worse")
        assert v == expected, (v, diff, p)


def test_replace_block_needs_both_markers():
    assert report.replace_block("a\n<!-- results:start -->\nold\n<!-- results:end -->\nb", report.RESULTS, "new\n") \
        == "a\n<!-- results:start -->\nnew\n<!-- results:end -->\nb"
    with pytest.raises(ValueError, match="no"):
        report.replace_block("no markers", report.RESULTS, "x")


def test_evaluation_table_shows_holm_corrected_paired_p_values_against_tuned_adam():
    from l2l_torch.plots import markdown_table

    def opt(lr, losses):
        m = sum(losses) / len(losses)
        return {"lr": lr, "final_loss": {"mean": m, "std": 0.01}, "per_seed": {"train_loss": losses}, "diverged": 0}

    adam = [0.50, 0.52, 0.51, 0.53, 0.49]
    learned = [0.45, 0.48, 0.46, 0.47, 0.44]
    sgd = [0.51, 0.52, 0.52, 0.53, 0.50]
    table = markdown_table({"optimizers": {"lstm": opt(None, learned), "adam_tuned": opt(0.01, adam),
                                           "sgd_tuned": opt(0.1, sgd)}})
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    p = holm([sps.ttest_rel(learned, adam).pvalue, sps.ttest_rel(sgd, adam).pvalue])
    assert f"| {p[0]:.2g} | better |" in rows["lstm"]
    assert f"| {p[1]:.2g} | {verdict(0.008, p[1])} |" in rows["sgd_tuned"]
    assert rows["adam_tuned"].endswith("| – | – | – |")


def test_study_defaults_are_the_keras_optimizers_at_their_documented_defaults():
    from torch import nn

    from l2l_torch.evaluation import BASELINE_SETS, BASELINES, baseline_factory

    expected = {"keras_adam": ("Adam", 1e-3, {"eps": 1e-7}),
                "keras_rmsprop": ("RMSprop", 1e-3, {"alpha": 0.9, "eps": 1e-7}),
                "keras_sgd": ("SGD", 1e-2, {}),
                "keras_adagrad": ("Adagrad", 1e-3, {"initial_accumulator_value": 0.1, "eps": 1e-7})}
    assert BASELINE_SETS["study_defaults"] == list(expected)
    for name, (base, lr, extra) in expected.items():
        opt = baseline_factory(name)([{"params": list(nn.Linear(2, 1).parameters())}])
        assert base in [c.__name__ for c in type(opt).__mro__] and BASELINES[name][1] == lr
        group = opt.param_groups[0]
        assert group["lr"] == lr and all(group[k] == v for k, v in extra.items()), (name, group)
    tuned = baseline_factory("keras_rmsprop", 0.03)([{"params": list(nn.Linear(2, 1).parameters())}])
    assert tuned.param_groups[0]["lr"] == 0.03 and tuned.param_groups[0]["alpha"] == 0.9


def test_unpaired_comparison_is_scipys_welch_test_on_the_sample_std():
    from l2l_torch.stats import unpaired_comparison

    learned = [0.50, 0.52, 0.47, 0.51, 0.49]
    adam = [0.55, 0.53, 0.52, 0.56, 0.50, 0.58]

    def summary(xs):  # what evaluate.py stores: mean and the population std (unbiased=False)
        m = sum(xs) / len(xs)
        return m, math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs)), len(xs)

    got = unpaired_comparison(summary(learned), summary(adam))
    ref = sps.ttest_ind(learned, adam, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert got["n"] == 5 and got["p"] == pytest.approx(ref.pvalue)
    assert got["mean_diff"] == pytest.approx(sum(learned) / 5 - sum(adam) / 6)
    assert (got["ci_low"], got["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    sample = sps.ttest_ind_from_stats(0.5, 0.02, 5, 0.55, 0.03, 6, equal_var=False).pvalue
    assert unpaired_comparison((0.5, 0.02, 5), (0.55, 0.03, 6), population_std=False)["p"] == pytest.approx(sample)
    assert math.isnan(unpaired_comparison((0.5, 0.02, 1), (0.55, 0.03, 6))["p"])
    assert math.isnan(unpaired_comparison((0.5, 0.0, 3), (0.55, 0.0, 3))["p"])
