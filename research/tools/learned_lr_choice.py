"""The learned ``lr`` that ``benchmark heldout --tune-learned-lr`` would choose on held-out models, without the rest.

    L2L_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m research.tools.learned_lr_choice \\
        --checkpoint small_fc_warmup_pes --grid 1,0.3,0.1,0.03 --models cifar10_mlp_256x128_relu

Runs only the first step of ``python -m l2l_torch.benchmark heldout --tune-learned-lr GRID``: the learned optimizer's
``lr`` (a multiplier on its learned step) tuned on the benchmark's tuning instances, by the same function
(:func:`l2l_torch.benchmark.tune_learned_lr`, the grid grown past a winning edge). Use it where the baselines of a model
cannot be trained again in the time at hand: when the choice is an ``lr`` the benchmark has already been run at, that
run is the lr-tuned row. Prints one line per ``lr`` tried and one Markdown row per model.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="learned-optimizer file, or the name of a shipped one")
    ap.add_argument("--grid", required=True, help="comma-separated starting grid of the learned lr")
    ap.add_argument("--models", required=True, help="comma-separated held-out model names")
    ap.add_argument("--tune-seeds", type=int, default=3, help="tuning instances per lr (the benchmark's default 3)")
    ap.add_argument("--no-extend", action="store_true",
                    help="try the grid's lrs only, not past a winning edge (to split one tuning across processes: "
                         "the choice is then the best over their lines, grown past its edge by hand)")
    a = ap.parse_args(argv)

    from l2l_torch.benchmark import tune_learned_lr
    from l2l_torch.cli import load_checkpoint
    from l2l_torch.heldout import model
    from l2l_torch.optim import LearnedOptimizer
    from l2l_torch.pretrained import checkpoint_path

    grid = [float(x) for x in a.grid.split(",")]
    lopt, _, device = load_checkpoint(checkpoint_path(a.checkpoint))
    rows = []
    for m in (model(n) for n in a.models.split(",")):
        family = m.family().to(device)
        start = time.perf_counter()
        best, scores = tune_learned_lr(family, partial(LearnedOptimizer, lopt=lopt), m.steps, a.tune_seeds, grid,
                                       lambda lr, s, m=m: print(f"{m.name}: lr {lr:g} -> train_loss {s:.4g}",
                                                                file=sys.stderr, flush=True),
                                       extend=not a.no_extend)
        tried = ", ".join(f"{lr:g}: {s:.4g}" for lr, s in sorted(scores.items()))
        rows.append(f"| {m.name} | {m.steps} | {tried} | {best:g} | {time.perf_counter() - start:.0f} |")
    print(f"| model | steps | tuning train_loss per lr ({a.checkpoint}, {a.tune_seeds} tuning instances) | chosen | seconds |")
    print("|---|---:|---|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
