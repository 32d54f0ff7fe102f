"""Summarize a meta-training run from its TensorBoard events: validation per meta-step, wall time.

    python research/experiments/fmnist_t1/summarize_run.py runs/fmnist_t1 > research/experiments/fmnist_t1/meta_train_log.md
"""

import json
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

run = Path(sys.argv[1])
rows: dict[int, dict[str, float]] = {}
t0 = t1 = None
for ev_file in sorted(run.glob("tb/version_*/events.out.tfevents.*")):
    acc = EventAccumulator(str(ev_file), size_guidance={"scalars": 0})
    acc.Reload()
    for tag in acc.Tags()["scalars"]:
        for e in acc.Scalars(tag):
            t0 = e.wall_time if t0 is None else min(t0, e.wall_time)
            t1 = e.wall_time if t1 is None else max(t1, e.wall_time)
            if tag.startswith("val/"):
                rows.setdefault(e.step, {})[tag] = e.value
print(f"# Meta-training log: {run}\n")
print(f"wall time between the first and last logged event: {(t1 - t0) / 60:.1f} min\n")
print("| meta-step | val/loss | val/train_loss | val/accuracy |\n|---:|---:|---:|---:|")
for step in sorted(rows):
    r = rows[step]
    print(f"| {step} | {r.get('val/loss', float('nan')):.4f} | {r.get('val/train_loss', float('nan')):.4f} | "
          f"{r.get('val/accuracy', float('nan')):.4f} |")
sel = run / "optimizer.json"
if sel.is_file():
    meta = json.loads(sel.read_text())
    print(f"\nexported optimizer.pt: meta-step {meta.get('global_step')}, selected by {meta.get('selected_by')} = "
          f"{meta.get('selected_value'):.4f}")
