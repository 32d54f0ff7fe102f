"""Which parameter tensor makes a learned optimizer's first step raise the loss of a CIFAR-10 conv+dense CNN.

    L2L_DATA_DIR=../shared/data python -m research.tools.first_step CKPT [CKPT ...] --out research/experiments/NAME/first_step.json

On one held-out CNN instance of ``configs/cifar_convdense.yaml`` (seed ``--seed``, the first test seed by default),
take one step with the learned optimizer from the initial params on one batch, then, per parameter tensor, apply
that tensor's update alone and measure the loss on the next batch. Prints a table per checkpoint (update RMS, param
RMS, loss with only that tensor updated) and writes the figures as JSON. Tuned Adam's first step (lr 0.001) is a
sign step of 1e-3 per coordinate, for scale.

With ``--rerun STEPS --undo PARAM`` it also trains the held-out instances of ``configs/cifar_convdense.yaml``
(``--seeds``, the evaluation's seeds) for STEPS steps twice per checkpoint, once as it is and once with PARAM's first
update undone (the optimizer's state still advances), and reports both final training losses: a counterfactual
that measures what that one update costs by the end of a run. A diagnostic, not an optimizer to use.
"""

from __future__ import annotations

import argparse
import json

import torch

from l2l_torch.checkpoint import load_learned_optimizer
from l2l_torch.cli import task_family_from_config
from l2l_torch.evaluation import compare
from l2l_torch.optim import LearnedOptimizer
from l2l_torch.stats import paired_comparison
from l2l_torch.tasks.base import TEST_SEED_OFFSET
from research.tools.research_report import judge, learned_name, p_cell


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


class _UndoFirstUpdate:
    """Wraps an optimizer so that the first ``step`` leaves the given tensors as they were."""

    def __init__(self, opt: torch.optim.Optimizer, frozen: list[torch.Tensor]) -> None:
        self.opt, self.frozen, self.first = opt, frozen, True

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.opt.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        saved = [p.clone() for p in self.frozen] if self.first else []
        self.opt.step()
        for p, old in zip(self.frozen, saved):
            p.copy_(old)
        self.first = False


def rerun(ckpt: str, steps: int, seeds: int, undo: str, only_undo: bool = False) -> dict:
    """Final training loss per held-out seed, as it is and with ``undo``'s first update undone."""
    family = task_family_from_config("cifar_convdense")
    lopt, _ = load_learned_optimizer(ckpt)
    names_by_kind: dict[str, list[str]] = {}  # the order of evaluation.param_groups
    for name, kind in family.sample(TEST_SEED_OFFSET).param_kinds().items():
        names_by_kind.setdefault(kind, []).append(name)
    if not any(undo in names for names in names_by_kind.values()):
        raise SystemExit(f"no parameter named {undo!r}; the CNN has {sum(names_by_kind.values(), [])}")

    def undone(groups):
        frozen = [p for g in groups for n, p in zip(names_by_kind[g["kind"]], g["params"]) if n == undo]
        return _UndoFirstUpdate(LearnedOptimizer(groups, lopt=lopt), frozen)

    variants = {} if only_undo else {"as_is": (lambda groups: LearnedOptimizer(groups, lopt=lopt), None)}
    variants[f"undo_first_update_of_{undo}"] = (undone, None)
    print(ckpt, flush=True)
    res = compare(family, variants, steps, seeds)
    out = {label: r["per_seed"]["train_loss"] for label, r in res.items()}
    for label, losses in out.items():
        print(f"  {label}: final train loss {[round(x, 4) for x in losses]}, mean {sum(losses) / seeds:.4f}",
              flush=True)
    return out


def against(evaluation: str, runs: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Paired difference to the tuned-Adam runs of ``evaluation`` (an ``evaluate.py`` results.json, same seeds),
    for its learned optimizer as evaluated and for each rerun variant."""
    res = json.load(open(evaluation))
    adam = res["optimizers"]["adam_tuned"]["per_seed"]["train_loss"]
    rows = {"as evaluated": res["optimizers"][learned_name(res)]["per_seed"]["train_loss"], **runs}
    tests = {label: {**paired_comparison(losses, adam), "paired": True, "lower_is_better": True, "status": None}
             for label, losses in rows.items()}
    out = {}
    for (label, losses), t, (v, p_adj) in zip(rows.items(), tests.values(), judge(list(tests.values()))):
        out[label] = {"mean": sum(losses) / len(losses), "d": t["mean_diff"], "ci": [t["ci_low"], t["ci_high"]],
                      "p": t["p"], "p_holm": p_adj, "verdict": v,
                      "seeds_lower": sum(x < y for x, y in zip(losses, adam))}
        r, n = out[label], min(len(losses), len(adam))
        print(f"  vs tuned Adam of {evaluation} ({sum(adam) / len(adam):.4f}): {label} {r['mean']:.4f}, "
              f"d {t['mean_diff']:+.4f}, 95 % CI [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}], {r['seeds_lower']}/{n} "
              f"seeds lower, p (Holm across {len(rows)}) {p_cell(p_adj)}, {v}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--seed", type=int, default=TEST_SEED_OFFSET)
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--rerun", type=int, metavar="STEPS", help="also train held-out CNNs for STEPS steps (see above)")
    ap.add_argument("--undo", default="13.weight", help="the tensor whose first update --rerun undoes")
    ap.add_argument("--seeds", type=int, default=5, help="held-out instances for --rerun (default 5)")
    ap.add_argument("--against", metavar="RESULTS_JSON",
                    help="with --rerun (one checkpoint): paired difference to that evaluation's tuned-Adam runs")
    ap.add_argument("--only-undo", action="store_true",
                    help="--rerun only the undone variant (the runs as they are equal the committed evaluation's)")
    args = ap.parse_args(argv)
    family = task_family_from_config("cifar_convdense")
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
        print("| param | shape | update RMS | param RMS | loss, only this tensor updated |\n|---|---|---|---|---|")
        for r in res["tensors"]:
            print(f"| {r['param']} | {tuple(r['shape'])} | {r['update_rms']:.2e} | {r['param_rms']:.2e} "
                  f"| {r['loss_if_only_this']:.3f} |")
    if args.rerun:
        print(f"\n{args.rerun}-step runs of configs/cifar_convdense.yaml, {args.seeds} held-out seeds:")
        runs = {c: rerun(c, args.rerun, args.seeds, args.undo, args.only_undo) for c in args.checkpoints}
        out["rerun"] = {"steps": args.rerun, "undo": args.undo, "seeds": args.seeds, "final_train_loss": runs}
        if args.against:
            if len(runs) != 1:
                raise SystemExit("--against compares one checkpoint's reruns with its evaluation")
            out["rerun"]["against"] = {"evaluation": args.against, **against(args.against, next(iter(runs.values())))}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
