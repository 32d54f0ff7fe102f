"""Select a learned optimizer's step multiplier (the drop-in's ``lr``) by validation on instances of a
meta-training distribution, each trained for its own horizon.

    python -m research.tools.calibrate_step --config research/experiments/general_cpu/general_cpu.yaml \
        --checkpoint small_fc_warmup_pes --multipliers 1,0.3,0.1,0.03 --instances 24 --first-seed 9000 \
        --horizon 1000 --min-horizon 100 --no-augmentation --workers 2 --out DIR

The instances are ``config``'s ``model.task`` family at seeds ``VAL_SEED_OFFSET + first_seed + i`` (validation
seeds: no meta-training trains on them, and none of the test or tuning instances of ``evaluate.py`` or the held-out
benchmark is among them). Each is trained for its own horizon, drawn from its seed by the config's truncation
schedule (``--horizon`` and ``--min-horizon`` override its range), once per multiplier, with the same batches.
``--no-augmentation`` unwraps every :class:`~l2l_torch.tasks.task_augmentation.AugmentedFamily` of the config,
so that the instances are the networks themselves, as a user builds them.

``--schedule cosine`` anneals each run's step from the multiplier towards 0 over the run's horizon with torch's
:class:`~torch.optim.lr_scheduler.CosineAnnealingLR` (:func:`cosine_learned_optimizer`), as a user's training loop
would with a known number of steps; ``--schedule hypergradient --beta B`` adapts it online from the multiplier down
with :class:`~l2l_torch.HypergradientLR` (each run records its ``final_lr_factor``); the default keeps it constant.
``--no-extension`` runs the grid as given.

Score of a multiplier: the geometric mean over instances of the final training loss (each instance's loss scale
cancels; a diverged run scores infinity). The grid is extended by half-decades (1, 3.16, 10 or 0.03, 0.01) past an
edge that wins, at most twice on each side. Writes ``DIR/calibration.json`` (per instance and multiplier: final training loss, diverged) and
``DIR/calibration.md`` (the scores, the selected multiplier, and per multiplier how many instances it wins).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

#: at most this many extensions on each side
MAX_EXTENSIONS = 2


def unaugmented(spec: dict[str, Any]) -> dict[str, Any]:
    """A ``{class_path, init_args}`` task spec with every AugmentedFamily replaced by the family it wraps."""
    if not isinstance(spec, dict):
        return spec
    if spec.get("class_path", "").endswith("task_augmentation.AugmentedFamily"):
        return unaugmented(spec["init_args"]["family"])
    args = spec.get("init_args") or {}
    if "families" in args:
        return {**spec, "init_args": {**args, "families": [unaugmented(f) for f in args["families"]]}}
    return spec


def geometric_mean(losses: list[float | None]) -> float:
    """exp(mean(log loss)); infinity when any run diverged (None) or ended at a non-positive loss."""
    if any(x is None or not math.isfinite(x) or x <= 0 for x in losses):
        return math.inf
    return statistics.geometric_mean(losses)


def select(scores: dict[float, float]) -> float:
    """The multiplier of the lowest score (the larger one on a tie)."""
    return min(scores, key=lambda m: (scores[m], -m))


def extension(grid: list[float], best: float, extended: dict[str, int]) -> float | None:
    """The next multiplier to try when ``best`` sits on an edge of ``grid`` (None when it does not, or when that
    side was extended :data:`MAX_EXTENSIONS` times)."""
    half = round(2 * math.log10(best)) / 2  # best on the half-decade ladder (1, 0.3 -> -0.5, 0.1, ...)
    if best == min(grid) and extended["down"] < MAX_EXTENSIONS:
        extended["down"] += 1
        return float(f"{10 ** (half - 0.5):.3g}")
    if best == max(grid) and extended["up"] < MAX_EXTENSIONS:
        extended["up"] += 1
        return float(f"{10 ** (half + 0.5):.3g}")
    return None


def hypergradient_learned_optimizer(groups: Any, beta: float, max_factor: float = 1.0, **kwargs: Any):
    """A :class:`~l2l_torch.optim.LearnedOptimizer` (``kwargs``) whose ``lr`` adapts online by
    :class:`~l2l_torch.hypergradient.HypergradientLR` (``beta``, at most ``max_factor`` times its start)."""
    from l2l_torch.hypergradient import HypergradientLR
    from l2l_torch.optim import LearnedOptimizer

    opt = LearnedOptimizer(groups, **kwargs)
    opt.hypergradient = HypergradientLR(opt, beta=beta, max_factor=max_factor)
    return opt


def cosine_learned_optimizer(groups: Any, total_steps: int, **kwargs: Any):
    """A :class:`~l2l_torch.optim.LearnedOptimizer` (``kwargs``) whose ``lr`` follows torch's
    :class:`~torch.optim.lr_scheduler.CosineAnnealingLR` over ``total_steps`` optimizer steps: step ``t`` (from 1)
    uses ``lr * (1 + cos(pi * (t - 1) / total_steps)) / 2``. The scheduler steps after each optimizer step (a step
    post-hook)."""
    import torch

    from l2l_torch.optim import LearnedOptimizer

    opt = LearnedOptimizer(groups, **kwargs)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    opt.register_step_post_hook(lambda *_: scheduler.step())
    return opt


_WORKER: dict[str, Any] = {}


def _init_worker(config: str, checkpoint: str, horizon: int | None, min_horizon: int | None,
                 no_augmentation: bool, schedule: str = "constant", beta: float = 0.0,
                 max_factor: float = 1.0) -> None:
    import torch

    from l2l_torch.checkpoint import load_learned_optimizer
    from l2l_torch.cli import instantiate, load_config
    from l2l_torch.pretrained import pretrained_path
    from l2l_torch.truncation import TruncationSchedule

    torch.set_num_threads(1)
    cfg = load_config(config)
    spec = cfg["model"]["task"]
    family = instantiate(unaugmented(spec) if no_augmentation else spec)
    family.prepare_data()
    trunc = (cfg["model"].get("truncation") or {}).get("init_args") or {}
    horizon = horizon or trunc.get("horizon", TruncationSchedule().horizon)
    min_horizon = min_horizon or trunc.get("min_horizon")
    path = checkpoint if Path(checkpoint).is_file() else str(pretrained_path(checkpoint))
    # only the horizons are read off the schedule (no unroll happens here); theta is read once and shared by the
    # runs (each LearnedOptimizer keeps its own state)
    _WORKER.update(family=family, schedule=TruncationSchedule(horizon=horizon, unroll=1, min_horizon=min_horizon),
                   lopt=load_learned_optimizer(path)[0], step_schedule=schedule,
                   beta=beta, max_factor=max_factor)


def _run(seed: int, multiplier: float) -> dict[str, Any]:
    from l2l_torch.optim import LearnedOptimizer
    from l2l_torch.training import train_optimizee

    family, schedule, lopt = _WORKER["family"], _WORKER["schedule"], _WORKER["lopt"]
    task = family.sample(seed)
    steps = schedule.horizon_of(seed)
    start = time.perf_counter()
    made: list[Any] = []

    def make(groups: Any) -> Any:
        kind = _WORKER["step_schedule"]
        if kind == "cosine":
            opt = cosine_learned_optimizer(groups, total_steps=steps, lopt=lopt, lr=multiplier)
        elif kind == "hypergradient":
            opt = hypergradient_learned_optimizer(groups, _WORKER["beta"], _WORKER["max_factor"], lopt=lopt,
                                                  lr=multiplier)
        else:
            opt = LearnedOptimizer(groups, lopt=lopt, lr=multiplier)
        made.append(opt)
        return opt

    r = train_optimizee(task, make, steps, seed)
    loss = r.final.get("train_loss", math.nan)
    mixture = hasattr(family, "family_index")
    label = family.family_label(seed) if mixture else family.name
    member = family.families[family.family_index(seed)] if mixture else family
    return {"seed": seed, "multiplier": multiplier, "family": label, "steps": steps,
            "config": member.config_of(seed) if hasattr(member, "config_of") else None,
            "train_loss": loss if (not r.diverged and math.isfinite(loss)) else None, "diverged": bool(r.diverged),
            "initial_loss": float(r.losses[0]), "seconds": round(time.perf_counter() - start, 1),
            **({"final_lr_factor": made[0].hypergradient.factors()[0]} if made and hasattr(made[0], "hypergradient")
               else {})}


def calibrate(a: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Run every instance at every multiplier (``a``: the parsed ``argv``); the result written as calibration.json."""
    from l2l_torch.tasks.base import VAL_SEED_OFFSET

    seeds = [VAL_SEED_OFFSET + a.first_seed + i for i in range(a.instances)]
    grid = [float(x) for x in a.multipliers.split(",")]
    runs: list[dict[str, Any]] = []
    extended = {"up": 0, "down": 0}
    init = (a.config, a.checkpoint, a.horizon, a.min_horizon, a.no_augmentation, a.schedule, a.beta, a.max_factor)
    if a.workers > 1:  # spawned processes, one thread each (forking a process that has run torch is unsafe)
        pool = ProcessPoolExecutor(a.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=init)
    else:
        _init_worker(*init)
        pool = None
    with pool or contextlib.nullcontext():
        todo = list(grid)
        while todo:
            jobs = [(s, m) for s in seeds for m in todo]
            for r in (pool.map if pool else map)(_run, *zip(*jobs)):
                runs.append(r)
                print(f"seed {r['seed']} ({r['family']}, {r['steps']} steps) x{r['multiplier']:g}: "
                      f"{r['train_loss']}  [{len(runs)} runs]", flush=True)
            scores = score(runs)
            nxt = extension(sorted(scores), select(scores), extended)
            todo = [nxt] if nxt is not None and not a.no_extension else []
    scores = score(runs)
    best = select(scores)
    wins = {m: 0 for m in scores}
    for s in seeds:
        mine = {r["multiplier"]: (r["train_loss"] if r["train_loss"] is not None else math.inf)
                for r in runs if r["seed"] == s}
        wins[min(mine, key=mine.get)] += 1
    return {"command": " ".join(["python -m research.tools.calibrate_step", *argv]),
            "config": a.config, "checkpoint": a.checkpoint, "augmentation": not a.no_augmentation,
            "schedule": a.schedule, **({"beta": a.beta, "max_factor": a.max_factor}
                                       if a.schedule == "hypergradient" else {}),
            "horizon": a.horizon, "min_horizon": a.min_horizon, "seeds": seeds,
            "scores": {f"{m:g}": v for m, v in sorted(scores.items(), reverse=True)},
            "wins": {f"{m:g}": v for m, v in sorted(wins.items(), reverse=True)}, "selected": best,
            "runs": runs}


