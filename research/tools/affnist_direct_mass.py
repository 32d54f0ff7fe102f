"""Is the STN brief's mass goal reachable by an STN at all? Train it with Adam on ``1 - SSIM`` of its 8s PLUS the mass term
on other digits (``STNTask.mass_penalty``: training images of 0, 2, 3, 4, 5, 7, 9; never the test digits) as the
*optimizee's* loss, which the STN brief does not allow a learned optimizer to change, and measure what it gives on unseen
8s, 6s and 1s.

    L2L_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m research.tools.affnist_direct_mass --weights 0,1 \
        --out research/experiments/affnist_mass/direct_mass.json

Same held-out instances as ``evaluate.py --task affnist --seeds 5`` (initial weights and 8s' batches; the other
digits' batches come from a separate generator), Adam at the tuned lr 0.01, 200 steps. Weight 0 is plain Adam and
reproduces the ``adam_tuned`` row of ``research/experiments/affnist_hyper_adam/size/affnist_200_fresh`` (a check of the script).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from l2l_torch.tasks.base import TEST_SEED_OFFSET
from research.tools.stn_aux import OTHER_DIGITS as AUX_DIGITS
from research.tools.stn_aux import AuxSTNFamily as STNFamily


def run(family: STNFamily, weight: float, seeds: int, steps: int, lr: float) -> dict[str, float]:
    finals = []
    for i in range(seeds):
        seed = TEST_SEED_OFFSET + i
        task = family.sample(seed)
        init, buffers = task.init_params(seed)
        params = {k: v.clone().requires_grad_() for k, v in init.items()}
        opt = torch.optim.Adam(params.values(), lr=lr)
        gen = torch.Generator(device=task.device).manual_seed(seed)
        aux_gen = torch.Generator(device=task.device).manual_seed(seed + 1)
        for _ in range(steps):
            loss, _ = task.loss(params, buffers, task.sample_batch("train", gen))
            if weight:
                loss = loss + weight * task.mass_penalty(params, buffers, task.sample_aux(aux_gen))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        finals.append({f"{s}_{k}": v for s in ("test8", "test6", "test1") for k, v in task.evaluate(params, buffers, s).items()})
    return {k: sum(f[k] for f in finals) / seeds for k in finals[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="0,1", help="comma-separated weights of the mass term in the optimizee's loss")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    family = STNFamily(aux_digits=AUX_DIGITS)
    out = {"lr": a.lr, "steps": a.steps, "seeds": a.seeds, "aux_digits": list(AUX_DIGITS), "rows": {}}
    for w in (float(x) for x in a.weights.split(",")):
        out["rows"][f"{w:g}"] = r = run(family, w, a.seeds, a.steps, a.lr)
        print(f"weight {w:g}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items() if "loss" not in k), flush=True)
    Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
