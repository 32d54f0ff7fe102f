"""Keep every optimizer that validation selects during one meta-training run, with the run time it was selected at.

    python -m research.tools.snapshot_selected watch RUN_DIR OUT_DIR --pid PID [--every 2]
    python -m research.tools.snapshot_selected at OUT_DIR --minutes 30 60 120 [--steps 2000]

``train.py`` overwrites ``RUN_DIR/optimizer.pt`` (and ``optimizer.json``) whenever a validation beats the best so far,
so at the end only the run's overall selection is left. This watcher polls ``optimizer.json`` until process ``PID``
exits and, each time it names a new selection, copies ``optimizer.pt`` to ``OUT_DIR/step<N>/``, appending a line to
``OUT_DIR/selections.tsv``: seconds since the watcher started, meta-step, selected metric. ``N`` and the copy's
``optimizer.json`` are read from the copied file's own metadata, not from the run's ``optimizer.json``: the run may
select again between the two reads, and the ``.pt`` (written atomically, before its ``.json``) is then the newer.
What a shorter time budget would have selected is then the last line before that budget, e.g. the 30- and 60-minute
points of a 120-minute run (start the watcher with the run: its clock and the trainer's time budget both start with
the process, within seconds).
``at`` prints those: for each budget in minutes (or in meta-steps), the folder of the optimizer selected by then.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from l2l_torch.checkpoint import read_checkpoint, write_meta_json


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def selected_step(meta_path: Path) -> int | None:
    """The meta-step ``optimizer.json`` names, or None while it is absent or half-written (only a sign that the run
    selected again: what is kept is read from the copied ``.pt``, :func:`snapshot`)."""
    try:
        return int(json.loads(meta_path.read_text())["global_step"])
    except (OSError, ValueError):
        return None


def selected_at(rows: list[tuple[float, int]], seconds: float = float("inf"), steps: float = float("inf")) -> int | None:
    """The meta-step selected by a budget of ``seconds`` or ``steps`` (the last of ``rows``, (seconds, meta-step) in
    the order written, within it); None when nothing was selected by then."""
    within = [step for t, step in rows if t <= seconds and step <= steps]
    return within[-1] if within else None


def read_selections(out_dir: Path) -> list[tuple[float, int]]:
    """The (seconds, meta-step) rows of ``out_dir/selections.tsv``."""
    lines = (out_dir / "selections.tsv").read_text().splitlines()[1:]
    return [(float(t), int(step)) for t, step, _ in (line.split("\t") for line in lines)]


def snapshot(run_dir: Path, out_dir: Path) -> tuple[int, float, Path]:
    """Copy ``run_dir/optimizer.pt`` to ``out_dir/step<N>/`` with its metadata as ``optimizer.json`` beside it, N
    being the meta-step recorded in the copied file. Returns (N, selected value, the folder)."""
    incoming = out_dir / "incoming.pt"
    shutil.copy2(run_dir / "optimizer.pt", incoming)  # one open file: a rename in the run during the copy is harmless
    meta = read_checkpoint(incoming)["meta"]
    step = int(meta["global_step"])
    dest = out_dir / f"step{step}"
    dest.mkdir(exist_ok=True)
    os.replace(incoming, dest / "optimizer.pt")
    write_meta_json(dest / "optimizer.pt", meta)
    return step, float(meta.get("selected_value") or float("nan")), dest


def watch(run_dir: Path, out_dir: Path, pid: int, every: float = 2.0) -> None:
    """Copy each new selection of the run in ``run_dir`` to ``out_dir/step<N>/`` and log it in
    ``out_dir/selections.tsv``, polling every ``every`` seconds until process ``pid`` exits."""
    out_dir.mkdir(parents=True, exist_ok=True)
    start, last = time.monotonic(), None
    table = out_dir / "selections.tsv"
    table.write_text("seconds\tmeta_step\tselected_value\n")
    while True:
        running = alive(pid)  # read before the poll, so a selection written just before the exit is kept
        named = selected_step(run_dir / "optimizer.json")
        if named is not None and named != last:
            step, value, _ = snapshot(run_dir, out_dir)
            if step != last:
                with table.open("a") as f:
                    f.write(f"{time.monotonic() - start:.0f}\t{step}\t{value:.6g}\n")
                last = step
        if not running:
            break
        time.sleep(every)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("watch", help="copy each selection of a running meta-training")
    w.add_argument("run_dir", type=Path, help="the run's output folder (--out of train.py)")
    w.add_argument("out_dir", type=Path, help="where the selections are copied")
    w.add_argument("--pid", type=int, required=True, help="the meta-training process; the watcher stops with it")
    w.add_argument("--every", type=float, default=2.0, help="seconds between polls (default 2)")
    at = sub.add_parser("at", help="the selection a shorter budget would have made")
    at.add_argument("out_dir", type=Path, help="the watcher's folder")
    at.add_argument("--minutes", type=float, nargs="*", default=[], help="time budgets")
    at.add_argument("--steps", type=int, nargs="*", default=[], help="meta-step budgets")
    a = ap.parse_args(argv)
    if a.cmd == "at":
        rows = read_selections(a.out_dir)
        for budget, kw in [(f"{m:g} min", {"seconds": 60 * m}) for m in a.minutes] + \
                          [(f"{s} meta-steps", {"steps": s}) for s in a.steps]:
            step = selected_at(rows, **kw)
            print(f"{budget}\t{'nothing selected' if step is None else a.out_dir / f'step{step}'}")
        return
    watch(a.run_dir, a.out_dir, a.pid, a.every)


if __name__ == "__main__":
    main()
