"""The watcher that keeps every selection of a meta-training run (research/tools/snapshot_selected.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from l2l_torch.checkpoint import read_checkpoint, save_learned_optimizer
from l2l_torch.learned_optimizers import LSTMOptimizer
from research.tools.snapshot_selected import main, read_selections, selected_at, snapshot


def _write_pt(run, step: int) -> None:
    """A real learned-optimizer file whose metadata says it was selected at meta-step ``step``."""
    save_learned_optimizer(LSTMOptimizer(hidden_size=2, num_layers=1), run / "optimizer.pt",
                           {"global_step": step, "selected_value": 1.0 / step})


def _write_json(run, step: int) -> None:
    (run / "optimizer.json").write_text(json.dumps({"global_step": step, "selected_value": 1.0 / step}))


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
        _write_pt(run, step)
        _write_json(run, step)

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
    assert read_checkpoint(out / "step25" / "optimizer.pt")["meta"]["global_step"] == 25
    assert json.loads((out / "step50" / "optimizer.json").read_text())["global_step"] == 50
    main(["at", str(out), "--steps", "30", "10"])
    assert capsys.readouterr().out.splitlines() == [f"30 meta-steps\t{out / 'step25'}", "10 meta-steps\tnothing selected"]


def test_snapshot_names_the_copy_after_the_file_it_copied_not_the_older_json(tmp_path):
    # the run selected meta-step 50 between the watcher's read of optimizer.json (still 25) and its copy of the .pt
    run, out = tmp_path / "run", tmp_path / "selected"
    run.mkdir(), out.mkdir()
    _write_pt(run, 25), _write_json(run, 25)
    _write_pt(run, 50)
    step, value, dest = snapshot(run, out)
    assert (step, value, dest.name) == (50, 1.0 / 50, "step50")
    assert json.loads((dest / "optimizer.json").read_text())["global_step"] == 50
    assert read_checkpoint(dest / "optimizer.pt")["meta"]["global_step"] == 50
    assert not (out / "step25").exists() and not (out / "incoming.pt").exists()
