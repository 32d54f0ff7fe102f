"""Kill a running meta-training with SIGKILL, resume it with ``--ckpt_path last``, and check it.

    python -m research.tools.kill_resume --out research/experiments/reliability

1. Runs ``train.py --task quadratic`` uninterrupted to ``--steps`` (the reference).
2. Runs it again in a subprocess and SIGKILLs it ``--kills`` times, each time once the last
   checkpoint has passed a point part way through and after a random extra delay (so the kill
   can land anywhere, also during a checkpoint write), then resumes with ``--ckpt_path last``.
3. Checks, for every restart, that the checkpoint left behind loads, that the resumed run starts at
   that checkpoint's global step and with bit-identical theta (from ``OUT/restarts.jsonl``, written
   by :class:`l2l_torch.reliability.RestartLog`), that the run ends at ``--steps``, and that its final
   theta equals the uninterrupted run's (the in-flight optimizees, the meta-optimizer state and the
   task counter are restored, so resuming loses nothing but the work since the checkpoint).

Writes ``kill_resume.json`` to ``--out`` and exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from l2l_torch.reliability import theta_digest  # noqa: E402


def train_cmd(out: Path, a: argparse.Namespace, resume: bool = False) -> list[str]:
    cmd = [sys.executable, str(REPO / "train.py"), "--task", a.task, "--out", str(out),
           "--checkpoint_every", str(a.checkpoint_every), "--trainer.max_steps", str(a.steps),
           "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
           "--model.truncation.horizon", str(a.horizon), "--model.truncation.unroll", str(a.unroll),
           "--model.val_every", str(a.val_every), "--model.val_tasks", "2", "--model.val_horizon", "20"]
    return cmd + (["--ckpt_path", "last"] if resume else [])


def read_ckpt(path: Path) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return {"global_step": int(ckpt["global_step"]), "theta_sha256": theta_digest(ckpt["state_dict"], "lopt."),
            "next_task": int(ckpt["l2l"]["next_task"]),
            "finite": all(bool(torch.isfinite(v).all()) for v in ckpt["state_dict"].values())}


def last_step(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    except Exception:  # not written yet
        return -1


def n_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def run_and_kill(cmd: list[str], last: Path, restarts: Path, new_ckpts: int, every: int, max_delay: float,
                 log) -> dict:
    """Start ``cmd``; once it has started training (a new line in ``restarts``) and written ``new_ckpts``
    checkpoints of its own, wait a random delay and SIGKILL it."""
    seen = n_lines(restarts)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.time()

    def wait(cond, what):
        while not cond():
            if proc.poll() is not None:
                raise RuntimeError(f"training ended (rc {proc.returncode}) before {what}; use more --steps")
            time.sleep(0.02)

    wait(lambda: n_lines(restarts) > seen, "it started")
    start = json.loads(restarts.read_text().splitlines()[-1])["global_step"]
    wait(lambda: last_step(last) >= start + new_ckpts * every, f"step {start + new_ckpts * every}")
    delay = random.uniform(0, max_delay)
    time.sleep(delay)
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return {"killed": alive, "returncode": proc.returncode, "seconds_before_kill": round(time.time() - t0, 2),
            "extra_delay_s": round(delay, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="research/experiments/reliability", help="where kill_resume.json goes")
    p.add_argument("--work", help="folder for the training runs (default: a temporary folder)")
    p.add_argument("--task", default="quadratic")
    p.add_argument("--steps", type=int, default=400, help="meta-steps of the whole run")
    p.add_argument("--kills", type=int, default=2, help="SIGKILLs during the run")
    p.add_argument("--checkpoint_every", type=int, default=10)
    p.add_argument("--horizon", type=int, default=40)
    p.add_argument("--unroll", type=int, default=10)
    p.add_argument("--val_every", type=int, default=50)
    p.add_argument("--max_delay", type=float, default=1.0, help="random extra seconds before each kill")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    random.seed(a.seed)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="kill_resume_"))
    ref_dir, run_dir = work / "reference", work / "killed"
    for d in (ref_dir, run_dir):
        shutil.rmtree(d, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    log = open(work / "train.log", "w")
    t0 = time.time()
    subprocess.run(train_cmd(ref_dir, a), stdout=log, stderr=subprocess.STDOUT, check=True)
    reference = read_ckpt(ref_dir / "checkpoints" / "last.ckpt")

    last = run_dir / "checkpoints" / "last.ckpt"
    events, checks = [], {}
    for i in range(a.kills):
        ev = run_and_kill(train_cmd(run_dir, a, resume=i > 0), last, run_dir / "restarts.jsonl", 2,
                          a.checkpoint_every, a.max_delay, log)
        ev["left_behind"] = read_ckpt(last)  # the checkpoint the kill left: must load
        events.append(ev)
    proc = subprocess.run(train_cmd(run_dir, a, resume=True), stdout=log, stderr=subprocess.STDOUT)
    final = read_ckpt(last)
    restarts = [json.loads(line) for line in (run_dir / "restarts.jsonl").read_text().splitlines()]
    for i, ev in enumerate(events):
        r = restarts[i + 1] if i + 1 < len(restarts) else {}  # restart i+1 resumed from what kill i left
        ev["restart"] = r
        checks[f"restart_{i + 1}_step_continues"] = r.get("global_step") == ev["left_behind"]["global_step"] > 0
        checks[f"restart_{i + 1}_theta_equals_checkpoint"] = r.get("theta_sha256") == ev["left_behind"]["theta_sha256"]
        checks[f"kill_{i + 1}_was_sigkill"] = ev["killed"] and ev["returncode"] == -signal.SIGKILL
    checks["one_restart_per_kill"] = len(restarts) == a.kills + 1
    checks["resumed_run_exit_0"] = proc.returncode == 0
    checks["final_step_reached"] = final["global_step"] == a.steps == reference["global_step"]
    checks["final_theta_equals_uninterrupted_run"] = final["theta_sha256"] == reference["theta_sha256"]
    checks["checkpoints_finite"] = final["finite"] and all(e["left_behind"]["finite"] for e in events)
    result = {"command": "python -m research.tools.kill_resume " + " ".join(sys.argv[1:] if argv is None else argv),
              "settings": {k: v for k, v in vars(a).items() if k not in ("out", "work")},
              "reference_final": reference, "resumed_final": final, "kills": events,
              "restarts": restarts, "checks": checks, "passed": all(checks.values()),
              "seconds": round(time.time() - t0, 1), "torch": torch.__version__}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kill_resume.json").write_text(json.dumps(result, indent=1) + "\n")
    for k, v in checks.items():
        print(f"{'ok  ' if v else 'FAIL'} {k}")
    print(f"wrote {out / 'kill_resume.json'} ({'passed' if result['passed'] else 'FAILED'})")
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
