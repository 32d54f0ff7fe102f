"""The held-out benchmark: its models lie outside configs/general.yaml's meta-training distribution, the verdicts
count a diverged learned run as a failure, and a tiny run of ``python -m l2l_torch.benchmark heldout`` writes its
table."""

from __future__ import annotations

import json

import pytest

from l2l_torch import benchmark
from l2l_torch.cli import instantiate, load_config
from l2l_torch.heldout import HELDOUT_MODELS, HELDOUT_VERSION, model
from l2l_torch.tasks.family_mixture import FamilyMixture
from l2l_torch.tasks.image_mixture import ImageMixtureFamily
from l2l_torch.tasks.task_augmentation import AugmentedFamily
from tests.helpers import SHARED_DATA, needs_data


def _image_families(family) -> list[ImageMixtureFamily]:
    """The image families inside a (mixed, augmented) family."""
    if isinstance(family, AugmentedFamily):
        return _image_families(family.family)
    if isinstance(family, FamilyMixture):
        return [f for member in family.families for f in _image_families(member)]
    return [family] if isinstance(family, ImageMixtureFamily) else []


def test_no_heldout_model_is_in_the_meta_training_distribution():
    config = load_config("general")
    families = _image_families(instantiate(config["model"]["task"]))  # builds the families; loads no data
    assert {type(f).__name__ for f in families} == {"MLPMixtureFamily", "CNNMixtureFamily"}
    for m in HELDOUT_MODELS:
        assert not any(f.can_sample(m.config()) for f in families), f"{m.name} can be sampled in meta-training"
    # the same checks accept what the families do draw (so they are not vacuous)
    for f in families:
        assert all(f.can_sample(f.config_of(s)) for s in range(50))
    # at least one model trains past the longest meta-training horizon, up to 2,000 steps
    horizon = config["model"]["truncation"]["init_args"]["horizon"]
    assert max(m.steps for m in HELDOUT_MODELS) >= 2000 > horizon


def test_heldout_models_are_varied_and_frozen():
    names = [m.name for m in HELDOUT_MODELS]
    assert len(names) >= 8 and len(set(names)) == len(names)
    assert {m.dataset for m in HELDOUT_MODELS} == {"mnist", "fashion_mnist", "cifar10"}
    assert len({m.activation for m in HELDOUT_MODELS}) >= 4
    assert len({m.batch_size for m in HELDOUT_MODELS}) >= 5 and len({m.steps for m in HELDOUT_MODELS}) >= 4
    assert {m.model for m in HELDOUT_MODELS} >= {"mlp", "cnn"}
    assert HELDOUT_VERSION[:2] == "20"
    with pytest.raises(ValueError, match="known"):
        model("no_such_model")
    with pytest.raises(Exception):  # noqa: B017  (frozen dataclass)
        HELDOUT_MODELS[0].steps = 3


def _summary(losses: list[float | None]) -> dict:
    ok = [x for x in losses if x is not None]
    s = {"diverged": len(losses) - len(ok), "per_seed": {"train_loss": losses}}
    if ok:
        s["train_loss"] = {"mean": sum(ok) / len(ok), "std": 0.0}
    return s


def test_a_diverged_learned_run_fails_its_model_and_the_table_is_holm_corrected():
    results = {
        "good": {"optimizers": {"learned": _summary([0.50, 0.52, 0.49, 0.51]),
                                "adam_tuned": _summary([0.60, 0.63, 0.61, 0.62]),
                                "adamw_tuned": _summary([0.55, 0.58, 0.55, 0.57])}},
        "bad": {"optimizers": {"learned": _summary([0.10, None, 0.10, 0.11]),
                               "adam_tuned": _summary([0.60, 0.61, 0.62, 0.60]),
                               "adamw_tuned": _summary([0.60, 0.61, 0.62, 0.60])}},
    }
    rows = benchmark.compare_models(results, seeds=4)
    assert len(rows) == 4
    verdicts = {(r["model"], r["reference"]): r["verdict"] for r in rows}
    assert verdicts[("bad", "adam_tuned")] == verdicts[("bad", "adamw_tuned")] == "diverged"
    assert verdicts[("good", "adam_tuned")] == "better"
    assert all(r["p_holm"] >= r["p"] for r in rows)
    assert benchmark.ratio_to_adam(results["bad"]["optimizers"]) is None  # a failure, never a good-looking number
    assert benchmark.ratio_to_adam(results["good"]["optimizers"]) == pytest.approx(0.505 / 0.615)