def score(runs: list[dict[str, Any]]) -> dict[float, float]:
    """Multiplier -> :func:`geometric_mean` of its runs' final training losses."""
    by: dict[float, list[float | None]] = {}
    for r in runs:
        by.setdefault(r["multiplier"], []).append(r["train_loss"])
    return {m: geometric_mean(v) for m, v in by.items()}


def markdown(result: dict[str, Any]) -> str:
    seeds = result["seeds"]
    mults = list(result["scores"])
    lines = [f"Selected multiplier: **{result['selected']:g}** (lowest geometric mean of the final training loss "
             f"over {len(seeds)} instances).", "",
             "| multiplier | geometric mean final train loss | instances where it is best | diverged |",
             "|---:|---:|---:|---:|"]
    for m in mults:
        div = sum(r["diverged"] for r in result["runs"] if f"{r['multiplier']:g}" == m)
        lines.append(f"| {m} | {result['scores'][m]:.4g} | {result['wins'][m]} | {div} |")
    lines += ["", "| seed | family | steps | " + " | ".join(f"x{m}" for m in mults) + " |",
              "|---|---|---:|" + "---:|" * len(mults)]
    for s in seeds:
        mine = {f"{r['multiplier']:g}": r for r in result["runs"] if r["seed"] == s}
        first = next(iter(mine.values()))
        cells = [f"{mine[m]['train_loss']:.4g}" if mine[m]["train_loss"] is not None else "diverged" for m in mults]
        lines.append(f"| {s} | {first['family']} {json.dumps(first['config'], separators=(',', ':'))} | "
                     f"{first['steps']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="meta-training config whose model.task gives the instances")
    p.add_argument("--checkpoint", required=True, help="learned-optimizer file or shipped name")
    p.add_argument("--multipliers", default="1,0.3,0.1,0.03", help="starting grid (comma-separated)")
    p.add_argument("--no-extension", action="store_true", help="run the grid as given, never extended")
    p.add_argument("--instances", type=int, default=24)
    p.add_argument("--first-seed", type=int, default=9000, help="instances VAL_SEED_OFFSET + this + i")
    p.add_argument("--horizon", type=int, help="longest horizon (default: the config's)")
    p.add_argument("--min-horizon", type=int, help="shortest horizon (default: the config's)")
    p.add_argument("--no-augmentation", action="store_true", help="the networks without task augmentation")
    p.add_argument("--schedule", choices=("constant", "cosine", "hypergradient"), default="constant",
                   help="the step over each run: constant, annealed to 0 by a cosine over the run's horizon, or "
                        "adapted online by hypergradient descent (--beta, --max-factor)")
    p.add_argument("--beta", type=float, default=0.02, help="hypergradient: the adaptation's rate per step")
    p.add_argument("--max-factor", type=float, default=1.0, help="hypergradient: the largest lr over its start")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes, one thread each")
    p.add_argument("--out", required=True)
    argv = sys.argv[1:] if argv is None else argv
    a = p.parse_args(argv)
    result = calibrate(a, argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "calibration.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
