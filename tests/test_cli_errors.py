"""Bad input to train.py / evaluate.py: one clear `error: ...` line, non-zero exit, no traceback,
and no existing file touched. One test per kind of bad input."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import evaluate
import train
from l2l_torch import LSTMOptimizer, save_learned_optimizer
from tests.helpers import REPO, SHARED_DATA, needs_data, smoke_train

FMNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz")


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folder``: (size, mtime_ns, sha256)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns,
                                          hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def out(tmp_path):
    """An existing output folder with a file in it that no failing command may touch."""
    d = tmp_path / "out"
    d.mkdir()
    (d / "keep.txt").write_text("previous results\n")
    return d


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("L2L_OFFLINE", "1")  # a missing dataset must fail here, not try the network
    monkeypatch.setenv("L2L_CACHE_DIR", str(tmp_path / "cache"))


def fails(main, args, capsys, *folders: Path) -> str:
    """Run ``main(args)`` in-process; check the one-line error, exit code 2 and untouched ``folders``."""
    before = [snapshot(f) for f in folders]
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "torchmetrics"):
        for h in logging.getLogger(name).handlers:
            if isinstance(h, logging.StreamHandler):
                h.stream = sys.stderr  # as in a real process (pytest swaps sys.stderr per test)
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0], err
    assert "Traceback" not in err
    assert [snapshot(f) for f in folders] == before
    return errors[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real (tiny) quadratic meta-training run: OUT/checkpoints/last.ckpt and OUT/optimizer.pt."""
    return smoke_train("quadratic", tmp_path_factory.mktemp("run") / "q", "--trainer.fast_dev_run", "false",
                       "--trainer.max_steps", "2", "--checkpoint_every", "1", "--model.val_every", "2",
                       "--model.truncation.horizon", "4", "--model.truncation.unroll", "2")


