"""Why the STN's SSIM is taken at a coarser scale: mean SSIM to the target 8 of simple candidate outputs.

    OMP_NUM_THREADS=1 python research/experiments/affnist/ssim_scales.py [DATA_DIR]  ->  research/experiments/affnist/ssim_scales.json

Candidates (300 MNIST training 8s not used as the target): ``black`` (the digit removed), ``affine``
(the affNIST-style input, i.e. the identity warp), ``centered`` (the untransformed digit, i.e. a perfect
undoing of the affine map), ``shrunk`` (the centred digit shrunk 2x) and centred 6s and 1s.
Alignment is only worth learning when ``centered`` scores clearly above ``black`` and ``shrunk``.
"""

import json
import sys
from pathlib import Path

import torch

from l2l_torch.affnist import affnist_transform, center_on_canvas
from l2l_torch.data import load_image_dataset
from l2l_torch.tasks.stn import ssim_per_image, warp

x, y = load_image_dataset("mnist", sys.argv[1] if len(sys.argv) > 1 else None, "train")
eights = x[y == 8]
target = center_on_canvas(eights[13:14])  # the default target (STNFamily.target_index = 13)
centered = center_on_canvas(eights[100:400])
cands = {"black": torch.zeros_like(centered), "affine": affnist_transform(eights[100:400], 0)[0],
         "centered": centered, "shrunk": warp(centered, torch.tensor([[2.0, 0, 0], [0, 2.0, 0]]).expand(300, 2, 3)),
         "six": center_on_canvas(x[y == 6][:300]), "one": center_on_canvas(x[y == 1][:300])}
rows = []
for scale, blur in [(1, 0.0), (1, 1.0), (2, 0.0), (2, 1.0), (2, 2.0)]:
    row = {"ssim_scale": scale, "ssim_blur": blur}
    row.update({k: round(float(ssim_per_image(v, target, 11, scale, blur).mean()), 4) for k, v in cands.items()})
    rows.append(row)
    print(row)
Path(__file__).with_suffix(".json").write_text(json.dumps(rows, indent=1))
