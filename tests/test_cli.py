"""train.py / evaluate.py: smoke runs of every config and one-line user errors."""

import json
import re
import subprocess
import sys

import pytest

from l2l_torch.checkpoint import read_learned_optimizer, save_learned_optimizer
from l2l_torch.cli import available_tasks, load_config
from l2l_torch.learned_optimizers import LSTMOptimizer
from tests.helpers import REPO, SHARED_DATA, config_params, needs_data, smoke_train, write_jpeg_folder


def run(*args, env=None):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


def small_family(spec: dict, tmp_path) -> dict:
    """A task-family spec (``class_path``/``init_args``) with init args that keep a smoke run small: a slice
    of the images, a tiny image folder, a few STN digits; the families of a mixture each made small."""
    cls, init = spec["class_path"].rsplit(".", 1)[1], dict(spec.get("init_args") or {})
    if cls in ("ImageClassificationFamily", "MLPMixtureFamily"):
        init.update(subset=600, train_eval_size=200)
        if init.get("dataset") == "cifar10":  # decoding the 60,000 JPEGs is too slow for a smoke test
            write_jpeg_folder(tmp_path / "data" / "CIFAR-10-images", {"train": 6, "test": 2})
            init["data_dir"] = str(tmp_path / "data")
    elif cls == "CNNMixtureFamily":  # its MNIST-style datasets only (a CIFAR-10 folder would replace their data_dir)
        init.update(subset=600, train_eval_size=200,
                    datasets=[d for d in init.get("datasets", ["fashion_mnist", "mnist"]) if d != "cifar10"])
    elif cls == "STNFamily":
        init.update(n_train=64, n_val=16, n_test=16)
    elif cls == "FamilyMixture":
        init["families"] = [small_family(f, tmp_path) for f in init["families"]]
    elif cls == "AugmentedFamily":
        init["family"] = small_family(init["family"], tmp_path)
    return {**spec, "init_args": init}


def small_data_args(task: str, tmp_path) -> list[str]:
    """CLI overrides that keep a config's smoke run small (see :func:`small_family`)."""
    return ["--model.task", json.dumps(small_family(load_config(task)["model"]["task"], tmp_path))]


@pytest.mark.parametrize("task", config_params(available_tasks(), written_by_test=("cifar10",)))
def test_fast_dev_run_every_config(task, tmp_path, monkeypatch):
    monkeypatch.setenv("L2L_DATA_DIR", str(SHARED_DATA))
    monkeypatch.setenv("L2L_CACHE_DIR", str(tmp_path / "cache"))
    smoke_train(task, tmp_path / "out", *small_data_args(task, tmp_path))


