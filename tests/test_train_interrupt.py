"""Ctrl-C (SIGINT) or SIGTERM during ``train.py``: the run stops after the meta-step in progress and leaves a
resumable ``checkpoints/last.ckpt`` and an exported ``optimizer.pt``, even long before its first scheduled
checkpoint or validation."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from tests.helpers import REPO

MAX_STEPS = 100_000
#: a small quadratic run whose checkpoints and validations are scheduled far beyond where it is stopped
SMALL = ["--checkpoint_every", "1000", "--model.val_every", "1000", "--model.val_tasks", "1",
         "--model.val_horizon", "2", "--model.truncation.unroll", "2", "--model.truncation.horizon", "4", "--model.task.init_args.num", "2"]


class Output:
    """Collects a process's (combined) output in a thread, so that a test can wait for a marker in it."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.chunks = proc, []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while chunk := self.proc.stdout.read1(4096):
            self.chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 300) -> re.Match:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = re.search(pattern, self.text)
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.proc.kill()
        pytest.fail(f"no {pattern!r} in the output:\n{self.text[-3000:]}")


def _start(out) -> tuple[subprocess.Popen, Output]:
    proc = subprocess.Popen([sys.executable, "train.py", "--task", "quadratic", "--out", str(out),
                             "--trainer.max_steps", str(MAX_STEPS), *SMALL],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, Output(proc)


def _interrupt_after_two_meta_steps(out, sig: int) -> tuple[int, str]:
    proc, output = _start(out)
    try:
        # the progress bar reaches meta-step 2 of MAX_STEPS: at least one meta-step is done, none is checkpointed
        output.wait_for(rf"meta-step:[^\r\n]*\b([2-9]|\d\d+)/{MAX_STEPS}\b")
        assert not (out / "checkpoints" / "last.ckpt").exists()
        proc.send_signal(sig)
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    output.thread.join(timeout=10)
    return rc, output.text


def test_ctrl_c_saves_a_resumable_checkpoint_and_the_optimizer(tmp_path):
    out = tmp_path / "q"
    rc, text = _interrupt_after_two_meta_steps(out, signal.SIGINT)
    assert rc == 130, text[-3000:]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    step = int(ckpt["global_step"])
    assert 2 <= step < 1000 and f"interrupted at meta-step {step}: saved {out / 'checkpoints' / 'last.ckpt'}" in text
    assert "Traceback" not in text
    # nothing was validated yet: the current optimizer is exported, and optimizer.json says it is not validated
    meta = json.loads((out / "optimizer.json").read_text())
    assert (out / "optimizer.pt").is_file() and meta["global_step"] == step
    assert meta["validated"] is False and meta["selected_by"] == "interrupted before any validation"
    assert f"python train.py --task quadratic --out {out} --ckpt_path last" in text

    r = subprocess.run([sys.executable, "train.py", "--task", "quadratic", "--out", str(out), *SMALL,
                        "--trainer.max_steps", str(step + 2), "--ckpt_path", "last"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == step + 2
    restarts = [json.loads(x) for x in (out / "restarts.jsonl").read_text().splitlines()]
    assert [x["global_step"] for x in restarts] == [0, step]
    assert [p.name for p in (out / "tb").iterdir()] == ["version_0"]


def test_sigterm_saves_too(tmp_path):
    out = tmp_path / "q"
    rc, text = _interrupt_after_two_meta_steps(out, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, text[-3000:]
    step = int(torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"])
    assert 2 <= step < 1000 and "SIGTERM: stopping after meta-step" in text
    assert json.loads((out / "optimizer.json").read_text())["global_step"] == step


def test_ctrl_c_during_a_validation_lets_it_count(tmp_path):
    """Ctrl-C during a validation: it finishes (a candidate for optimizer.pt), then the run stops and saves."""
    out = tmp_path / "q"
    proc = subprocess.Popen([sys.executable, "train.py", "--task", "quadratic", "--out", str(out),
                             "--trainer.max_steps", str(MAX_STEPS), *SMALL, "--model.val_every", "2",
                             "--model.val_tasks", "4", "--model.val_horizon", "2000",
                             "--trainer.num_sanity_val_steps", "0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = Output(proc)
    try:
        output.wait_for(r"validating meta-step 2 \(held-out tasks\)")
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    output.thread.join(timeout=10)
    assert rc == 130 and "Ctrl-C: finishing the validation of meta-step 2" in output.text, output.text[-3000:]
    meta = json.loads((out / "optimizer.json").read_text())
    assert meta["validated"] and meta["global_step"] == 2
    assert (out / "checkpoints" / "best-step=2.ckpt").is_file()
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


def test_checkpoints_are_written_before_the_first_validation(tmp_path):
    """``--checkpoint_every 2`` writes last.ckpt at meta-steps 2, 4, ... even though no validation ran yet: a
    SIGKILL (no chance to save anything) after meta-step 3 leaves the checkpoint of meta-step 2 or later."""
    out = tmp_path / "q"
    proc = subprocess.Popen([sys.executable, "train.py", "--task", "quadratic", "--out", str(out),
                             "--trainer.max_steps", str(MAX_STEPS), *SMALL, "--checkpoint_every", "2"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = Output(proc)
    try:
        # the bar shows meta-step 3 after the hooks of meta-step 2 (its checkpoint included) have run
        output.wait_for(rf"meta-step:[^\r\n]*\b([3-9]|\d\d+)/{MAX_STEPS}\b")
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    step = int(torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"])
    assert step >= 2 and step % 2 == 0
    assert not (out / "optimizer.pt").exists()  # nothing validated, and a SIGKILL exports nothing


def test_interrupt_keeps_the_best_validated_optimizer(tmp_path):
    """After a validation, an interrupt leaves optimizer.pt as it was: the best validated optimizer so far."""
    from l2l_torch.callbacks import ExportBestOptimizer

    export = ExportBestOptimizer(dirpath=str(tmp_path))
    export.best = 1.5
    assert "best validated optimizer so far (val/loss 1.5)" in export.export_on_interrupt(None, None)
    assert not (tmp_path / "optimizer.pt").exists()