def test_a_learned_optimizer_that_leaves_the_loss_where_it_started_did_not_train():
    def run(curve0: float, finals: list[float]) -> dict:
        return {**_summary(finals), "curve": [curve0, 1.0]}

    # a network driven to a constant output: ln 10 from a start just above it (not NaN, so not "diverged")
    stuck, trained, ref = run(2.31, [2.3026] * 4), run(2.31, [0.9, 1.0, 0.95, 0.92]), run(2.31, [1.0, 1.1, 1.0, 1.05])
    assert benchmark.did_not_train(stuck) and not benchmark.did_not_train(trained)
    assert not benchmark.did_not_train(_summary([None] * 4))  # diverged runs are counted as diverged instead
    models = {name: {"optimizers": {"learned": learned, "adam_tuned": ref, "adamw_tuned": ref},
                     "ratio_to_adam_tuned": 0.9, "model": {"outside": "x"}, "steps": 1}
              for name, learned in (("stuck", stuck), ("trained", trained))}
    table = benchmark.tabulate(models, seeds=4, tune_seeds=1)
    assert table["models"]["stuck"]["learned_did_not_train"] and not table["models"]["stuck"]["target_met"]
    assert table["models"]["trained"]["target_met"] and table["summary"]["learned_did_not_train_models"] == 1
    assert "no (did not train)" in benchmark.markdown(table)