def test_unknown_task_is_one_line_error(tmp_path):
    r = run("train.py", "--task", "no_such_task", "--out", str(tmp_path))
    assert r.returncode != 0
    assert r.stderr.strip().startswith("error: unknown task 'no_such_task'")
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_missing_checkpoint_is_one_line_error(tmp_path):
    r = run("evaluate.py", "--task", "quadratic", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o"))
    assert r.returncode != 0
    assert "checkpoint not found" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_evaluate_on_tiny_checkpoint(tmp_path):
    ckpt = tmp_path / "optimizer.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=4, preprocess="none"), ckpt, {"task": "quadratic"})
    out = tmp_path / "eval"
    r = run("evaluate.py", "--task", "quadratic", "--checkpoint", str(ckpt), "--out", str(out),
            "--steps", "5", "--seeds", "2", "--tune-seeds", "1")
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "quadratic" and res["steps"] == 5 and res["seeds"] == 2
    names = {"lstm", "adam", "adam_tuned", "rmsprop", "rmsprop_tuned", "sgd", "sgd_tuned", "adagrad", "adagrad_tuned"}
    assert set(res["optimizers"]) == names
    for name, o in res["optimizers"].items():
        assert len(o["curve"]) == 6
        assert set(o["final_loss"]) == {"mean", "std"}
        assert (o["lr"] is None) == (name == "lstm")
    assert (out / "curves.png").stat().st_size > 0 and (out / "table.md").read_text().startswith("| optimizer")
    # before tuning, how many runs it does at most; then one line per learning rate tried
    from l2l_torch.evaluation import LR_GRID, tune_runs_bound

    bound = 4 * tune_runs_bound(LR_GRID, 1)
    assert f"tuning lr for 4 optimizers: up to {bound} runs of 5 steps" in r.stdout
    tried = re.findall(r"tuning (\w+) \((\d)/4\): lr \S+ -> .*\[(\d+) of at most (\d+) runs\]", r.stdout)
    assert [int(t[2]) for t in tried] == list(range(1, len(tried) + 1))  # one run per lr with --tune-seeds 1
    assert {t[0] for t in tried} == {"adam", "rmsprop", "sgd", "adagrad"} and {t[3] for t in tried} == {str(bound)}
    assert len(tried) == sum(len(v) for v in res["tuning"].values()) <= bound


def test_evaluate_takes_the_name_of_a_shipped_optimizer(tmp_path):
    from l2l_torch.pretrained import pretrained_path

    out = tmp_path / "eval"
    r = run("evaluate.py", "--task", "quadratic", "--checkpoint", "quadratic", "--out", str(out),
            "--steps", "5", "--seeds", "1", "--no-tune", "--baselines", "adam", "--no-updates")
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["threads"] >= 1 and res["processor"] and res["cpu_capability"]  # on which CPU rounding depends
    assert res["checkpoint"] == "quadratic" and res["checkpoint_meta"] == read_learned_optimizer(
        pretrained_path("quadratic"))[1]


@needs_data("MNIST")
def test_evaluate_draws_the_stn_grids_as_indexed_pngs(tmp_path):
    """The STN's evaluation writes one image grid per optimizer, with an indexed palette (``save_png``)."""
    import os

    from PIL import Image

    out = tmp_path / "eval"
    r = run("evaluate.py", "--task", "affnist", "--checkpoint", "affnist", "--out", str(out), "--steps", "3",
            "--seeds", "1", "--no-tune", "--baselines", "adam", "--no-updates", "--set", "n_train=16",
            "--set", "n_val=4", "--set", "n_test=4", env={**os.environ, "L2L_DATA_DIR": str(SHARED_DATA)})
    assert r.returncode == 0, r.stderr
    grids = sorted(p.name for p in out.glob("grid_*.png"))
    assert grids == ["grid_adam.png", "grid_rnnprop.png"]
    assert {Image.open(out / g).mode for g in grids} == {"P"}


def test_evaluate_reuses_baselines(tmp_path):
    """--reuse-baselines trains only the learned optimizer and copies the baselines of an earlier run."""
    ckpt = tmp_path / "optimizer.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=4, preprocess="none"), ckpt, {"task": "quadratic"})
    common = ("--task", "quadratic", "--checkpoint", str(ckpt), "--steps", "5", "--seeds", "2", "--no-updates")
    r = run("evaluate.py", *common, "--out", str(tmp_path / "a"), "--tune-seeds", "1", "--baselines", "adam",
            "--lr-grid", "0.01,0.1")
    assert r.returncode == 0, r.stderr
    first = json.loads((tmp_path / "a" / "results.json").read_text())
    assert set(first["tuning"]["adam"]) >= {"0.01", "0.1"}
    r = run("evaluate.py", *common, "--out", str(tmp_path / "b"), "--baselines", "adam",
            "--reuse-baselines", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    second = json.loads((tmp_path / "b" / "results.json").read_text())
    assert second["optimizers"]["adam_tuned"] == first["optimizers"]["adam_tuned"]
    assert second["optimizers"]["lstm"]["per_seed"] == first["optimizers"]["lstm"]["per_seed"]  # deterministic
    assert second["baselines_from"] == str(tmp_path / "a")
    check = second["reuse_check"]  # one reused run trained again: same machine, so the same figures
    assert check["optimizer"] == "adam_tuned" and check["reproduced"] and check["max_rel_diff"] <= 1e-4
    assert check["rerun"]["train_loss"] == first["optimizers"]["adam_tuned"]["per_seed"]["train_loss"][0]
    assert "does not reproduce" not in r.stderr
    # a stored run that came out otherwise (another machine's rounding, here tampered) is refused, before the
    # learned optimizer is trained, with what to do instead
    first["optimizers"]["adam_tuned"]["per_seed"]["train_loss"][0] *= 1.01
    first["threads"] += 7  # and the refusal names how the two machines differ, as far as the results record it
    (tmp_path / "a" / "results.json").write_text(json.dumps(first))
    r = run("evaluate.py", *common, "--out", str(tmp_path / "d"), "--baselines", "adam",
            "--reuse-baselines", str(tmp_path / "a"))
    assert r.returncode != 0 and "do not reproduce here: adam_tuned on seed" in r.stderr
    assert f"threads {first['threads']} there, {first['threads'] - 7} here" in r.stderr
    assert "processor" not in r.stderr.split("do not reproduce")[1]  # the same processor is not named as a difference
    assert "without --reuse-baselines" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "d" / "results.json").exists()
    # ... unless asked for, and then the results say it
    r = run("evaluate.py", *common, "--out", str(tmp_path / "d"), "--baselines", "adam",
            "--reuse-baselines", str(tmp_path / "a"), "--allow-drift")
    assert r.returncode == 0, r.stderr
    assert "does not reproduce" in r.stderr
    check = json.loads((tmp_path / "d" / "results.json").read_text())["reuse_check"]
    assert not check["reproduced"] and 0.009 < check["max_rel_diff"] < 0.011
    r = run("evaluate.py", *common[:-1], "--seeds", "3", "--out", str(tmp_path / "c"),
            "--reuse-baselines", str(tmp_path / "a"))
    assert r.returncode != 0 and "differ" in r.stderr
    # baselines evaluated at the last iterate are not reused for an evaluation at the averaged iterates
    r = run("evaluate.py", *common, "--average", "0.9", "--out", str(tmp_path / "e"),
            "--reuse-baselines", str(tmp_path / "a"))
    assert r.returncode != 0 and "'average': (None, 0.9)" in r.stderr
    r = run("evaluate.py", *common, "--average", "1", "--out", str(tmp_path / "e"))
    assert r.returncode != 0 and "argument --average: must be in [0, 1), got 1" in r.stderr


def test_warm_start_is_validated_before_meta_training(tmp_path):
    """A warm-started run validates its starting point (meta-step 0): if meta-training never beats it,
    the exported optimizer is the warm start itself, and its optimizer.json names the run's meta learning rate."""
    import torch

    import train
    from l2l_torch.checkpoint import load_learned_optimizer

    start = LSTMOptimizer(preprocess="none")  # the architecture of configs/quadratic.yaml
    save_learned_optimizer(start, tmp_path / "start.pt", {"task": "quadratic"})
    # one meta-step and no validation inside fit (an "epoch" is 50 meta-steps): only the warm start's
    train.main(["--task", "quadratic", "--out", str(tmp_path / "out"), "--trainer.max_steps", "1",
                "--model.val_every", "50", "--model.val_tasks", "2", "--model.val_horizon", "3",
                "--model.truncation.unroll", "3", "--model.truncation.horizon", "6",
                "--model.lopt.init_args.init_from", str(tmp_path / "start.pt"), "--optimizer.lr", "0.0123"])
    meta = json.loads((tmp_path / "out" / "optimizer.json").read_text())
    assert meta["global_step"] == 0 and meta["selected_by"] == "val/loss"
    assert meta["meta_lr"] == 0.0123  # the meta-training's settings, though selected before it started
    exported, _ = load_learned_optimizer(tmp_path / "out" / "optimizer.pt")
    for a, b in zip(exported.parameters(), start.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_summary_says_when_the_starting_point_beat_every_checkpoint(tmp_path):
    """optimizer.pt holds the warm start (meta-step 0, validated before fit, so without a Lightning checkpoint):
    the summary says that best-step=N.ckpt is the best of meta-training only; otherwise it adds nothing."""
    from types import SimpleNamespace

    import train

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best-step=40.ckpt").write_bytes(b"")
    (tmp_path / "optimizer.pt").write_bytes(b"")
    trainer = SimpleNamespace(global_step=50, max_steps=50, callbacks=[], logger=None)
    module = SimpleNamespace(hparams={"val_every": 10})
    for step, said in ((0, True), (40, False)):
        (tmp_path / "optimizer.json").write_text(json.dumps({"validated": True, "global_step": step,
                                                             "selected_by": "val/loss", "selected_value": 0.5}))
        text = train.summary("quadratic", tmp_path, trainer, module)
        assert f"meta-step {step}," in text
        assert ("the starting point, in optimizer.pt, did better" in text) is said


def test_validate_first_makes_the_initial_optimizer_a_candidate(tmp_path):
    """``--validate_first`` validates a from-scratch optimizer at meta-step 0 (an Adam-like start such as
    small_fc's adam_skip is a real candidate); without it, nothing is validated before meta-training."""
    import train

    common = ["--task", "quadratic", "--trainer.max_steps", "1", "--model.val_every", "50",
              "--model.val_tasks", "2", "--model.val_horizon", "3", "--model.truncation.unroll", "3", "--model.truncation.horizon", "6"]
    train.main([*common, "--out", str(tmp_path / "plain")])
    assert not (tmp_path / "plain" / "optimizer.json").exists()
    train.main([*common, "--out", str(tmp_path / "first"), "--validate_first"])
    meta = json.loads((tmp_path / "first" / "optimizer.json").read_text())
    assert meta["global_step"] == 0 and meta["warm_started_from"] is None and "val/loss" in meta["metrics"]


# ---------------------------------------------------------------- train.py: help, progress, outputs, noise
def test_train_help_is_short(capsys):
    """--help (with or without --task) is this script's flags, the tasks and a few overrides, not LightningCLI's
    hundreds of options; --help-all is those."""
    import train

    train.main(["--help"])
    text = capsys.readouterr().out
    train.main(["--task", "quadratic", "--help"])
    assert capsys.readouterr().out == text
    assert len(text.splitlines()) < 80, text
    for flag in ("--task", "--out", "--ckpt_path", "--checkpoint_every", "--validate_first", "--help-all",
                 "--print_config", "--trainer.max_steps", "--trainer.max_time", "--model.truncation.unroll"):
        assert flag in text, flag
    assert all(t in text for t in available_tasks())
    with pytest.raises(SystemExit) as e:
        train.main(["--task", "quadratic", "--help-all"])
    full = capsys.readouterr().out
    assert e.value.code == 0 and len(full.splitlines()) > 200
    assert "--trainer.max_steps" in full and "--model.truncation.help" in full


def _tiny(*extra: str) -> list[str]:
    return ["--model.val_tasks", "1", "--model.val_horizon", "2", "--model.truncation.unroll", "2", "--model.truncation.horizon", "4",
            "--model.task.init_args.num", "2", *extra]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 7-meta-step run (validations at 3 and 6, checkpoints every 2) with a time budget: its folder
    and its output."""
    out = tmp_path_factory.mktemp("finished") / "q"
    r = run("train.py", "--task", "quadratic", "--out", str(out), "--trainer.max_steps", "7",
            "--trainer.max_time", "00:00:30:00", "--model.val_every", "3", "--checkpoint_every", "2", *_tiny())
    assert r.returncode == 0, r.stderr
    return out, r.stdout + r.stderr


def test_progress_bar_counts_meta_steps_and_time_budget(finished_run):
    _, output = finished_run
    bars = [line for line in re.split(r"[\r\n]", output) if line.startswith("meta-step")]
    assert bars and re.search(r"\b7/7\b", bars[-1]), bars[-3:]  # all meta-steps, not 3-step "epochs"
    assert re.search(r"time=\d+:\d\d/30:00", bars[-1]), bars[-1]  # time used / budget
    assert not any(line.startswith("Epoch ") for line in re.split(r"[\r\n]", output))


def test_checkpoint_names_and_optimizer_json_agree_on_the_step(finished_run):
    import torch

    out, _ = finished_run
    meta = json.loads((out / "optimizer.json").read_text())
    best = list((out / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1 and meta["validated"] and meta["global_step"] in (3, 6)
    assert best[0].name == f"best-step={meta['global_step']}.ckpt"
    ckpt = torch.load(best[0], weights_only=True)
    assert ckpt["global_step"] == meta["global_step"]
    assert ckpt["callbacks"] and abs(float(meta["selected_value"]) - min(
        float(v["best_model_score"]) for k, v in ckpt["callbacks"].items() if "val/loss" in k)) < 1e-6
    # and the last checkpoint is the end of the run, not the last multiple of --checkpoint_every
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 7


def test_train_says_its_plan_once_before_it_starts(finished_run):
    out, output = finished_run
    assert output.count("plan: meta-train lstm (TruncatedBPTT) for at most 7 meta-steps or 0:30:00 (h:mm:ss), "
                        "whichever comes first") == 1
    assert "      training task instances from seed 0 on (--model.seed)\n" in output
    assert re.search(rf"every 3 meta-steps it validates on \d+ held-out task instances; the best so far is written to "
                     rf"{re.escape(str(out / 'optimizer.pt'))}\n", output)
    assert output.index("plan: ") < output.index("meta-step")


def test_plan_names_only_the_limits_the_run_has(tmp_path):
    """A run limited by time alone (``--trainer.max_steps -1``) says so, without "whichever comes first"."""
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    import train
    from l2l_torch.estimators import TruncatedBPTT

    module = SimpleNamespace(lopt=SimpleNamespace(arch_name="lstm", warm_started_from=None), estimator=TruncatedBPTT(),
                             hparams={"val_every": 25, "val_tasks": 4})
    for max_steps, duration, said in ((-1, "00:02:00:00", "for at most 2:00:00 (h:mm:ss)\n"),
                                      (2000, None, "for at most 2000 meta-steps\n"),
                                      (2000, "00:00:28:00", "2000 meta-steps or 0:28:00 (h:mm:ss), whichever comes first\n"),
                                      (-1, None, "for at most an unlimited number of meta-steps\n")):
        callbacks = [Timer(duration=duration)] if duration else []
        text = train.plan(tmp_path, SimpleNamespace(callbacks=callbacks, max_steps=max_steps), module)
        assert said in text, text


def test_plan_names_the_task_seed_that_makes_warm_started_runs_differ(tmp_path):
    """A warm start fixes theta's initialisation, so ``--seed_everything`` alone repeats the same run: the plan
    names the seed of the training task instances, and says so for a warm start."""
    from types import SimpleNamespace

    import train
    from l2l_torch.estimators import TruncatedBPTT

    trainer = SimpleNamespace(callbacks=[], max_steps=10)
    for warm in (None, "start.pt"):
        module = SimpleNamespace(lopt=SimpleNamespace(arch_name="lstm", warm_started_from=warm),
                                 estimator=TruncatedBPTT(), hparams={"val_every": 5, "val_tasks": 2, "seed": 3000})
        text = train.plan(tmp_path, trainer, module)
        assert "training task instances from seed 3000 on (--model.seed" in text
        assert ("runs differ only by this seed" in text) is bool(warm)


def test_train_says_where_its_outputs_went(finished_run):
    out, output = finished_run
    assert "done: meta-step 7 of 7" in output
    assert f"learned optimizer  {out / 'optimizer.pt'}" in output
    assert f"checkpoints        {out / 'checkpoints'}/" in output
    assert f"TensorBoard        {out / 'tb' / 'version_0'}" in output
    assert f"python evaluate.py --task quadratic --checkpoint {out / 'optimizer.pt'} --out {out / 'eval'}" in output
    assert f"tensorboard --logdir {out / 'tb'}" in output
    assert f"python train.py --task quadratic --out {out} --ckpt_path last" in output


#: what train.py used to print that a user cannot act on
NOISE = ["Unable to serialize instance", "Tip:", "litlogger", "LeafSpec", "pre-optimization state",
         "exists and is not empty", "No CUDA runtime is found"]


def test_resume_is_quiet_and_continues_the_tensorboard_run(tmp_path):
    out = tmp_path / "q"
    common = ("train.py", "--task", "quadratic", "--out", str(out), "--checkpoint_every", "1", *_tiny())
    first = run(*common, "--trainer.max_steps", "2")
    assert first.returncode == 0, first.stderr
    second = run(*common, "--trainer.max_steps", "4", "--ckpt_path", "last")
    assert second.returncode == 0, second.stderr
    for r in (first, second):
        found = [n for n in NOISE if n in r.stdout + r.stderr]
        assert not found, (found, r.stderr)
    assert [p.name for p in (out / "tb").iterdir()] == ["version_0"]
    assert len(list((out / "tb" / "version_0").glob("events.out.tfevents.*"))) == 2
    third = run(*common, "--trainer.max_steps", "1")  # a fresh run into a used folder: a new version, and a note
    assert third.returncode == 0, third.stderr
    assert sorted(p.name for p in (out / "tb").iterdir()) == ["version_0", "version_1"]
    assert "holds an earlier run; this new run overwrites its checkpoints" in third.stdout
