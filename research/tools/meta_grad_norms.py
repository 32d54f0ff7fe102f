"""Meta-gradient norm per task family: how much each family's instances pull on theta in meta-training.

    L2L_DATA_DIR=../shared/data python -m research.tools.meta_grad_norms CKPT --config lopt_small_fc_all --instances 12 \
        --horizon 200 --unroll 50 --out norms.json

Samples ``--instances`` meta-training instances of the config's task family (its ``model.task``; seeds from
``--seed``, as meta-training draws them), unrolls each for ``--horizon`` steps in truncations of ``--unroll`` with
the checkpoint's optimizer, and records the norm of every truncation's meta-gradient (meta-weighted, before
clipping, as ``MetaModule`` computes it). Prints the median and mean norm per family and per truncation index.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from l2l_torch.checkpoint import load_learned_optimizer
from l2l_torch.cli import task_family_from_config
from l2l_torch.unroll import init_unroll, truncated_unroll


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--config", required=True, help="a config whose model.task is a FamilyMixture")
    ap.add_argument("--instances", type=int, default=12)
    ap.add_argument("--horizon", type=int, default=200)
    ap.add_argument("--unroll", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7_000_000, help="first instance seed (not a training seed)")
    ap.add_argument("--out", help="write the norms as JSON here")
    args = ap.parse_args()
    lopt, _ = load_learned_optimizer(args.checkpoint)
    family = task_family_from_config(args.config, {})
    names = [f.name for f in family.families]
    norms: dict[str, list[list[float]]] = {n: [] for n in names}
    params = list(lopt.parameters())
    for i in range(args.instances):
        seed = args.seed + i
        name = names[family.family_index(seed)]
        state, row = init_unroll(lopt, family.sample(seed), seed), []
        while state.step < args.horizon:
            r = truncated_unroll(lopt, state, min(args.unroll, args.horizon - state.step))
            grads = torch.autograd.grad(r.meta_loss, params, allow_unused=True)
            row.append(float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads if g is not None]))))
            state = r.state
        norms[name].append(row)
        print(f"instance {seed} ({name}): " + " ".join(f"{v:.3g}" for v in row), flush=True)
    print("\n| family | instances | median norm | mean norm | median per truncation |\n|---|---|---|---|---|")
    for n, rows in norms.items():
        if rows:
            flat = [v for row in rows for v in row]
            per_t = [statistics.median(col) for col in zip(*rows, strict=False)]
            print(f"| {n} | {len(rows)} | {statistics.median(flat):.3g} | {statistics.fmean(flat):.3g} | "
                  + " / ".join(f"{v:.3g}" for v in per_t) + " |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "config": args.config, "horizon": args.horizon,
                       "unroll": args.unroll, "norms": norms}, f, indent=1)


if __name__ == "__main__":
    main()