# ---------------------------------------------------------------- unknown task / config key
def test_unknown_task_subprocess(out):
    """The real process: exit code, a single stderr line, no traceback."""
    for script in ("train.py", "evaluate.py"):
        before = snapshot(out)
        r = subprocess.run([sys.executable, script, "--task", "quadratc", "--out", str(out), "--checkpoint", "x"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "error: unknown task 'quadratc'" in r.stderr
        assert snapshot(out) == before


@pytest.mark.parametrize("key", ["--model.horizn", "--trainer.max_step", "--model.lopt.init_args.hiden_size"])
def test_mistyped_config_key(key, out, capsys):
    msg = fails(train.main, ["--task", "quadratic", "--out", out, key, "5"], capsys, out)
    assert "unrecognized arguments" in msg or "does not accept" in msg or key.split(".")[-1] in msg, msg


def test_bad_config_value(out, capsys):
    msg = fails(train.main, ["--task", "quadratic", "--out", out, "--trainer.max_steps", "many"], capsys, out)
    assert "max_steps" in msg


# ---------------------------------------------------------------- data
def _fmnist_args(out, data_dir):
    return ["--task", "fmnist_t1", "--out", out, "--model.task.init_args.data_dir", data_dir]


def _tiny_optimizer(tmp_path) -> Path:
    ckpt = tmp_path / "tiny.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=4), ckpt, {"task": "fmnist_t1"})
    return ckpt


def test_missing_data_folder(tmp_path, out, capsys):
    msg = fails(train.main, _fmnist_args(out, tmp_path / "no_such_folder"), capsys, out)
    assert "FashionMNIST not found in" in msg and "no_such_folder" in msg
    msg = fails(evaluate.main, ["--task", "fmnist_t1", "--checkpoint", _tiny_optimizer(tmp_path), "--out", out,
                                "--set", f"data_dir={tmp_path / 'no_such_folder'}"], capsys, out)
    assert "FashionMNIST not found in" in msg


def test_evaluate_checks_the_checkpoint_before_the_data(tmp_path, out, capsys, monkeypatch):
    """A wrong --checkpoint is reported before the task's data is loaded (which can take a while)."""
    import l2l_torch.cli

    def no_data(*args, **kwargs):
        raise AssertionError("the task's data was loaded before the checkpoint was checked")

    monkeypatch.setattr(l2l_torch.cli, "task_family_from_config", no_data)
    msg = fails(evaluate.main, ["--task", "fmnist_t1", "--checkpoint", tmp_path / "nope.pt", "--out", out], capsys, out)
    assert msg == f"error: checkpoint not found: {tmp_path / 'nope.pt'}"
    msg = fails(evaluate.main, ["--task", "fmnist_t1", "--checkpoint", _not_a_checkpoint(tmp_path), "--out", out],
                capsys, out)
    assert "is not a readable learned-optimizer checkpoint" in msg


def test_data_path_is_a_file(tmp_path, out, capsys):
    f = tmp_path / "data.txt"
    f.write_text("not a folder")
    msg = fails(train.main, _fmnist_args(out, f), capsys, out, tmp_path)
    assert "not found" in msg


@needs_data("FashionMNIST")
def test_damaged_dataset_file(tmp_path, out, capsys):
    """A dataset folder whose training images file has the wrong size (a truncated copy)."""
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for fn in FMNIST_FILES:
        src = SHARED_DATA / "FashionMNIST" / "raw" / fn
        if fn == "train-images-idx3-ubyte.gz":
            (raw / fn).write_bytes(src.read_bytes()[: 100_000])
        else:
            os.symlink(src, raw / fn)
    msg = fails(train.main, _fmnist_args(out, tmp_path / "data"), capsys, out, tmp_path / "data")
    assert "train-images-idx3-ubyte.gz is damaged" in msg


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_path_does_not_exist(tmp_path, out, capsys):
    msg = fails(train.main, ["--task", "quadratic", "--out", out, "--ckpt_path", tmp_path / "nope.ckpt"], capsys, out)
    assert msg == f"error: checkpoint not found: {tmp_path / 'nope.ckpt'}"
    msg = fails(train.main, ["--task", "quadratic", "--out", out, "--ckpt_path", "last"], capsys, out)
    assert "no checkpoint to resume" in msg
    msg = fails(evaluate.main, ["--task", "quadratic", "--checkpoint", tmp_path / "nope.pt", "--out", out], capsys, out)
    assert "checkpoint not found" in msg


def _not_a_checkpoint(tmp_path) -> Path:
    p = tmp_path / "notes.ckpt"
    p.write_text("this is a text file\n")
    return p


def _truncated(path: Path, tmp_path: Path) -> Path:
    p = tmp_path / ("truncated" + path.suffix)
    data = path.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def test_not_a_checkpoint_or_truncated_train(run_dir, tmp_path, capsys):
    resume_run = run_dir
    for bad in (_not_a_checkpoint(tmp_path), _truncated(run_dir / "checkpoints" / "last.ckpt", tmp_path)):
        msg = fails(train.main, ["--task", "quadratic", "--out", resume_run, "--ckpt_path", bad], capsys, resume_run)
        assert "is not a readable Lightning checkpoint (corrupt, truncated" in msg
    msg = fails(train.main, ["--task", "quadratic", "--out", resume_run, "--ckpt_path", run_dir / "optimizer.pt"],
                capsys, resume_run)
    assert "is a learned-optimizer file, not a training checkpoint" in msg


def test_not_a_checkpoint_or_truncated_evaluate(run_dir, tmp_path, out, capsys):
    for bad in (_not_a_checkpoint(tmp_path), _truncated(run_dir / "optimizer.pt", tmp_path)):
        msg = fails(evaluate.main, ["--task", "quadratic", "--checkpoint", bad, "--out", out], capsys, out)
        assert "is not a readable learned-optimizer checkpoint (corrupt, truncated" in msg
    msg = fails(evaluate.main, ["--task", "quadratic", "--checkpoint", run_dir / "checkpoints" / "last.ckpt",
                                "--out", out], capsys, out)
    assert "Lightning training checkpoint" in msg and "l2l_torch.export" in msg


def test_checkpoint_of_another_architecture(run_dir, tmp_path, out, capsys):
    # resuming with a different optimizer config than the run's checkpoint
    msg = fails(train.main, ["--task", "quadratic", "--out", run_dir, "--ckpt_path", "last",
                             "--model.lopt.init_args.hidden_size", "8"], capsys, run_dir)
    assert "another learned-optimizer architecture" in msg and "hidden_size 20 vs 8" in msg
    # a checkpoint written before an option existed holds the option's default: no difference there
    from l2l_torch.reliability import check_resume_checkpoint

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["l2l"]["lopt_config"].pop("normalization")
    torch.save(ckpt, tmp_path / "older.ckpt")
    check_resume_checkpoint(tmp_path / "older.ckpt", LSTMOptimizer(hidden_size=20, preprocess="none"))
    with pytest.raises(Exception, match="normalization 'none' vs 'layer'"):
        check_resume_checkpoint(tmp_path / "older.ckpt",
                                LSTMOptimizer(hidden_size=20, preprocess="none", normalization="layer"))
    # a learned-optimizer file whose weights do not fit its architecture, and an unknown architecture
    obj = torch.load(run_dir / "optimizer.pt", weights_only=True)
    torch.save({**obj, "config": {**obj["config"], "num_layers": 3}}, tmp_path / "mismatch.pt")
    msg = fails(evaluate.main, ["--task", "quadratic", "--checkpoint", tmp_path / "mismatch.pt", "--out", out],
                capsys, out)
    assert "weights do not match architecture 'lstm'" in msg
    torch.save({**obj, "arch": "transformer"}, tmp_path / "other.pt")
    msg = fails(evaluate.main, ["--task", "quadratic", "--checkpoint", tmp_path / "other.pt", "--out", out],
                capsys, out)
    assert "unknown architecture 'transformer'" in msg


def test_checkpoint_cannot_handle_task(tmp_path, out, capsys):
    """A per-kind optimizer meta-trained on conv parameters only, evaluated on a dense task."""
    ckpt = tmp_path / "conv_only.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=4, per_kind=True), ckpt, {"param_kinds": ["conv"]})
    msg = fails(evaluate.main, ["--task", "quadratic", "--checkpoint", ckpt, "--out", out], capsys, out)
    assert "cannot optimize task 'quadratic'" in msg and "'dense' parameters was never meta-trained" in msg


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders without read permission")
def test_unreadable_data_folder(tmp_path, out, capsys):
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    (tmp_path / "data").chmod(0)
    try:
        msg = fails(train.main, _fmnist_args(out, tmp_path / "data"), capsys, out)
    finally:
        (tmp_path / "data").chmod(0o755)
    assert "FashionMNIST" in msg


# ---------------------------------------------------------------- numbers out of range
@pytest.mark.parametrize("flag, value, expected", [
    ("--seeds", "0", "argument --seeds: must be a positive integer, got 0"),
    ("--steps", "-3", "argument --steps: must be a positive integer, got -3"),
    ("--tune-seeds", "0", "argument --tune-seeds: must be a positive integer, got 0"),
    ("--tune-steps", "2.5", "argument --tune-steps: expected an integer, got '2.5'"),
    ("--epoch-steps", "0", "argument --epoch-steps: must be a positive integer, got 0"),
    ("--average", "1", "argument --average: must be in [0, 1), got 1"),
    ("--lr-grid", "0.1,-1", "--lr-grid: every learning rate must be a number > 0, got -1"),
])
def test_evaluate_number_out_of_range(flag, value, expected, tmp_path, out, capsys):
    ckpt = tmp_path / "tiny.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=4, preprocess="none"), ckpt, {"task": "quadratic"})
    msg = fails(evaluate.main, ["--task", "quadratic", "--checkpoint", ckpt, "--out", out, flag, value], capsys, out)
    assert msg.startswith(f"error: {expected}"), msg


@pytest.mark.parametrize("args, expected", [
    (["--trainer.max_steps", "-5"], "--trainer.max_steps: must be an integer >= 0 (or -1: no limit), got -5"),
    (["--trainer.max_epochs", "-2"], "--trainer.max_epochs: must be an integer >= 0 (or -1: no limit), got -2"),
    (["--trainer.max_time", "30m"], "--trainer.max_time: expected a duration DD:HH:MM:SS"),
    (["--trainer.max_time", "00:00:00:00"], "--trainer.max_time: expected a non-zero duration"),
    (["--checkpoint_every", "0"], "argument --checkpoint_every: must be a positive integer, got 0"),
    (["--model.truncation.horizon", "-3"], "--model.truncation.horizon: must be a positive integer, got -3"),
    (["--model.truncation.unroll", "0"], "--model.truncation.unroll: must be a positive integer, got 0"),
    (["--model.val_every", "0"], "--model.val_every: must be a positive integer, got 0"),
    (["--optimizer.lr", "0"], "--optimizer.lr: must be a number > 0, got 0"),
    (["--model.tasks_per_step", "0"], "--model.tasks_per_step: must be a positive integer, got 0"),
])
def test_train_number_out_of_range(args, expected, out, capsys):
    msg = fails(train.main, ["--task", "quadratic", "--out", out, *args], capsys, out)
    assert msg.startswith(f"error: {expected}"), msg


def test_number_errors_subprocess(tmp_path, out):
    """The real processes: exit code 2 and a single stderr line, for the three commands a user reported."""
    ckpt = tmp_path / "tiny.pt"
    save_learned_optimizer(LSTMOptimizer(hidden_size=4, preprocess="none"), ckpt, {"task": "quadratic"})
    evaluate_args = ["evaluate.py", "--task", "quadratic", "--checkpoint", str(ckpt), "--out", str(out)]
    for cmd in ([*evaluate_args, "--seeds", "0"], [*evaluate_args, "--steps", "-3"],
                ["train.py", "--task", "quadratic", "--out", str(out), "--trainer.max_steps", "-5"]):
        r = subprocess.run([sys.executable, *cmd], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, (cmd, r.stderr)
        assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("error: "), r.stderr
    assert snapshot(out) == {"keep.txt": snapshot(out)["keep.txt"]}


# ---------------------------------------------------------------- unknown task: a short list and a suggestion
def test_unknown_task_suggests_close_names(out, capsys):
    for main in (train.main, evaluate.main):
        msg = fails(main, ["--task", "quadratc", "--out", out, "--checkpoint", "x.pt"], capsys, out)
        assert msg.startswith("error: unknown task 'quadratc'; did you mean 'quadratic'"), msg
        assert len(msg) < 300, msg  # not every task of configs/ when there are many


def test_unknown_task_lists_the_tasks_when_few(tmp_path):
    from l2l_torch.cli import LIST_TASKS_UP_TO, UserError, config_path

    for name in ("quadratic", "regression", "fmnist_t1"):
        (tmp_path / f"{name}.yaml").write_text("model: {}\n")
    with pytest.raises(UserError) as e:
        config_path("regresion", tmp_path)
    assert str(e.value) == ("unknown task 'regresion'; did you mean 'regression'? "
                            "(tasks: fmnist_t1, quadratic, regression)")
    with pytest.raises(UserError) as e:
        config_path("zzz", tmp_path)
    assert str(e.value) == "unknown task 'zzz' (tasks: fmnist_t1, quadratic, regression)"
    for i in range(LIST_TASKS_UP_TO):
        (tmp_path / f"task{i}.yaml").write_text("model: {}\n")
    with pytest.raises(UserError) as e:
        config_path("zzz", tmp_path)
    assert "task0" not in str(e.value) and f"{LIST_TASKS_UP_TO + 3} tasks" in str(e.value)
