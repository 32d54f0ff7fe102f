"""Diagnostic (2026-12-02): scale the STN's updates by 1.5 on some tensors only, on the scan's 5 validation seeds."""
import math

from l2l_torch.checkpoint import load_learned_optimizer
from l2l_torch.cli import task_family_from_config
from l2l_torch.evaluation import train_optimizee
from l2l_torch.optim import LearnedOptimizer
from l2l_torch.tasks.base import VAL_SEED_OFFSET

lopt, _ = load_learned_optimizer("research/experiments/lopt_small_fc_warmup_stn/optimizer.pt")
fam = task_family_from_config("affnist", {})
seeds = [VAL_SEED_OFFSET + 500 + i for i in range(5)]
def factory(sel, s):
    def make(groups):
        out = []
        for g in groups:
            for p in g["params"]:
                out.append({"params": [p], "kind": g["kind"], "scale": s if sel(p) else 1.0})
        return LearnedOptimizer(out, lopt=lopt)
    return make
sels = {"fc2 (6x32, 6)": lambda p: p.shape[0] == 6 and p.dim() <= 2,
        "fc2.weight only": lambda p: tuple(p.shape) == (6, 32),
        "all but fc2": lambda p: not (p.shape[0] == 6 and p.dim() <= 2),
        "all": lambda p: True}
for name, sel in sels.items():
    ls = []
    for sd in seeds:
        r = train_optimizee(fam.sample(sd), factory(sel, 1.5), 200, sd)
        ls.append(math.inf if r.diverged else r.final["train_loss"])
    print(f"scale 1.5 on {name}: " + " ".join(f"{v:.4f}" for v in ls) + f" mean {sum(ls)/len(ls):.4f}", flush=True)
