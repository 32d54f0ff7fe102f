"""l2l_torch.pretrained: list_pretrained() is the metadata mapping and prints as a short table."""

import json
import math
import os
import subprocess
import sys

from l2l_torch import LSTMOptimizer, list_pretrained, save_learned_optimizer
from l2l_torch.pretrained import (
    PACKAGE_DIR,
    describe_entry,
    main,
    short_summary,
    short_trained_on,
    summary_from_results,
)
from tests.helpers import REPO

SHIPPED = sorted(p.stem for p in PACKAGE_DIR.glob("*.json") if p.with_suffix(".pt").is_file())


def test_printed_list_is_short_and_names_every_shipped_optimizer():
    catalog = list_pretrained()
    text = str(catalog)
    lines = text.splitlines()
    assert repr(catalog) == text
    assert max(len(line) for line in lines) < 160 and len(text.encode()) < 3000
    assert [line.split()[0] for line in lines[1:1 + len(SHIPPED)]] == SHIPPED  # one line per entry, by name
    assert lines[0].split()[:2] == ["name", "arch"] and "use for" in lines[0]


def test_list_is_still_the_metadata_mapping():
    catalog = list_pretrained()
    assert isinstance(catalog, dict) and list(catalog) == SHIPPED
    for name in SHIPPED:
        assert catalog[name] == json.loads((PACKAGE_DIR / f"{name}.json").read_text())
    assert json.loads(json.dumps(catalog)) == dict(catalog)


def _entry(folder, name, **meta):
    save_learned_optimizer(LSTMOptimizer(hidden_size=2), folder / f"{name}.pt", {"task": "quadratic", "horizon": 5})
    (folder / f"{name}.json").write_text(json.dumps({"name": name, **meta}))


def test_use_for_and_recommended_come_from_the_metadata(tmp_path):
    _entry(tmp_path, "a", arch="lstm", trained_on="QuadraticFamily(dim=4, num=2)", horizon=5, summary="x",
           use_for="quick demos\non tiny problems", recommended=True)
    _entry(tmp_path, "b", arch="small_fc", trained_on="STNFamily(data=generated from MNIST)", horizon=5, summary="x")
    rows = {r["name"]: r for r in list_pretrained(tmp_path).rows()}
    assert rows["a"]["use_for"] == "quick demos on tiny problems" and not rows["a"]["use_for_derived"]
    assert rows["a"]["recommended"] and not rows["b"]["recommended"]
    assert rows["b"]["use_for_derived"] and rows["b"]["use_for"] == "STN alignment"
    lines = str(list_pretrained(tmp_path)).splitlines()
    assert lines[1].startswith("a *") and "~" not in lines[1] and lines[1].endswith("quick demos on tiny problems")
    assert lines[2].startswith("b ") and lines[2].endswith("~STN alignment")
    assert "* recommended" in lines[-1] and "~ guessed" in lines[-1]


def test_the_heldout_count_in_use_for_comes_from_the_entrys_heldout_block(tmp_path):
    verdicts = {"adam_tuned": {"better": 1, "level": 2, "worse": 3, "diverged": 1}}
    _entry(tmp_path, "a", arch="lstm", trained_on="QuadraticFamily(dim=4, num=2)", horizon=5, summary="x",
           use_for="demos", heldout={"models_run": ["m"] * 7, "verdicts": verdicts})
    _entry(tmp_path, "b", arch="lstm", trained_on="QuadraticFamily(dim=4, num=2)", horizon=5, summary="x",
           use_for="demos")
    _entry(tmp_path, "c", arch="lstm", trained_on="QuadraticFamily(dim=4, num=2)", horizon=5, summary="x",
           use_for="demos", heldout={"models_run": ["m"] * 7, "verdicts": verdicts},
           heldout_hypergradient={"models_run": ["m"] * 6, "hypergradient_beta": 1.0, "target_ratio": 0.95,
                                  "target_met": 5})
    rows = {r["name"]: r for r in list_pretrained(tmp_path).rows()}
    assert rows["a"]["use_for"] == "demos (held-out models: as shipped it loses on 4 of 7)"
    assert rows["c"]["use_for"] == ("demos (held-out models: as shipped it loses on 4 of 7; with "
                                    "HypergradientLR(beta=1) it is below 0.95x tuned Adam on 5 of 6)")
    assert rows["b"]["use_for"] == "demos"


