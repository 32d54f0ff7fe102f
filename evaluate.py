"""Evaluate a learned optimizer against torch.optim baselines.

    python evaluate.py --task quadratic --checkpoint research/experiments/quadratic/optimizer.pt --out research/experiments/quadratic

Trains fresh, held-out optimizees of the task with the learned optimizer and with Adam, RMSprop,
SGD and Adagrad, each at its default learning rate and at a learning rate tuned by grid search
on separate task instances. Writes ``results.json``, ``curves.png``, ``table.md``, ``epochs.png``
(per-epoch validation accuracy, with ``--epoch-steps``), ``updates.png``/``updates.json`` (the
learned optimizer's update sizes against tuned Adam's on one held-out instance) and TensorBoard
curves (``tb/``) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path


def _reuse(a, overrides: dict) -> dict:
    """The earlier ``results.json`` named by ``--reuse-baselines``, checked against this evaluation."""
    from l2l_torch.cli import UserError

    path = Path(a.reuse_baselines) / "results.json"
    if not path.is_file():
        raise UserError(f"--reuse-baselines: no results.json in {a.reuse_baselines}")
    prev = json.loads(path.read_text())
    from l2l_torch.tasks.base import TEST_SEED_OFFSET

    mine = {"task": a.task, "steps": a.steps or prev["steps"], "seeds": a.seeds, "overrides": overrides,
            "epoch_steps": a.epoch_steps, "average": a.average, "first_seed": a.test_seeds_from}
    theirs = {"task": prev["task"], "steps": prev["steps"], "seeds": prev["seeds"],
              "overrides": prev.get("overrides", {}), "epoch_steps": prev.get("epoch_steps"),
              "average": prev.get("average"), "first_seed": prev.get("first_seed", TEST_SEED_OFFSET)}
    if "epoch_steps" not in prev:  # written before results.json stored it: read it off the command
        cmd = shlex.split(prev.get("command", ""))
        theirs["epoch_steps"] = int(cmd[cmd.index("--epoch-steps") + 1]) if "--epoch-steps" in cmd else None
    if mine != theirs:
        diff = {k: (theirs[k], mine[k]) for k in mine if mine[k] != theirs[k]}
        raise UserError(f"--reuse-baselines {a.reuse_baselines}: its settings differ from this evaluation's "
                        f"(setting: (theirs, ours)) {diff}")
    return prev


def main(argv: list[str] | None = None) -> None:
    from l2l_torch.cli import (
        ArgumentParser,
        UserError,
        available_tasks,
        check_for_task,
        config_horizon,
        config_path,
        fail,
        fraction,
        load_checkpoint,
        parse_overrides,
        positive_float,
        positive_int,
        task_family_from_config,
    )
    from l2l_torch.pretrained import checkpoint_path
    from l2l_torch.tasks.base import TEST_SEED_OFFSET, TUNE_SEED_OFFSET

    p = ArgumentParser(prog="python evaluate.py", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help=f"one of: {', '.join(available_tasks())}")
    p.add_argument("--checkpoint", required=True,
                   help="learned-optimizer file (optimizer.pt), or the name of a shipped one (e.g. small_fc_warmup_pes)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--steps", type=positive_int, help="optimizee steps (default: the config's horizon)")
    p.add_argument("--seeds", type=positive_int, default=10, help="held-out task instances per optimizer (default 10)")
    p.add_argument("--test-seeds-from", type=positive_int, default=TEST_SEED_OFFSET, metavar="SEED",
                   help=f"the first held-out instance (default {TEST_SEED_OFFSET}); a new range in "
                        f"[{TEST_SEED_OFFSET}, {TUNE_SEED_OFFSET}) gives instances no earlier evaluation has seen")
    p.add_argument("--tune-seeds", type=positive_int, default=3, help="instances per learning rate in the grid search")
    p.add_argument("--tune-steps", type=positive_int, help="steps per tuning run (default: --steps)")
    p.add_argument("--no-tune", action="store_true", help="skip the tuned baselines")
    p.add_argument("--tune-trials", type=positive_int,
                   help="trial budget of adamw_tuned's search (Optuna TPE with successive-halving pruning; default 100)")
    p.add_argument("--tune-metric", default="train_loss",
                   help="final metric the learning-rate search minimises (default train_loss; e.g. val_loss)")
    p.add_argument("--baselines", default="adam,rmsprop,sgd,adagrad",
                   help="comma-separated torch.optim baselines (each at its default and with its learning rate tuned), "
                        "adamw_tuned (AdamW with lr, betas, weight decay, warm-up and schedule searched together), "
                        "or a named set: study_defaults (the study's TF2 Keras optimizers at their defaults: Adam, "
                        "RMSprop, Adagrad at 0.001, SGD at 0.01)")
    p.add_argument("--lr-grid", help="comma-separated starting learning-rate grid of the search (default 1e-4 ... 3; "
                   "it grows past an edge that wins either way)")
    p.add_argument("--reuse-baselines", metavar="DIR",
                   help="take the baselines (runs and tuning) from DIR/results.json of the same task, steps, seeds "
                        "and --set overrides instead of running them again; only the learned optimizer is trained, "
                        "plus one run of the tuned Adam first to check that they reproduce here (reuse_check); "
                        "refused when they do not")
    p.add_argument("--allow-drift", action="store_true",
                   help="with --reuse-baselines: compare against baselines that do not reproduce here")
    p.add_argument("--epoch-steps", type=positive_int, help="record validation metrics every N steps (an 'epoch')")
    p.add_argument("--average", type=fraction, metavar="DECAY",
                   help="evaluate every optimizer (learned and baselines; the baselines also tuned so) at an "
                        "exponential moving average of its iterates with this decay in [0, 1), e.g. 0.9, instead "
                        "of the last one")
    p.add_argument("--no-updates", action="store_true",
                   help="skip the update-size histogram (updates.png: learned vs tuned Adam, one seed)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a task init arg for a generalisation test, e.g. --set activation=relu")
    a = p.parse_args(argv)

    from l2l_torch.evaluation import (
        BASELINE_SETS,
        BASELINES,
        SEARCHED_BASELINES,
        ReuseRefused,
        check_test_seeds,
        evaluate_learned_optimizer,
        host,
        meta_training_cost,
        updates_against_adam,
    )
    from l2l_torch.optim import LearnedOptimizer
    from l2l_torch.plots import curve_steps, write_outputs, write_updates

    # the quick checks first (task, flags, the checkpoint file), then the task's data, which can take a while
    try:
        config_path(a.task)
        overrides = parse_overrides(a.set)
        baselines = [x for b in a.baselines.split(",") if b for x in BASELINE_SETS.get(b, [b])]
        unknown = [b for b in baselines if b not in BASELINES and b not in SEARCHED_BASELINES]
        if unknown:
            raise UserError(f"unknown baseline(s) {unknown}; known: {sorted(BASELINES) + list(SEARCHED_BASELINES)} "
                            f"and the sets {sorted(BASELINE_SETS)}")
        if a.no_tune and any(b in SEARCHED_BASELINES for b in baselines):
            raise UserError("--no-tune skips the tuned baselines, and adamw_tuned is one: drop one of the two")
        if a.tune_trials and "adamw_tuned" not in baselines:
            raise UserError("--tune-trials is adamw_tuned's trial budget: add adamw_tuned to --baselines")
        try:
            lr_grid = [positive_float(x) for x in a.lr_grid.split(",")] if a.lr_grid else None
        except argparse.ArgumentTypeError as e:
            raise UserError(f"--lr-grid: every learning rate {e}") from None
        try:
            check_test_seeds(a.test_seeds_from, a.seeds)
        except ValueError as e:
            raise UserError(f"--test-seeds-from {a.test_seeds_from} --seeds {a.seeds}: {e}") from None
        reuse = _reuse(a, overrides) if a.reuse_baselines else None
    except UserError as e:
        fail(str(e))
    lopt, meta, device = load_checkpoint(checkpoint_path(a.checkpoint))
    try:
        family = task_family_from_config(a.task, overrides)
    except UserError as e:
        fail(str(e))
    except TypeError as e:
        fail(f"bad --set override for task {a.task!r}: {e}")
    check_for_task(lopt, meta, device, a.checkpoint, a.task, family)
    if family.data_source:
        print(f"data: {family.data_source}", flush=True)
    steps = a.steps or config_horizon(a.task)
    out = Path(a.out)
    t0 = time.time()

    def progress(msg: str) -> None:
        print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)

    try:
        res = evaluate_learned_optimizer(
            family, lambda groups: LearnedOptimizer(groups, lopt=lopt), steps, a.seeds, tune=not a.no_tune,
            tune_seeds=a.tune_seeds, tune_steps=a.tune_steps, baselines=baselines, learned_name=lopt.arch_name,
            epoch_steps=a.epoch_steps, tune_metric=a.tune_metric, progress=progress, reuse=reuse, average=a.average,
            tune_trials=a.tune_trials, allow_drift=a.allow_drift, first_seed=a.test_seeds_from,
            **({"lr_grid": lr_grid} if lr_grid else {}))
    except ReuseRefused as e:
        fail(f"--reuse-baselines {a.reuse_baselines}: {e}")
    res["optimizers"][lopt.arch_name]["meta_training_cost"] = meta_training_cost(meta)
    results = {"task": a.task, "steps": steps, "seeds": a.seeds, "checkpoint": str(a.checkpoint),
               "checkpoint_meta": meta, "family": family.describe(), "overrides": overrides, "device": str(device),
               **host(),  # the processor, its vector instruction set and the thread count: CPU rounding depends on them
               # the metric the baselines were tuned on is the one the verdict compares
               "primary_metric": "final_loss" if a.tune_metric == "train_loss" else a.tune_metric,
               # shell-quoted, so that `python -m l2l_torch.report` can run it again (e.g. --set 'hidden=[20, 20]')
               "command": "python evaluate.py " + shlex.join(sys.argv[1:] if argv is None else argv),
               "seconds": round(time.time() - t0, 1), "epoch_steps": a.epoch_steps, "average": a.average,
               "first_seed": a.test_seeds_from,
               **({"baselines_from": a.reuse_baselines} if a.reuse_baselines else {}), **res}
    write_outputs(results, out)
    if not a.no_updates:
        progress("update sizes")
        upd = updates_against_adam(family, lopt, steps, res["optimizers"], seed=a.test_seeds_from)
        upd.update(task=a.task, checkpoint=str(a.checkpoint))
        write_updates(upd, out)
    grids = _image_grids(family, res["optimizers"], lambda groups: LearnedOptimizer(groups, lopt=lopt),
                         lopt.arch_name, steps, out, progress, a.average, a.test_seeds_from)
    _task_table(family, results, out)
    try:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(out / "tb")) as w:
            for name, o in res["optimizers"].items():
                for t, v in zip(curve_steps(o), o["curve"]):
                    if v is not None:
                        w.add_scalar(f"eval/{name}/loss", v, t)
            for name, img in grids.items():
                w.add_image(f"eval/{name}/grid", img)
    except ImportError:
        pass
    print((out / "table.md").read_text())
    chk = res.get("reuse_check") or {}
    if chk.get("reproduced") is not None:
        print(f"reused baselines from {a.reuse_baselines}: {chk['optimizer']} on seed {chk['seed']} trained again "
              + ("reproduces them" if chk["reproduced"] else
                 f"does NOT reproduce them (largest relative difference {chk['max_rel_diff']:.2g}): "
                 "run without --reuse-baselines for a fair comparison"))
    print(f"wrote {out / 'results.json'}, {out / 'curves.png'}, {out / 'table.md'}"
          + ("" if a.no_updates else f", {out / 'updates.png'}")
          + (f", {out / 'epochs.png'}" if (out / "epochs.png").is_file() and a.epoch_steps else ""))
    json.dumps(results)  # fail loudly here rather than leave a half-written folder


def _image_grids(family, optimizers: dict, lopt_factory, learned_name: str, steps: int, out: Path, progress,
                 average: float | None, seed: int) -> dict:
    """For tasks with a ``visualize(params, buffers) -> (3, H, W)`` method: train the held-out instance ``seed``
    once per optimizer and save its picture (of the averaged iterates with ``average``) as
    ``grid_<optimizer>.png``. Returns the images."""
    from l2l_torch.evaluation import train_optimizee, tuned_factory

    task = family.sample(seed)
    if not hasattr(task, "visualize"):
        return {}
    from l2l_torch.plots import save_png

    grids = {}
    for name, o in optimizers.items():
        progress(f"image grid {name}")
        factory = lopt_factory if name == learned_name else tuned_factory(name, o, steps)
        r = train_optimizee(task, factory, steps, seed, keep_params=True, average=average)
        if not r.diverged:
            grids[name] = task.visualize(r.params, r.buffers)
            save_png(grids[name], out / f"grid_{name}.png")
    return grids


def _task_table(family, results: dict, out: Path) -> None:
    """For tasks that name ``table_metrics``: append a table of those final metrics to ``table.md``."""
    from l2l_torch.plots import _fmt

    metrics = getattr(family, "table_metrics", ())
    if not metrics:
        return
    lines = ["", "| optimizer | " + " | ".join(m.replace("_", " ") for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for name, o in results["optimizers"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(o.get(m)) for m in metrics) + " |")
    with open(out / "table.md", "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
