"""How smooth is the meta-loss in theta? Perturb a learned optimizer and re-run the same task instance.

    L2L_DATA_DIR=../shared/data python -m research.tools.meta_loss_smoothness --config fmnist_t1_skip_u100 \
        --unrolls 20 100 --instances 2

Builds the config's learned optimizer from scratch (``model.lopt``, drawn after seeding with ``seed_everything``, not
necessarily train.py's draw; or ``--checkpoint``) and its task family, then for each instance (seeds from ``--seed``; not training or
validation seeds) and each unroll length K: the meta-loss of the first K steps (weights as in the config, a
``linear`` ramp or ones), its BPTT gradient, the meta-loss again at theta + eps * u for a random unit direction u and
at theta -/+ eps * g/|g|, and the finite-difference slope along g against |g| (they agree where the meta-loss is
smooth). Deterministic: the same instance draws the same batches at every theta.
"""

from __future__ import annotations

import argparse

import torch

from l2l_torch.checkpoint import load_learned_optimizer
from l2l_torch.cli import instantiate, load_config, task_family_from_config
from l2l_torch.unroll import init_unroll, linear_loss_weights, truncated_unroll


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--checkpoint", help="a learned optimizer file instead of the config's initial optimizer")
    ap.add_argument("--unrolls", type=int, nargs="+", default=[20, 100])
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--seed", type=int, default=9_000_001)
    ap.add_argument("--eps", type=float, nargs="+", default=[1e-7, 1e-5, 1e-4, 1e-3, 1e-2])
    args = ap.parse_args()
    cfg = load_config(args.config)
    torch.manual_seed(int(cfg.get("seed_everything", 0)))
    family = task_family_from_config(args.config, {})
    if args.checkpoint:
        lopt, _ = load_learned_optimizer(args.checkpoint)
    else:
        lopt = instantiate(cfg["model"]["lopt"])
    theta = list(lopt.parameters())
    linear = (cfg["model"].get("truncation") or {}).get("init_args", {}).get("loss_weights") == "linear"

    def meta_loss(seed: int, k: int) -> torch.Tensor:
        w = torch.tensor(linear_loss_weights(k)) if linear else None
        return truncated_unroll(lopt, init_unroll(lopt, family.sample(seed), seed), k, w).meta_loss

    def shifted(seed: int, k: int, direction: list[torch.Tensor], eps: float) -> float:
        base = [p.detach().clone() for p in theta]
        with torch.no_grad():
            for p, d in zip(theta, direction, strict=True):
                p.add_(eps * d)
        value = float(meta_loss(seed, k))
        with torch.no_grad():
            for p, b in zip(theta, base, strict=True):
                p.copy_(b)
        return value

    def norm(vs: list[torch.Tensor]) -> torch.Tensor:
        return torch.sqrt(sum((v ** 2).sum() for v in vs))

    gen = torch.Generator().manual_seed(0)
    print(f"config {args.config}, optimizer {args.checkpoint or 'as initialised'}, {sum(p.numel() for p in theta)} "
          f"weights, loss weights {'linear' if linear else 'ones'}")
    for k in args.unrolls:
        for i in range(args.instances):
            seed = args.seed + i
            loss = meta_loss(seed, k)
            grads = torch.autograd.grad(loss, theta)
            gnorm = float(norm(grads))
            g_unit = [g / gnorm for g in grads]
            rand = [torch.randn(p.shape, generator=gen) for p in theta]
            rnorm = norm(rand)
            rand = [r / rnorm for r in rand]
            print(f"\nK={k} instance {seed}: meta-loss {float(loss):.6f}, |g| {gnorm:.4g}")
            print("| eps | L(theta + eps u) - L, u random | L(theta - eps g/|g|) - L | L(theta + eps g/|g|) - L "
                  "| finite-difference slope along g |\n|---|---|---|---|---|")
            for eps in args.eps:
                r = shifted(seed, k, rand, eps) - float(loss)
                lo = shifted(seed, k, g_unit, -eps) - float(loss)
                hi = shifted(seed, k, g_unit, eps) - float(loss)
                print(f"| {eps:g} | {r:+.2e} | {lo:+.2e} | {hi:+.2e} | {(hi - lo) / (2 * eps):+.4g} |", flush=True)


if __name__ == "__main__":
    main()