def test_the_table_says_which_stage_an_entry_is(tmp_path):
    _entry(tmp_path, "one", trained_on="STNFamily(data=generated from MNIST)", summary="x")
    _entry(tmp_path, "two", trained_on="STNFamily(data=generated from MNIST)", summary="x",
           lineage=[{"trained_on": "STNFamily()"}, {"trained_on": "QuadraticFamily(dim=2)"}])
    rows = {r["name"]: r for r in list_pretrained(tmp_path).rows()}
    assert (rows["one"]["stages"], rows["two"]["stages"]) == (1, 2)
    assert rows["two"]["use_for"] == "STN alignment, toy problems"  # guessed from every stage
    lines = str(list_pretrained(tmp_path)).splitlines()
    assert "affNIST STN, stage 2" in lines[2] and "stage" not in lines[1]
    assert "stage N: the last of N meta-training stages" in lines[-1]


def test_long_cells_are_cut_to_the_line_width(tmp_path):
    _entry(tmp_path, "long", arch="lstm", trained_on="QuadraticFamily(dim=4)", horizon=5, summary="s " * 200,
           use_for="u " * 200)
    text = str(list_pretrained(tmp_path))
    assert max(len(line) for line in text.splitlines()) < 160 and "…" in text
    assert list_pretrained(tmp_path)["long"]["use_for"] == "u " * 200  # the mapping keeps the full text


def test_short_forms_of_trained_on_and_summary():
    fam = "ImageClassificationFamily(dataset=fashion_mnist, source=auto, model=mlp, hidden=[20, 20], activation=sigmoid)"
    mix = ("FamilyMixture(families=[{'class': 'MLPMixtureFamily', 'datasets': ['fashion_mnist', 'mnist']}, "
           "{'class': 'STNFamily', 'name': 'affnist'}, {'class': 'ImageClassificationFamily', 'dataset': 'cifar10', "
           "'model': 'convdense', 'hidden': [20]}], weights=[0.5, 0.25, 0.25])")
    assert short_trained_on({"trained_on": fam}) == "FMNIST MLP[20,20]"
    assert short_trained_on({"trained_on": mix}) == "FMNIST+MNIST MLPs + affNIST STN + CIFAR10 CNN"
    assert describe_entry("m", {"trained_on": mix})["use_for"] == "image classifiers, STN alignment"
    broad = ("FamilyMixture(families=[{'class': 'AugmentedFamily', 'family': {'class': 'MLPMixtureFamily', "
             "'datasets': ['mnist']}}, {'class': 'AugmentedFamily', 'family': {'class': 'CNNMixtureFamily', "
             "'datasets': ['cifar10']}}], weights=[0.75, 0.25])")
    assert short_trained_on({"trained_on": broad}) == "augmented MNIST MLPs + CIFAR10 CNNs"
    assert describe_entry("m", {"trained_on": broad})["use_for"] == "image classifiers"
    results = {"task": "fmnist_t1", "steps": 100, "seeds": 3, "overrides": {"subset": 600}, "optimizers": {
        "lstm": {"lr": None, "final_loss": {"mean": 0.5, "std": 0.01}, "test_accuracy": {"mean": 0.81, "std": 0.01},
                 "diverged": 1},
        "adam_tuned": {"lr": 0.01, "final_loss": {"mean": 0.6, "std": 0.02}, "test_accuracy": {"mean": 0.79, "std": 0.02},
                       "diverged": 0}}}
    assert short_summary(summary_from_results(results)) == "fmnist_t1: test acc 0.81 vs adam_tuned 0.79, 1 diverged"
    for o in results["optimizers"].values():
        del o["test_accuracy"]
    results["optimizers"]["lstm"]["diverged"] = 0
    assert short_summary(summary_from_results(results)) == "fmnist_t1: loss 0.5 vs adam_tuned 0.6"
    assert short_summary("measured by hand") == "measured by hand"


def test_module_command_prints_the_table_or_one_entry(capsys):
    assert main([]) == 0
    assert capsys.readouterr().out.strip() == list_pretrained().table()
    name = SHIPPED[0]
    assert main([name]) == 0
    assert json.loads(capsys.readouterr().out) == list_pretrained()[name]
    assert main(["no_such_optimizer"]) == 2
    assert "unknown pretrained optimizer 'no_such_optimizer'" in capsys.readouterr().err


def test_empty_folder_prints_one_line(tmp_path):
    assert str(list_pretrained(tmp_path)) == "no pretrained learned optimizers"


def test_drop_in_example_runs_the_recommended_optimizer():
    r = subprocess.run([sys.executable, "examples/drop_in.py", "--steps", "5", "--json"], cwd=REPO, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["pretrained"] == "small_fc_warmup_pes" and out["pretrained"] in SHIPPED
    assert math.isfinite(out["learned_final_loss"])
    recommended = [n for n, meta in list_pretrained().items() if meta.get("recommended") is True]
    assert not recommended or out["pretrained"] in recommended
