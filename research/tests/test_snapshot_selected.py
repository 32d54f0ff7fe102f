"""The watcher that keeps every selection of a meta-training run (research/tools/snapshot_selected.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from research.tools.snapshot_selected import main, read_selections, selected_at


def test_selected_at_is_the_last_selection_within_the_budget():
    rows = [(56.0, 25), (70.0, 50), (1700.0, 1900), (1850.0, 2025), (3500.0, 4000)]
    assert selected_at(rows, seconds=30 * 60) == 1900
    assert selected_at(rows, seconds=60 * 60) == 4000
    assert selected_at(rows, steps=2000) == 1900
    assert selected_at(rows) == 4000
    assert selected_at(rows, seconds=10) is None


def test_watch_copies_each_new_selection_until_the_run_ends(tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "selected"
    run.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])

    def select(step: int) -> None:  # what train.py's export does: the .pt first, then its .json
        (run / "optimizer.pt").write_bytes(f"theta of meta-step {step}".encode())
        (run / "optimizer.json").write_text(json.dumps({"global_step": step, "selected_value": 1.0 / step}))

    def trainer() -> None:
        for step in (25, 50):
            select(step)
            time.sleep(0.5)
        proc.wait()  # reaped, so that it is gone (the watcher is not its parent in a real run)

    t = threading.Thread(target=trainer)
    t.start()
    main(["watch", str(run), str(out), "--pid", str(proc.pid), "--every", "0.05"])
    t.join()
    assert [step for _, step in read_selections(out)] == [25, 50]
    assert (out / "step25" / "optimizer.pt").read_bytes() == b"theta of meta-step 25"
    assert json.loads((out / "step50" / "optimizer.json").read_text())["global_step"] == 50
    main(["at", str(out), "--steps", "30", "10"])
    assert capsys.readouterr().out.splitlines() == [f"30 meta-steps\t{out / 'step25'}", "10 meta-steps\tnothing selected"]
