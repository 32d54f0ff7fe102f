"""The learned-optimizer file format: round trip, weights_only, one clear error per bad file, export."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from l2l_torch import CheckpointError, LSTMOptimizer, load_learned_optimizer, save_learned_optimizer
from l2l_torch.checkpoint import VERSION, read_checkpoint, write_meta_json
from l2l_torch.export import export, lopt_from_lightning
from l2l_torch.export import main as export_main
from tests.helpers import smoke_train


def _saved(tmp_path: Path, **kw) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "optimizer.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=6, **kw), path, {"task": {"name": "tiny"}, "horizon": 7})
    return path


def test_round_trip_weights_only(tmp_path):
    path = _saved(tmp_path, per_kind=True, preprocess="log_sign", output_scale=0.01)
    raw = torch.load(path, weights_only=True)  # plain dict of primitives and tensors
    assert raw["format"] == "l2l_torch.learned_optimizer" and raw["version"] == VERSION
    assert raw["config"]["preprocess"] == "log_sign" and raw["config"]["output_scale"] == 0.01
    lopt, meta = load_learned_optimizer(path)
    assert meta == {"task": {"name": "tiny"}, "horizon": 7}
    torch.manual_seed(0)
    ref = LSTMOptimizer(hidden_size=6, per_kind=True, preprocess="log_sign", output_scale=0.01)
    for (k, a), (_, b) in zip(lopt.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # readable like any file the user writes


def test_meta_json_beside_the_optimizer_file_matches_its_metadata(tmp_path):
    path = _saved(tmp_path)
    meta = read_checkpoint(path)["meta"]
    out = write_meta_json(path, {**meta, "folder": tmp_path})
    assert out == tmp_path / "optimizer.json"
    assert json.loads(out.read_text()) == {**meta, "folder": str(tmp_path)}  # a Path is written as its string


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_learned_optimizer(tmp_path / "nope.pt")


def test_not_a_torch_file(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("hello, I am not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a readable learned-optimizer checkpoint"):
        load_learned_optimizer(bad)


def test_truncated_file(tmp_path):
    path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_learned_optimizer(path)


def test_torch_file_without_format_tag(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not a learned-optimizer checkpoint"):
        load_learned_optimizer(path)


def test_pickled_object_is_not_unpickled(tmp_path):
    """weights_only=True: a file carrying an arbitrary pickled object is refused, not executed."""
    path = tmp_path / "evil.pt"
    torch.save({"format": "l2l_torch.learned_optimizer", "payload": pickle.PickleError("x")}, path)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_learned_optimizer(path)


def test_other_version(tmp_path):
    path = _saved(tmp_path)
    obj = torch.load(path, weights_only=True)
    torch.save({**obj, "version": VERSION + 1}, path)
    with pytest.raises(CheckpointError, match=f"format version {VERSION + 1}"):
        load_learned_optimizer(path)


def test_unknown_architecture(tmp_path):
    path = _saved(tmp_path)
    obj = torch.load(path, weights_only=True)
    torch.save({**obj, "arch": "transformer9000"}, path)
    with pytest.raises(CheckpointError, match="unknown architecture 'transformer9000'"):
        load_learned_optimizer(path)


def test_weights_of_another_architecture(tmp_path):
    """A file whose weights do not fit its stated config (e.g. per-kind weights, single-net config)."""
    path = _saved(tmp_path, per_kind=True)
    obj = torch.load(path, weights_only=True)
    torch.save({**obj, "config": {**obj["config"], "per_kind": False}}, path)
    with pytest.raises(CheckpointError, match="weights do not match architecture 'lstm'"):
        load_learned_optimizer(path)
    torch.save({**obj, "config": {**obj["config"], "hidden_size": 7}}, path)
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_learned_optimizer(path)


def test_expect_arch(tmp_path):
    with pytest.raises(CheckpointError, match="expected 'rnn'"):
        load_learned_optimizer(_saved(tmp_path), expect_arch="rnn")


def test_refuses_non_finite(tmp_path):
    lopt = LSTMOptimizer(hidden_size=4)
    with torch.no_grad():
        lopt.nets["all"].head.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        save_learned_optimizer(lopt, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()
    assert not list(tmp_path.iterdir())  # no temporary file left behind


def test_lightning_checkpoint_gives_export_hint_and_exports(tmp_path):
    out = smoke_train("quadratic", tmp_path / "run", "--trainer.fast_dev_run", "false", "--trainer.max_steps", "2",
                      "--checkpoint_every", "1", "--model.val_every", "2", "--model.truncation.horizon", "4", "--model.truncation.unroll", "2")
    ckpt = out / "checkpoints" / "last.ckpt"
    # Lightning checkpoints of this project load without unpickling (on the CPU: the run may have used a GPU)
    raw = torch.load(ckpt, weights_only=True, map_location="cpu")
    with pytest.raises(CheckpointError, match="l2l_torch.export"):
        read_checkpoint(ckpt)
    meta = export(ckpt, tmp_path / "exported.pt")
    lopt, meta2 = load_learned_optimizer(tmp_path / "exported.pt")
    assert meta2["global_step"] == raw["global_step"] == 2 and meta2["horizon"] == 4 == meta["horizon"]
    assert meta2["task"]["name"] == "quadratic"
    theta = {k[5:]: v for k, v in raw["state_dict"].items() if k.startswith("lopt.")}
    assert theta.keys() == lopt.state_dict().keys()
    for k, v in lopt.state_dict().items():
        assert torch.equal(v, theta[k]), k


def test_export_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError):
        lopt_from_lightning(tmp_path / "none.ckpt")
    lo = _saved(tmp_path)
    with pytest.raises(CheckpointError, match="already a learned-optimizer file"):
        lopt_from_lightning(lo)
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6"}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not of a l2l_torch meta-training run"):
        lopt_from_lightning(tmp_path / "other.ckpt")
    with pytest.raises(SystemExit) as e:
        export_main([str(tmp_path / "none.ckpt"), str(tmp_path / "x.pt")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint not found") and "Traceback" not in err
    assert not (tmp_path / "x.pt").exists()


# ---------------------------------------------------------------- pretrained optimizers (package data)
def _results(tmp_path: Path) -> Path:
    d = tmp_path / "results" / "toy"
    d.mkdir(parents=True)
    torch.manual_seed(0)
    save_learned_optimizer(LSTMOptimizer(hidden_size=4), d / "optimizer.pt",
                           {"task": {"class": "ToyFamily", "name": "toy", "dim": 3}, "horizon": 50})
    res = {"task": "toy", "steps": 50, "seeds": 4, "overrides": {}, "optimizers": {
        "lstm": {"lr": None, "final_loss": {"mean": 0.0123, "std": 0.004}, "diverged": 0},
        "adam_tuned": {"lr": 0.1, "final_loss": {"mean": 0.5, "std": 0.1}, "diverged": 0},
        "sgd": {"lr": 0.001, "final_loss": {"mean": None, "std": None}, "diverged": 4}}}
    (d / "results.json").write_text(__import__("json").dumps(res))
    return d


def test_a_checkpoint_argument_is_a_file_or_the_name_of_a_shipped_optimizer(tmp_path, monkeypatch):
    from l2l_torch.pretrained import checkpoint_path, pretrained_path

    assert checkpoint_path("small_fc_warmup_pes") == str(pretrained_path("small_fc_warmup_pes"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small_fc_warmup_pes").write_bytes(b"")  # a file of that name wins over the shipped one
    assert checkpoint_path("small_fc_warmup_pes") == "small_fc_warmup_pes"
    assert checkpoint_path("runs/x/optimizer.pt") == "runs/x/optimizer.pt"  # neither: left for the loader's error


def test_add_and_list_pretrained(tmp_path):
    from l2l_torch.pretrained import add_pretrained, list_pretrained, pretrained_path

    folder = tmp_path / "pkg"
    entry = add_pretrained(_results(tmp_path), folder=folder)
    assert entry["name"] == "toy" and entry["trained_on"] == "ToyFamily(dim=3)" and entry["horizon"] == 50
    assert entry["summary"] == ("toy, 50 steps, 4 held-out instances: final train loss 0.0123 ± 0.004, diverged 0; "
                                "best baseline adam_tuned (lr 0.1): 0.5 ± 0.1")
    assert list(list_pretrained(folder)) == ["toy"]
    assert pretrained_path("toy", folder) == folder / "toy.pt"
    load_learned_optimizer(folder / "toy.pt")
    with pytest.raises(ValueError, match="unknown pretrained optimizer 'nope'; available: toy"):
        pretrained_path("nope", folder)
    # the summary may come from an evaluation in a subfolder
    sub = tmp_path / "results" / "toy" / "task_a"
    sub.mkdir()
    (tmp_path / "results" / "toy" / "results.json").rename(sub / "results.json")
    entry = add_pretrained(tmp_path / "results" / "toy", folder=folder, evaluation=sub)
    assert entry["evaluation"] == str(sub) and entry["summary"].startswith("toy, 50 steps")
    (sub / "results.json").rename(tmp_path / "results" / "toy" / "results.json")
    (tmp_path / "results" / "toy" / "results.json").unlink()
    with pytest.raises(FileNotFoundError, match="results.json not found"):
        add_pretrained(tmp_path / "results" / "toy", folder=folder)


def test_refreshing_a_pretrained_entry_keeps_what_was_written_by_hand(tmp_path):
    from l2l_torch.pretrained import add_pretrained

    folder = tmp_path / "pkg"
    d = _results(tmp_path)
    entry = add_pretrained(d, folder=folder)
    assert "use_for" not in entry
    card = {**entry, "use_for": "toy problems", "recommended": True, "heldout": {"models_run": ["a"]}}
    (folder / "toy.json").write_text(__import__("json").dumps(card))
    again = add_pretrained(d, folder=folder)
    assert again["use_for"] == "toy problems" and again["recommended"] is True
    assert "heldout" not in again  # it described the file that was replaced
    assert __import__("json").loads((folder / "toy.json").read_text()) == again


def test_deployment_cost_goes_into_the_model_card(tmp_path):
    import json

    from l2l_torch.pretrained import add_pretrained, set_deployment_card

    folder = tmp_path / "pkg"
    d = _results(tmp_path)
    add_pretrained(d, folder=folder)
    bench = tmp_path / "deployment.json"
    row = {"batch": 128, "params": 68522, "adam_ms": 126.5556, "learned_ms": 146.2613, "ratio": 1.1557}
    bench.write_text(json.dumps({"threads": 1, "device": "cpu", "rows": [
        {**row, "task": "convdense", "learned": "lstm per kind (untrained)"},
        {**row, "task": "heldout:big_cnn", "learned": "toy"}]}))
    rows = set_deployment_card("toy", bench, folder=folder)
    assert rows == [{"model": "heldout:big_cnn", "params": 68522, "batch": 128, "adam_ms_per_step": 126.56,
                     "learned_ms_per_step": 146.26, "per_step_vs_adam": 1.156, "threads": 1, "device": "cpu",
                     "source": str(bench)}]
    assert json.loads((folder / "toy.json").read_text())["deployment"] == rows
    adapted = {**row, "task": "heldout:big_cnn", "learned": "toy", "hypergradient_beta": 1.0, "hypergradient_ms": 147.8,
               "hypergradient_ratio": 1.1382}
    bench.write_text(json.dumps({"threads": 1, "device": "cpu", "rows": [adapted]}))
    (hd,) = set_deployment_card("toy", bench, folder=folder)  # the optimizer with HypergradientLR, timed beside it
    assert (hd["hypergradient_beta"], hd["hypergradient_ms_per_step"], hd["hypergradient_per_step_vs_adam"]) == (
        1.0, 147.8, 1.138)
    bench.write_text(json.dumps({"threads": 1, "device": "cpu", "rows": [{**row, "task": "mlp", "learned": "x"}]}))
    with pytest.raises(ValueError, match="no row of 'toy'"):  # a benchmark of another optimizer
        set_deployment_card("toy", bench, folder=folder)
    assert "deployment" not in add_pretrained(d, folder=folder)  # it described the file that was replaced


def test_pretrained_entry_lists_the_meta_training_stages_behind_it(tmp_path):
    from l2l_torch.pretrained import add_pretrained

    first = tmp_path / "first.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=4), first,
                           {"task": {"class": "AFamily", "dim": 2}, "horizon": 20, "global_step": 7,
                            "warm_started_from": None})
    d = _results(tmp_path)  # its optimizer.pt predates recorded warm starts: re-save it as a continuation of first.pt
    lopt, meta = load_learned_optimizer(d / "optimizer.pt")
    save_learned_optimizer(lopt, d / "optimizer.pt", {**meta, "global_step": 3, "warm_started_from": str(first)})
    stages = add_pretrained(d, folder=tmp_path / "pkg")["lineage"]
    assert [(x["file"], x["trained_on"], x["horizon"], x["global_step"]) for x in stages] == [
        (str(d / "optimizer.pt"), "ToyFamily(dim=3)", 50, 3), (str(first), "AFamily(dim=2)", 20, 7)]
    first.unlink()  # a stage whose file is gone ends the chain, and says so
    assert add_pretrained(d, folder=tmp_path / "pkg")["lineage"][1] == {"file": str(first), "missing": True}
    save_learned_optimizer(lopt, d / "optimizer.pt", meta)  # written before warm starts were recorded
    assert add_pretrained(d, folder=tmp_path / "pkg")["lineage"][0]["warm_started_from"] == "not recorded"


def test_meta_training_records_its_warm_start(tmp_path):
    import train

    save_learned_optimizer(LSTMOptimizer(preprocess="none"), tmp_path / "start.pt", {"task": "quadratic"})
    common = ["--task", "quadratic", "--trainer.max_steps", "0", "--model.val_tasks", "1", "--model.val_horizon", "2"]
    train.main([*common, "--out", str(tmp_path / "warm"), "--model.lopt.init_args.init_from", str(tmp_path / "start.pt")])
    assert load_learned_optimizer(tmp_path / "warm" / "optimizer.pt")[1]["warm_started_from"] == str(tmp_path / "start.pt")


def test_shipped_pretrained_entries_match_their_results():
    """Every shipped optimizer loads, and its summary is the one its results folder gives today."""
    import json

    from l2l_torch import LearnedOptimizer, list_pretrained
    from l2l_torch.heldout import card
    from l2l_torch.pretrained import deployment_card, summary_from_results
    from tests.helpers import REPO

    shipped = list_pretrained()
    for name, entry in shipped.items():
        for key in ("trained_on", "horizon", "summary"):
            assert entry.get(key) not in (None, ""), (name, key)
        opt = LearnedOptimizer([torch.nn.Parameter(torch.zeros(3))], pretrained=name)
        assert opt.lopt.arch_name == entry["arch"]
        res = REPO / entry.get("evaluation", entry["source"]) / "results.json"
        if res.is_file():
            assert entry["summary"] == summary_from_results(json.loads(res.read_text())), name
        # the held-out and deployment parts of the model card are what their committed sources give today
        for key in ("heldout", "heldout_lr_tuned"):
            if key in entry:
                src = entry[key]["source"]
                again = card(json.loads((REPO / src / "heldout.json").read_text()), src)
                assert entry[key] == json.loads(json.dumps(again, default=str)), (name, key)
        if "deployment" in entry:
            src = entry["deployment"][0]["source"]
            assert entry["deployment"] == deployment_card(name, json.loads((REPO / src).read_text()), src), name
