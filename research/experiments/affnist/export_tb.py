"""Export the validation scalars of a meta-training run's TensorBoard log to JSON.

    python research/experiments/affnist/export_tb.py runs/affnist_r1 > research/experiments/affnist/meta_training.json
"""

import glob
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

out = {}
for f in sorted(glob.glob(f"{sys.argv[1]}/tb/*/events*")):
    ea = EventAccumulator(f)
    ea.Reload()
    for tag in ("val/loss", "val/stn_ssim", "val/stn_mass_ratio", "meta_train/skipped"):
        if tag in ea.Tags()["scalars"]:
            out[tag] = [{"step": e.step, "value": round(e.value, 5), "wall_time": round(e.wall_time, 1)}
                        for e in ea.Scalars(tag)]
print(json.dumps(out, indent=1))
