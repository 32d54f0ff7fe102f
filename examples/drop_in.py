"""A shipped learned optimizer as a drop-in ``torch.optim.Optimizer``, next to Adam.

    python examples/drop_in.py [--pretrained small_fc_warmup_pes] [--problem logistic] [--steps 100]

Trains a small model on synthetic data that no learned optimizer here was meta-trained on (a
logistic regression, a least-squares linear regression or a tiny MLP regression), once with
``LearnedOptimizer(pretrained=NAME)`` and once with ``torch.optim.Adam``, from the same
initial weights and the same batches, and prints both losses. The default optimizer is the recommended
shipped one; ``python -m l2l_torch.pretrained`` lists the others.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from l2l_torch import LearnedOptimizer, list_pretrained
from l2l_torch.pretrained import describe_entry

#: the recommended shipped learned optimizer
DEFAULT = "small_fc_warmup_pes"


def make_problem(name: str, seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, nn.Module]:
    """``(model, inputs (N, D), targets, loss_fn)`` of a synthetic problem."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 20, generator=g)
    w = torch.randn(20, 1, generator=g)
    if name == "logistic":  # binary classification with label noise
        y = ((x @ w + 0.5 * torch.randn(512, 1, generator=g)) > 0).float()
        return nn.Linear(20, 1), x, y, nn.BCEWithLogitsLoss()
    if name == "linear":  # least squares
        return nn.Linear(20, 1), x, x @ w + 0.1 * torch.randn(512, 1, generator=g), nn.MSELoss()
    if name == "mlp":  # a smooth nonlinear target fitted by a 20-32-1 tanh MLP
        y = torch.sin(x @ w / 4) + 0.1 * torch.randn(512, 1, generator=g)
        return nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 1)), x, y, nn.MSELoss()
    raise ValueError(f"unknown problem {name!r}")


def train(problem: str, make_opt, steps: int, seed: int, batch: int = 64) -> list[float]:
    """Full-dataset loss after each of ``steps`` minibatch steps."""
    torch.manual_seed(seed)
    model, x, y, loss_fn = make_problem(problem, seed)
    opt = make_opt(model.parameters())
    g = torch.Generator().manual_seed(seed + 1)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)

        def closure(idx=idx):
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            losses.append(float(loss_fn(model(x), y)))
    return losses


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", default=DEFAULT, help=f"one of: {', '.join(list_pretrained())} (default: %(default)s)")
    p.add_argument("--problem", default="logistic", choices=["logistic", "linear", "mlp"])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adam-lrs", default="0.001,0.01,0.1", help="Adam learning rates to compare with")
    p.add_argument("--json", action="store_true", help="print the results as one JSON line")
    a = p.parse_args()

    learned = train(a.problem, lambda ps: LearnedOptimizer(ps, pretrained=a.pretrained), a.steps, a.seed)
    lrs = [float(v) for v in a.adam_lrs.split(",") if v]
    adam = {lr: train(a.problem, lambda ps, lr=lr: torch.optim.Adam(ps, lr=lr), a.steps, a.seed) for lr in lrs}
    info = list_pretrained()[a.pretrained]
    if a.json:
        print(json.dumps({"problem": a.problem, "steps": a.steps, "seed": a.seed, "pretrained": a.pretrained,
                          "learned_final_loss": learned[-1],
                          "adam_final_loss": {str(lr): c[-1] for lr, c in adam.items()}}))
        return
    row = describe_entry(a.pretrained, info)
    stage = f" (the last of its {row['stages']} meta-training stages)" if row["stages"] > 1 else ""
    print(f"learned optimizer {a.pretrained!r} ({row['arch']}): meta-trained on {row['trained_on']}{stage}, "
          f"horizon {info['horizon']}; for {row['use_for']}")
    print(f"problem: {a.problem}, {a.steps} steps, batch 64; loss on the whole data set")
    print(f"{'step':>6} {'learned':>10}" + "".join(f"{'adam ' + format(lr, 'g'):>13}" for lr in lrs))
    for t in sorted({0, a.steps // 4, a.steps // 2, 3 * a.steps // 4, a.steps - 1}):
        print(f"{t + 1:>6} {learned[t]:>10.4g}" + "".join(f"{adam[lr][t]:>13.4g}" for lr in lrs))


if __name__ == "__main__":
    main()
