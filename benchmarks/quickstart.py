"""Time the README's two first commands on this machine: ``python train.py --task quadratic`` and the test suite
(``bash scripts/test.sh``, which installs the project into ``.venv`` first when it is not there yet).

    python benchmarks/quickstart.py --out DIR                 # DIR/quickstart.json
    python benchmarks/quickstart.py --out DIR --no-tests      # the training command only

Each command runs as a fresh subprocess from the repository root, as a user would type it; the figures are wall
seconds, with the number of meta-steps the training run completed and the one it exported (``optimizer.json``).
Nothing is written outside ``--out`` (the training run's own folder is ``DIR/runs/quadratic``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, proc


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for quickstart.json and the training run")
    p.add_argument("--no-tests", action="store_true", help="time the training command only")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    run_dir = a.out / "runs" / "quadratic"
    seconds, proc = timed([sys.executable, "train.py", "--task", "quadratic", "--out", str(run_dir)], env)
    if proc.returncode != 0:
        raise SystemExit(f"train.py failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    exported = json.loads((run_dir / "optimizer.json").read_text())
    import torch

    done = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    max_steps = 2500  # configs/quadratic.yaml
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "omp_num_threads": env.get("OMP_NUM_THREADS")},
              "train_quadratic": {"command": "python train.py --task quadratic", "seconds": round(seconds, 1),
                                  "meta_steps_done": done,
                                  "full_run_minutes_projected": round(seconds / 60 * max_steps / max(done, 1), 1),
                                  "exported_meta_step": exported.get("global_step", exported.get("meta_step")),
                                  "last_lines": proc.stdout.strip().splitlines()[-6:]}}
    if not a.no_tests:
        seconds, proc = timed(["bash", "scripts/test.sh", "-p", "no:cacheprovider"], env)
        result["test_suite"] = {"command": "bash scripts/test.sh", "seconds": round(seconds, 1),
                                "returncode": proc.returncode, "summary": proc.stdout.strip().splitlines()[-1:]}
    (a.out / "quickstart.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
