"""Which parameter tensor makes a learned optimizer's first step raise the loss of a CIFAR-10 conv+dense CNN.

    L2L_DATA_DIR=../shared/data python scripts/first_step.py CKPT [CKPT ...] --out results/NAME/first_step.json

On one held-out CNN instance (seed ``--seed``, the first test seed by default), take one step with the learned
optimizer from the initial params on one batch, then, per parameter tensor, apply that tensor's update alone and
measure the loss on the next batch. Prints a table per checkpoint (update RMS, param RMS, loss with only that
tensor updated) and writes the figures as JSON. Tuned Adam's first step (lr 0.001) is a sign step of 1e-3 per
coordinate, shown for scale.
"""

from __future__ import annotations

import argparse
import json

import torch

from l2l_torch.checkpoint import load_learned_optimizer
from l2l_torch.tasks.base import TEST_SEED_OFFSET
from tasks.image_classification import ImageClassificationFamily


def first_step(ckpt: str, task, params, buffers, grads, loss_of) -> dict:
    lopt, _ = load_learned_optimizer(ckpt)
    with torch.no_grad():
        new, _ = lopt.step(params, grads, lopt.init_state(params, task.param_kinds()))
    rows = []
    for name, p in params.items():
        update = new[name] - p
        rows.append({"param": name, "shape": list(p.shape),
                     "update_rms": update.pow(2).mean().sqrt().item(), "param_rms": p.pow(2).mean().sqrt().item(),
                     "loss_if_only_this": loss_of({**params, name: new[name]})})
    return {"checkpoint": ckpt, "loss_all_updated": loss_of(new), "tensors": rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--seed", type=int, default=TEST_SEED_OFFSET)
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    family = ImageClassificationFamily(dataset="cifar10", source="folder", model="convdense", hidden=[20],
                                       batch_size=200, train_eval_size=2000, eval_batch_size=2000)
    task = family.sample(args.seed)
    params, buffers = task.init_params()
    gen = torch.Generator(device=task.device).manual_seed(0)
    batch, next_batch = task.sample_batch("train", gen), task.sample_batch("train", gen)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss, _ = task.loss(leaves, buffers, batch)
    grads = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))

    def loss_of(p) -> float:
        with torch.no_grad():
            return task.loss(p, buffers, next_batch)[0].item()

    out = {"task": family.describe(), "seed": args.seed, "loss_before": loss_of(params), "results": []}
    print(f"CIFAR-10 conv+dense, seed {args.seed}: loss on the next batch before the step {out['loss_before']:.3f}")
    for ckpt in args.checkpoints:
        res = first_step(ckpt, task, params, buffers, grads, loss_of)
        out["results"].append(res)
        print(f"\n{ckpt}: every tensor updated -> {res['loss_all_updated']:.3f}")
        print(f"| param | shape | update RMS | param RMS | loss, only this tensor updated |\n|---|---|---|---|---|")
        for r in res["tensors"]:
            print(f"| {r['param']} | {tuple(r['shape'])} | {r['update_rms']:.2e} | {r['param_rms']:.2e} "
                  f"| {r['loss_if_only_this']:.3f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