@needs_data("MNIST")
def test_tiny_heldout_run_writes_json_and_markdown(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("L2L_DATA_DIR", str(SHARED_DATA))
    models = "mnist_mlp_512_tanh,mnist_mlp_128x64_silu_b1024"
    benchmark.main(["heldout", "--checkpoint", "small_fc_warmup_pes", "--out", str(tmp_path), "--seeds", "2",
                    "--models", models, "--steps", "4", "--subset", "300", "--tune-trials", "2", "--tune-seeds", "1",
                    "--lr-grid", "0.001,0.01"])
    result = json.loads((tmp_path / "heldout.json").read_text())
    assert result["version"] == HELDOUT_VERSION and list(result["models"]) == models.split(",")
    assert result["learned_lr"] == 1.0  # the learned step as meta-trained (--learned-lr scales it)
    assert result["threads"] >= 1 and result["processor"] and result["cpu_capability"]  # CPU rounding depends on them
    for r in result["models"].values():
        assert r["steps"] == 4
        assert {"learned", "adam", "adam_tuned", "adamw_tuned"} <= set(r["optimizers"])
        assert len(r["optimizers"]["learned"]["per_seed"]["train_loss"]) == 2
        assert r["optimizers"]["adamw_tuned"]["tuning_cost"]["trials"] == 2
    assert len(result["comparisons"]) == 4 and all("p_holm" in c and c["verdict"] for c in result["comparisons"])
    table = (tmp_path / "heldout.md").read_text()
    assert all(f"| {name} |" in table for name in models.split(",")) and "Holm" in table
    assert "target met on" in capsys.readouterr().out

    # the model card of the shipped entry records the run: what ran, what did not, where it is not better
    import shutil

    from l2l_torch.pretrained import PACKAGE_DIR, set_heldout_card

    shop = tmp_path / "shop"
    shop.mkdir()
    for suffix in (".pt", ".json"):
        shutil.copy(PACKAGE_DIR / f"small_fc_warmup_pes{suffix}", shop)
    c = set_heldout_card("small_fc_warmup_pes", tmp_path, folder=shop)
    assert json.loads((shop / "small_fc_warmup_pes.json").read_text())["heldout"] == c
    assert c["models_run"] == models.split(",") and len(c["models_not_run"]) == len(HELDOUT_MODELS) - 2
    assert sum(c["verdicts"]["adam_tuned"].values()) == 2 and c["target_met"] == result["summary"]["target_met"]
    assert {r["model"] for r in c["not_better_on"]} == {
        n for n, r in result["models"].items()
        if not r["target_met"] or any(x["verdict"] != "better" for x in result["comparisons"] if x["model"] == n)}
    for suffix in (".pt", ".json"):
        shutil.copy(PACKAGE_DIR / f"quadratic{suffix}", shop)
    with pytest.raises(ValueError, match="not of 'quadratic'"):  # another optimizer's run
        set_heldout_card("quadratic", tmp_path, folder=shop)

    # another run with the same settings takes these baselines, once one of them reproduces here
    again = tmp_path / "again"
    benchmark.main(["heldout", "--checkpoint", "small_fc_warmup_pes", "--out", str(again), "--seeds", "2",
                    "--models", models.split(",")[1], "--steps", "4", "--subset", "300", "--tune-trials", "2",
                    "--tune-seeds", "1", "--lr-grid", "0.001,0.01", "--reuse-baselines", str(tmp_path)])
    reused = json.loads((again / "heldout.json").read_text())["models"][models.split(",")[1]]
    assert reused["reuse_check"]["reproduced"] is True
    for name in ("adam_tuned", "adamw_tuned", "learned"):
        assert reused["optimizers"][name] == result["models"][models.split(",")[1]]["optimizers"][name]
    # the learned optimizer's lr adapted online in every run: each run's final factors are recorded
    adapted = tmp_path / "adapted"
    benchmark.main(["heldout", "--checkpoint", "small_fc_warmup_pes", "--out", str(adapted), "--seeds", "2",
                    "--models", models.split(",")[1], "--steps", "4", "--subset", "300", "--tune-trials", "2",
                    "--tune-seeds", "1", "--lr-grid", "0.001,0.01", "--reuse-baselines", str(tmp_path),
                    "--hypergradient", "1"])
    result_hd = json.loads((adapted / "heldout.json").read_text())
    factors = result_hd["models"][models.split(",")[1]]["hypergradient_factors"]
    assert result_hd["hypergradient"] == 1.0 and len(factors) == 2
    assert all(len(run) == 1 and 0 < run[0] <= 1 for run in factors)  # one param group; never above the start
    assert "hypergradient descent (beta 1" in (adapted / "heldout.md").read_text()
    hd_card = set_heldout_card("small_fc_warmup_pes", adapted, folder=shop)
    assert json.loads((shop / "small_fc_warmup_pes.json").read_text())["heldout_hypergradient"] == hd_card
    assert hd_card["hypergradient_beta"] == 1.0
    assert list(hd_card["median_final_lr_factor"]) == [models.split(",")[1]]
    for bad in (["--hypergradient", "-1"], ["--hypergradient", "1", "--tune-learned-lr", "1,0.5"]):
        with pytest.raises(SystemExit) as e:
            benchmark.main(["heldout", "--checkpoint", "small_fc_warmup_pes", "--out", str(tmp_path / "no"),
                            "--models", models.split(",")[1], *bad])
        assert e.value.code == 2 and "--hypergradient takes a rate >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an adapted run is not merged with a constant-step one
        benchmark.main(["merge", str(again), str(adapted), "--out", str(tmp_path / "mixed")])
    assert "differs" in capsys.readouterr().err
    # the learned optimizer's lr tuned per model on the tuning instances (never on the held-out ones)
    tuned = tmp_path / "tuned"
    benchmark.main(["heldout", "--checkpoint", "small_fc_warmup_pes", "--out", str(tuned), "--seeds", "2",
                    "--models", models.split(",")[1], "--steps", "4", "--subset", "300", "--tune-trials", "2",
                    "--tune-seeds", "1", "--lr-grid", "0.001,0.01", "--reuse-baselines", str(tmp_path),
                    "--tune-learned-lr", "1,0.5,0.25"])
    assert "the reused baselines reproduce here" in capsys.readouterr().err  # checked before the tuning runs
    row = json.loads((tuned / "heldout.json").read_text())["models"][models.split(",")[1]]
    scores = row["learned_tuning"]
    assert float(min(scores, key=lambda k: (scores[k], float(k)))) == row["learned_lr"]  # the best on tuning seeds
    assert row["learned_tuning_cost"] == 4 * len(row["learned_tuning"])
    assert f"(lr {row['learned_lr']:g})" in (tuned / "heldout.md").read_text()
    # its model card goes beside the as-shipped one and names the lr chosen per model; a fixed lr is refused
    t = set_heldout_card("small_fc_warmup_pes", tuned, folder=shop)
    card = json.loads((shop / "small_fc_warmup_pes.json").read_text())
    assert card["heldout_lr_tuned"] == t and card["heldout"] == c
    assert t["lr_grid"] == [1.0, 0.5, 0.25] and t["chosen_lr"] == {models.split(",")[1]: row["learned_lr"]}
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    (fixed / "heldout.json").write_text(json.dumps({**result, "learned_lr": 0.1}))
    with pytest.raises(ValueError, match="fixed lr 0.1"):
        set_heldout_card("small_fc_warmup_pes", fixed, folder=shop)
    with pytest.raises(SystemExit) as e:  # other settings: refused
        benchmark.main(["heldout", "--checkpoint", "small_fc_warmup_pes", "--out", str(tmp_path / "no"), "--seeds",
                        "2", "--models", models, "--steps", "5", "--subset", "300", "--reuse-baselines", str(tmp_path)])
    assert e.value.code == 2 and "settings differ" in capsys.readouterr().err
    # baselines that do not reproduce here are refused before the learned optimizer's lr is tuned, in one line
    name = models.split(",")[1]
    drifted = json.loads(json.dumps(result))
    per_seed = drifted["models"][name]["optimizers"]["adam_tuned"]["per_seed"]
    per_seed["train_loss"][0] *= 1.5
    (tmp_path / "drifted").mkdir()
    (tmp_path / "drifted" / "heldout.json").write_text(json.dumps(drifted))
    with pytest.raises(SystemExit) as e, pytest.warns(UserWarning, match="does not reproduce"):
        benchmark.main(["heldout", "--checkpoint", "small_fc_warmup_pes", "--out", str(tmp_path / "no"), "--seeds",
                        "2", "--models", name, "--steps", "4", "--subset", "300", "--tune-trials", "2",
                        "--tune-seeds", "1", "--lr-grid", "0.001,0.01", "--reuse-baselines", str(tmp_path / "drifted"),
                        "--tune-learned-lr", "1,0.5"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "do not reproduce here" in err and "Traceback" not in err
    assert "tuning the learned optimizer's lr" not in err

    # the table of a run split by model, merged, is the table of the whole run (Holm over all its rows)
    # each model keeps its part's machine; the top level only what both parts share
    for i, name in enumerate(models.split(",")):
        part = {**result, "models": {name: result["models"][name]}, "threads": i + 1}
        (tmp_path / f"part{i}").mkdir()
        (tmp_path / f"part{i}" / "heldout.json").write_text(json.dumps(part))
    benchmark.main(["merge", str(tmp_path / "part0"), str(tmp_path / "part1"), "--out", str(tmp_path / "merged")])
    merged = json.loads((tmp_path / "merged" / "heldout.json").read_text())
    assert merged["comparisons"] == result["comparisons"] and merged["summary"] == result["summary"]
    assert [merged["models"][n]["host"]["threads"] for n in models.split(",")] == [1, 2]
    assert merged["models"][name]["host"]["processor"] == result["processor"] == merged["processor"]
    assert "threads" not in merged
    with pytest.raises(SystemExit):  # a model twice
        benchmark.main(["merge", str(tmp_path), str(again), "--out", str(tmp_path / "twice")])
    assert "more than one folder" in capsys.readouterr().err


def test_unknown_model_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        benchmark.main(["heldout", "--checkpoint", "small_fc_warmup_pes", "--out", str(tmp_path),
                        "--models", "mnist_mlp_512_tanh,nope"])
    assert e.value.code == 2
    assert "unknown held-out model 'nope'" in capsys.readouterr().err
