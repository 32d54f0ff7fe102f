"""Benchmarks of a learned optimizer on problems outside its meta-training distribution.

    python -m l2l_torch.benchmark heldout --checkpoint small_fc_warmup_pes --out DIR [--seeds 5] [--models a,b]
        [--tune-trials 40]

``heldout`` trains every model of :data:`l2l_torch.heldout.HELDOUT_MODELS` (or those of ``--models``) with the learned
optimizer, with Adam at its learning rate tuned by grid search (``adam_tuned``, :func:`l2l_torch.evaluation.tune_lr`)
and with AdamW's whole recipe tuned (``adamw_tuned``, :func:`l2l_torch.tuning.tune_adamw`), all through
:func:`l2l_torch.evaluation.evaluate_learned_optimizer`: tuning on the tuning instances, evaluation on ``--seeds``
held-out instances (the same seeds for every optimizer, so the final training losses pair). Per model it reports the
ratio of the learned optimizer's mean final training loss to ``adam_tuned``'s (target below
:data:`TARGET_RATIO`) and, against each tuned reference, the paired t-test of :mod:`l2l_torch.stats` with Holm's
correction over every comparison of the table. A learned run that diverges (a non-finite or exploding loss) is a
failure of its model: that row's verdict is ``diverged`` and its target is not met; the row is never left out.

Writes ``DIR/heldout.json`` (everything, per seed) and ``DIR/heldout.md`` (the table), after every model.
``--reuse-baselines EARLIER_DIR`` takes the tuned references of an earlier run with the same settings (checked to
reproduce here), so a second learned optimizer costs only its own runs. A run split over several processes by
``--models`` becomes one table, with Holm's correction over all of it, with

    python -m l2l_torch.benchmark merge DIR_A DIR_B --out DIR

``--learned-lr X`` scales the learned step (the drop-in's ``lr``); ``--tune-learned-lr 1,0.3,0.1,0.03`` tunes that
multiplier per model on the tuning instances, as ``adam_tuned``'s learning rate is, and reports the one chosen.
``--hypergradient BETA`` adapts it online during every run instead (:class:`l2l_torch.hypergradient.HypergradientLR`,
from ``--learned-lr`` down), and reports each run's final factor.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from l2l_torch.heldout import HELDOUT_MODELS, HELDOUT_VERSION, HeldOutModel

#: the tuned references every model is compared with
REFERENCES: tuple[str, ...] = ("adam_tuned", "adamw_tuned")
#: the learned optimizer's mean final training loss should be below this fraction of adam_tuned's
TARGET_RATIO = 0.95
#: the baselines every model trains (their tuned rows are REFERENCES), or takes from ``--reuse-baselines``
HELDOUT_BASELINES: tuple[str, ...] = ("adam", "adamw_tuned")
#: the name of the learned optimizer's rows
LEARNED = "learned"
#: a run "did not train" when its mean final training loss is above this fraction of its mean initial loss (the
#: loss of the first batch, before any step): a network driven to a constant output, which is not a divergence
DID_NOT_TRAIN = 0.99
#: what results keep of each optimizer's summary (the per-seed finals, the means and the mean loss curve)
_KEEP = ("lr", "hparams", "diverged", "per_seed", "train_loss", "val_loss", "test_loss", "train_accuracy",
         "val_accuracy", "test_accuracy", "curve", "tuning_cost")


def _finite(x: Any) -> Any:
    """``x`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def per_seed_losses(summary: dict[str, Any], seeds: int) -> list[float | None]:
    """The final training loss of each held-out seed (None where the run diverged)."""
    return list(summary.get("per_seed", {}).get("train_loss") or [None] * seeds)


def compare_models(models: dict[str, dict[str, Any]], seeds: int) -> list[dict[str, Any]]:
    """The table's comparisons: for every model and reference, the paired t-test of the learned optimizer's final
    training losses against the reference's, Holm-adjusted over all of them, and the verdict (``diverged`` where a
    learned run diverged)."""
    from l2l_torch.stats import holm, paired_comparison, verdict

    rows = []
    for name, res in models.items():
        opts = res["optimizers"]
        learned = per_seed_losses(opts[LEARNED], seeds)
        for ref in REFERENCES:
            if ref in opts:
                rows.append({"model": name, "reference": ref,
                             **paired_comparison(learned, per_seed_losses(opts[ref], seeds)),
                             "learned_diverged": opts[LEARNED]["diverged"], "reference_diverged": opts[ref]["diverged"]})
    for row, p in zip(rows, holm([r["p"] for r in rows]), strict=True):
        row["p_holm"] = p
        row["verdict"] = "diverged" if row["learned_diverged"] else verdict(row["mean_diff"], p)
    return rows


def did_not_train(summary: dict[str, Any]) -> bool:
    """Whether the runs of ``summary`` (an optimizer's results) ended no better than where they started: mean final
    training loss above :data:`DID_NOT_TRAIN` x the mean loss at step 0 (``curve[0]``). False when either is missing
    (a diverged run is counted as diverged instead)."""
    curve, final = summary.get("curve") or [None], (summary.get("train_loss") or {}).get("mean")
    start = curve[0]
    if start is None or final is None or not (math.isfinite(start) and math.isfinite(final)):
        return False
    return final > DID_NOT_TRAIN * start


def ratio_to_adam(optimizers: dict[str, Any]) -> float | None:
    """Learned mean final training loss / ``adam_tuned``'s; None when a learned run diverged (a failure) or there is
    no finite reference."""
    learned, adam = optimizers[LEARNED], optimizers.get("adam_tuned")
    if learned["diverged"] or adam is None or "train_loss" not in learned or "train_loss" not in adam:
        return None
    den = adam["train_loss"]["mean"]
    return learned["train_loss"]["mean"] / den if den > 0 else None


def tune_learned_lr(family: Any, lopt_factory: Callable, steps: int, tune_seeds: int, grid: Sequence[float],
                    progress: Callable[[float, float], None] | None = None,
                    extend: bool = True) -> tuple[float, dict[float, float]]:
    """Tune the learned optimizer's ``lr`` (the multiplier on its learned step; ``lopt_factory(groups, lr=)``) on
    ``family``'s tuning instances, as ``adam_tuned``'s learning rate is (:func:`~l2l_torch.evaluation.tune_lr`, from
    ``grid``, grown past a winning edge unless ``extend`` is false; ``progress(lr, score)`` after each lr).
    Returns ``(best lr, {lr: mean final training loss})``."""
    from l2l_torch.evaluation import tune_lr

    return tune_lr(family, LEARNED, steps, tune_seeds, grid=grid, extend=extend, progress=progress,
                   factory=lambda lr: partial(lopt_factory, lr=lr))


def run_heldout(lopt_factory: Callable, models: Sequence[HeldOutModel], seeds: int = 5, steps: int | None = None,
                tune_seeds: int = 3, tune_trials: int | None = None, lr_grid: Sequence[float] | None = None,
                device: Any = "cpu", data_dir: str | None = None, subset: int | None = None,
                check: Callable[[Any, HeldOutModel], None] | None = None,
                progress: Callable[[str], None] | None = None, reuse: dict[str, Any] | None = None,
                done: Callable[[dict[str, Any]], None] | None = None,
                learned_lr_grid: Sequence[float] | None = None,
                after_model: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Evaluate the learned optimizer of ``lopt_factory`` (param groups -> optimizer) on ``models``.

    Args:
        seeds: held-out instances per model (``TEST_SEED_OFFSET + i``).
        steps: optimizee steps of every model (default: each model's own).
        tune_seeds, tune_trials, lr_grid: tuning instances, ``adamw_tuned``'s trial budget and the starting
            learning-rate grid of ``adam_tuned`` (defaults of :func:`~l2l_torch.evaluation.evaluate_learned_optimizer`).
        device, data_dir, subset: where the models train, their data, and a slice of it (quick runs only).
        check: called with each model's family (on ``device``) before its runs, e.g. to check that the optimizer
            can train its parameters.
        reuse: an earlier ``heldout.json`` of the same settings whose baseline runs and tuning are taken as they are
            (checked to reproduce: :func:`~l2l_torch.evaluation.check_reuse`), so only the learned optimizer trains.
        done: called with the result so far after each model (e.g. to write it).
        learned_lr_grid: tune the learned optimizer's ``lr`` (the multiplier on its learned step; ``lopt_factory``
            then takes ``lr=``) per model on the tuning instances, as ``adam_tuned``'s learning rate is
            (:func:`~l2l_torch.evaluation.tune_lr`, starting from this grid), and evaluate it at the best.
        after_model: called after each model's runs; what it returns is added to that model's entry.

    Returns:
        The content of ``heldout.json``: ``{"version", "seeds", "models": {name: {"model", "steps", "optimizers",
        "tuning", "ratio_to_adam_tuned", "target_met"}}, "comparisons", "summary"}``.
    """
    from l2l_torch.evaluation import LR_GRID, checked_reuse, evaluate_learned_optimizer

    out: dict[str, Any] = {}
    for i, m in enumerate(models):
        say = (lambda msg, m=m, i=i: progress(f"[{i + 1}/{len(models)} {m.name}] {msg}")) if progress else None
        family = m.family(data_dir, subset).to(device)
        if check is not None:
            check(family, m)
        n = steps or m.steps
        start = time.perf_counter()
        factory, learned, checked = lopt_factory, {}, None
        if reuse is not None:  # before any run of the learned optimizer (its lr tuning included), not after them
            checked = checked_reuse(family, reuse["models"][m.name], HELDOUT_BASELINES, n, say)
            if say:
                say(f"the reused baselines reproduce here ({checked['optimizer']}, seed {checked['seed']})")
        if learned_lr_grid:
            def tried(lr: float, score: float, say=say) -> None:
                if say:
                    say(f"tuning the learned optimizer's lr: {lr:g} -> train_loss {score:.4g}")

            best, scores = tune_learned_lr(family, lopt_factory, n, tune_seeds, learned_lr_grid, tried)
            factory = partial(lopt_factory, lr=best)
            learned = {"learned_lr": best, "learned_tuning": {str(k): v for k, v in scores.items()},
                       "learned_tuning_cost": len(scores) * tune_seeds * n}
        res = evaluate_learned_optimizer(family, factory, n, seeds, tune=True, tune_seeds=tune_seeds,
                                         baselines=HELDOUT_BASELINES, learned_name=LEARNED, progress=say,
                                         lr_grid=tuple(lr_grid or LR_GRID), tune_trials=tune_trials,
                                         reuse=None if reuse is None else reuse["models"][m.name], reuse_check=checked)
        opts = {k: {f: v[f] for f in _KEEP if f in v} for k, v in res["optimizers"].items()}
        ratio = ratio_to_adam(opts)
        out[m.name] = {"model": m.describe(), "steps": n, "optimizers": opts, "tuning": res["tuning"],
                       "ratio_to_adam_tuned": ratio,
                       "seconds": round(time.perf_counter() - start, 1), **learned,
                       **({"reuse_check": res["reuse_check"]} if "reuse_check" in res else {}),
                       **(after_model() if after_model is not None else {})}
        if done is not None and i + 1 < len(models):
            done(tabulate(out, seeds, tune_seeds))
    return tabulate(out, seeds, tune_seeds)


def tabulate(models: dict[str, dict[str, Any]], seeds: int, tune_seeds: int) -> dict[str, Any]:
    """``heldout.json`` of per-model results (those of :func:`run_heldout`, or several runs' merged): the
    comparisons, Holm-adjusted over all of them, and the summary."""
    comparisons = compare_models(models, seeds)
    verdicts = [c["verdict"] for c in comparisons]
    for r in models.values():  # the target: below TARGET_RATIO x adam_tuned, and trained at all
        r["learned_did_not_train"] = did_not_train(r["optimizers"][LEARNED])
        ratio = r["ratio_to_adam_tuned"]
        r["target_met"] = ratio is not None and ratio < TARGET_RATIO and not r["learned_did_not_train"]
    summary = {"models": len(models), "target_met": sum(r["target_met"] for r in models.values()),
               "learned_diverged_models": sum(bool(r["optimizers"][LEARNED]["diverged"]) for r in models.values()),
               "learned_did_not_train_models": sum(r["learned_did_not_train"] for r in models.values()),
               **{v: verdicts.count(v) for v in ("better", "level", "worse", "diverged")}}
    return {"version": HELDOUT_VERSION, "seeds": seeds, "tune_seeds": tune_seeds, "target_ratio": TARGET_RATIO,
            "models": models, "comparisons": comparisons, "summary": summary}


def _num(x: float | None, fmt: str = ".4g") -> str:
    return "—" if x is None or not math.isfinite(x) else format(x, fmt)


def markdown(result: dict[str, Any], header: str = "") -> str:
    """``heldout.md``: one row per model, the learned optimizer against both tuned references."""
    comps = {(c["model"], c["reference"]): c for c in result["comparisons"]}

    def loss(o: dict[str, Any] | None) -> str:
        if o is None:
            return "—"
        s = o.get("train_loss")
        text = f"{_num(s['mean'])} ± {_num(s['std'], '.2g')}" if s else "all diverged"
        return text + (f" ({o['diverged']} div.)" if o["diverged"] and s else "")

    def vs(model: str, ref: str) -> str:
        c = comps.get((model, ref))
        if c is None:
            return "—"
        return f"{c['verdict']} (Δ {_num(c['mean_diff'], '+.3g')}, p_holm {_num(c['p_holm'], '.2g')}, n {c['n']})"

    s = result["summary"]
    lines = [f"# Held-out benchmark, version {result['version']}", "", header,
             f"Final training loss, mean ± std over {result['seeds']} held-out seeds (the same for every optimizer). "
             f"Verdicts: paired t-test of learned − reference per seed, Holm-adjusted over the table's "
             f"{len(result['comparisons'])} comparisons, at 0.05; a learned run that diverged makes its row "
             f"`diverged`. Target: learned / adam_tuned < {result['target_ratio']}. \"did not train\": the learned "
             f"optimizer's mean final loss is above {DID_NOT_TRAIN} x its mean loss at step 0.", "",
             f"**Target met on {s['target_met']} of {s['models']} models**; verdicts: {s['better']} better, "
             f"{s['level']} level, {s['worse']} worse, {s['diverged']} diverged; the learned optimizer did not train "
             f"{s['learned_did_not_train_models']} of them.", "",
             "| model | outside meta-training | steps | learned | adam_tuned | ratio | target | vs adam_tuned "
             "| adamw_tuned | vs adamw_tuned |",
             "|---|---|---:|---|---|---:|:---:|---|---|---|"]
    for name, r in result["models"].items():
        o = r["optimizers"]
        tuned = f" (lr {r['learned_lr']:g})" if "learned_lr" in r else ""
        target = "yes" if r["target_met"] else "no (did not train)" if r["learned_did_not_train"] else "no"
        lines.append(f"| {name} | {r['model']['outside']} | {r['steps']} | {loss(o[LEARNED])}{tuned} | "
                     f"{loss(o.get('adam_tuned'))} (lr {_num(o.get('adam_tuned', {}).get('lr'), '.2g')}) | "
                     f"{_num(r['ratio_to_adam_tuned'], '.3f')} | {target} | "
                     f"{vs(name, 'adam_tuned')} | {loss(o.get('adamw_tuned'))} | {vs(name, 'adamw_tuned')} |")
    return "\n".join(lines) + "\n"


#: what two ``heldout.json`` must share to be merged, or for one to lend the other its baselines
SETTINGS = ("version", "seeds", "tune_seeds", "tune_trials", "lr_grid", "steps", "subset", "device")


def _read(folder: str, what: str) -> dict[str, Any]:
    from l2l_torch.cli import UserError

    path = Path(folder) / "heldout.json"
    if not path.is_file():
        raise UserError(f"{what}: no heldout.json in {folder}")
    return json.loads(path.read_text())


def _differing(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {k: (a.get(k), b.get(k)) for k in SETTINGS if a.get(k) != b.get(k)}


def _thin_curves(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with every optimizer's curves thinned and rounded as in ``results.json``
    (:func:`l2l_torch.plots.thin_curves`, :func:`l2l_torch.plots.round_curves`)."""
    from l2l_torch.plots import round_curves, thin_curves  # (matplotlib only when writing)

    return round_curves({**result, "models": {
        name: {**r, "optimizers": {k: thin_curves(o) for k, o in r["optimizers"].items()}}
        for name, r in result["models"].items()}})


def _write(result: dict[str, Any], out: Path, what: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # compact (no indentation): these files are committed as records, and indentation made them much larger
    text = json.dumps(_finite(_thin_curves(result)), separators=(",", ":"), allow_nan=False)
    (out / "heldout.json").write_text(text + "\n")
    lr = result.get("learned_lr") or 1.0  # (runs written before the flag existed: 1)
    lr = f" with its step times {lr:g} (`lr`)" if lr != 1.0 else ""
    if result.get("hypergradient"):
        lr += (f" with its `lr` adapted online by hypergradient descent (beta {result['hypergradient']:g}, from "
               f"{result.get('learned_lr') or 1.0:g} down)")
    if result.get("learned_lr_grid"):
        lr = (" with its `lr` (a multiplier on its step) tuned per model on the tuning instances, from "
              f"{result['learned_lr_grid']}")
    header = f"Learned optimizer: `{what}`{lr}. Command: `{result['command']}`.\n"
    (out / "heldout.md").write_text(markdown(result, header))


def _heldout_main(a) -> None:
    from l2l_torch.checkpoint import CheckpointError, check_compatible
    from l2l_torch.cli import UserError, fail, load_checkpoint
    from l2l_torch.data import DataError
    from l2l_torch.evaluation import ReuseRefused, check_test_seeds, host
    from l2l_torch.heldout import model
    from l2l_torch.hypergradient import HypergradientLR
    from l2l_torch.optim import LearnedOptimizer
    from l2l_torch.pretrained import checkpoint_path
    from l2l_torch.tasks.base import TEST_SEED_OFFSET

    try:
        models = [model(n) for n in a.models.split(",") if n] if a.models else list(HELDOUT_MODELS)
        check_test_seeds(TEST_SEED_OFFSET, a.seeds)
        lr_grid = [float(x) for x in a.lr_grid.split(",")] if a.lr_grid else None
        learned_grid = [float(x) for x in a.tune_learned_lr.split(",")] if a.tune_learned_lr else None
        if a.hypergradient is not None and (learned_grid or not a.hypergradient >= 0):
            raise ValueError("--hypergradient takes a rate >= 0 and adapts the lr from --learned-lr; it does not "
                             "go with --tune-learned-lr")
    except ValueError as e:
        fail(str(e))
    lopt, meta, device = load_checkpoint(checkpoint_path(a.checkpoint))
    settings = {"version": HELDOUT_VERSION, "seeds": a.seeds, "tune_seeds": a.tune_seeds, "tune_trials": a.tune_trials,
                "lr_grid": lr_grid, "steps": a.steps, "subset": a.subset, "device": str(device)}
    reuse = None
    try:
        if a.reuse_baselines:
            reuse = _read(a.reuse_baselines, "--reuse-baselines")
            missing = [m.name for m in models if m.name not in reuse["models"]]
            if _differing(reuse, settings) or missing:
                raise UserError(f"--reuse-baselines {a.reuse_baselines}: its settings differ from this run's "
                                f"(setting: (theirs, ours)) {_differing(reuse, settings)}"
                                + (f"; it has no {', '.join(missing)}" if missing else ""))
    except UserError as e:
        fail(str(e))

    def check(family, m: HeldOutModel) -> None:
        try:
            family.prepare_data()
            check_compatible(lopt, meta, family.sample(TEST_SEED_OFFSET).param_kinds())
        except DataError as e:
            raise UserError(str(e)) from None
        except CheckpointError as e:
            raise UserError(f"checkpoint {a.checkpoint} cannot optimize held-out model {m.name}: {e}") from None

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    command = " ".join(["python -m l2l_torch.benchmark", *a.argv])
    out = Path(a.out)

    def write(result: dict[str, Any]) -> None:
        _write({"checkpoint": a.checkpoint, "learned_lr": a.learned_lr, "learned_lr_grid": learned_grid,
                "hypergradient": a.hypergradient, "command": command, **host(), **settings, **result},
               out, a.checkpoint)

    adaptations: list[HypergradientLR] = []  # of the runs since the last model ended

    def learned(groups: list[dict[str, Any]], lr: float = a.learned_lr) -> LearnedOptimizer:
        opt = LearnedOptimizer(groups, lopt=lopt, lr=lr)
        if a.hypergradient is not None:
            adaptations.append(HypergradientLR(opt, beta=a.hypergradient))
        return opt

    def final_factors() -> dict[str, Any]:
        """Per learned run of the model that just ended (its held-out seeds, in order): each group's final lr factor."""
        factors = [hd.factors() for hd in adaptations]
        adaptations.clear()
        return {"hypergradient_factors": factors} if a.hypergradient is not None else {}

    try:
        result = run_heldout(learned, models,
                             a.seeds, a.steps, a.tune_seeds, a.tune_trials, lr_grid, device, None, a.subset, check,
                             progress, reuse, done=write, learned_lr_grid=learned_grid, after_model=final_factors)
    except UserError as e:
        fail(str(e))
    except ReuseRefused as e:
        fail(f"--reuse-baselines {a.reuse_baselines}: {e}")
    write(result)
    print(f"wrote {out / 'heldout.json'} and {out / 'heldout.md'}: target met on {result['summary']['target_met']} "
          f"of {len(models)} models")


def _merge_main(a) -> None:
    """One table of several runs of the same learned optimizer and settings on different models (Holm over all).

    Each model keeps the machine of its part (``models[name]["host"]``, :func:`l2l_torch.evaluation.host`); the
    top level has a host field only where every part agrees on it."""
    from l2l_torch.cli import UserError, fail
    from l2l_torch.evaluation import HOST_FIELDS

    try:
        parts = [_read(d, "merge") for d in a.folders]
        first = parts[0]
        for d, p in zip(a.folders[1:], parts[1:]):
            if _differing(first, p) or p.get("checkpoint") != first.get("checkpoint") or (
                    (p.get("learned_lr") or 1.0) != (first.get("learned_lr") or 1.0)) or (
                    p.get("hypergradient") != first.get("hypergradient")):
                raise UserError(f"merge: {d} differs from {a.folders[0]} in its checkpoint or settings "
                                f"{_differing(first, p)}")
        models = {k: {**v, "host": v.get("host") or {f: p.get(f) for f in HOST_FIELDS}}  # (a merge's part: its own)
                  for p in parts for k, v in p["models"].items()}
        if len(models) != sum(len(p["models"]) for p in parts):
            raise UserError("merge: a model appears in more than one folder")
    except UserError as e:
        fail(str(e))
    order = [m.name for m in HELDOUT_MODELS]
    models = dict(sorted(models.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    command = " ; ".join([p["command"] for p in parts] + [" ".join(["python -m l2l_torch.benchmark", *a.argv])])
    shared_host = {f: first.get(f) for f in HOST_FIELDS if len({p.get(f) for p in parts}) == 1}
    result = {**{k: first.get(k) for k in ("checkpoint", "learned_lr_grid", "hypergradient", *SETTINGS)},
              **shared_host,
              "learned_lr": first.get("learned_lr") or 1.0,
              "command": command,
              **tabulate(models, first["seeds"], first["tune_seeds"])}
    _write(result, Path(a.out), first["checkpoint"])
    print(f"wrote {Path(a.out) / 'heldout.md'}: {len(models)} models")


def main(argv: list[str] | None = None) -> None:
    from l2l_torch.cli import ArgumentParser, positive_float, positive_int

    p = ArgumentParser(prog="python -m l2l_torch.benchmark", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="benchmark", required=True)
    h = sub.add_parser("heldout", help="the held-out models against lr-tuned Adam and tuned AdamW")
    h.add_argument("--checkpoint", required=True, help="learned-optimizer file, or the name of a shipped one")
    h.add_argument("--out", required=True, help="output folder (heldout.json, heldout.md; written after each model)")
    h.add_argument("--seeds", type=positive_int, default=5, help="held-out instances per model (default 5)")
    h.add_argument("--models", help="comma-separated model names (default: all of l2l_torch.heldout)")
    h.add_argument("--tune-trials", type=positive_int,
                   help="adamw_tuned's trial budget (default: that of l2l_torch.tuning, 100)")
    h.add_argument("--tune-seeds", type=positive_int, default=3, help="tuning instances per trial (default 3)")
    h.add_argument("--lr-grid", help="comma-separated starting learning-rate grid of adam_tuned")
    h.add_argument("--steps", type=positive_int, help="optimizee steps of every model (quick runs; default: each "
                                                       "model's own)")
    h.add_argument("--subset", type=positive_int, help="use only this many images per split (quick runs)")
    h.add_argument("--learned-lr", type=positive_float, default=1.0,
                   help="the learned optimizer's lr, a multiplier on its learned step (default 1: as meta-trained)")
    h.add_argument("--tune-learned-lr", metavar="GRID",
                   help="tune the learned optimizer's lr per model on the tuning instances, from this comma-separated "
                        "grid (e.g. 1,0.3,0.1,0.03), as adam_tuned's learning rate is tuned")
    h.add_argument("--hypergradient", metavar="BETA", type=float,
                   help="adapt the learned optimizer's lr online during every run by hypergradient descent at this "
                        "rate (l2l_torch.hypergradient.HypergradientLR), starting from --learned-lr")
    h.add_argument("--reuse-baselines", metavar="DIR",
                   help="take the baselines of an earlier run's heldout.json (same settings; checked to reproduce)")
    m = sub.add_parser("merge", help="one table of several heldout runs of one optimizer on different models")
    m.add_argument("folders", nargs="+", help="folders holding heldout.json")
    m.add_argument("--out", required=True, help="output folder")
    a = p.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    (_heldout_main if a.benchmark == "heldout" else _merge_main)(a)


if __name__ == "__main__":
    main()
