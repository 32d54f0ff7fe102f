"""Compare a learned optimizer with ``torch.optim`` baselines on held-out task instances.

Every run goes through one loop, :func:`l2l_torch.training.train_optimizee` (re-exported here), which never looks
at the optimizer's type. Learning rates of the baselines are tuned by a grid search on task instances disjoint
from the evaluation instances; ``adamw_tuned`` searches AdamW's whole recipe (:mod:`l2l_torch.tuning`).
"""

from __future__ import annotations

import functools
import math
import platform
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from l2l_torch.tasks.base import TEST_SEED_OFFSET, TUNE_SEED_OFFSET, TaskFamily
from l2l_torch.training import (  # noqa: F401 (re-exported: the loop every evaluation trains through)
    OptimizerFactory,
    RunResult,
    UpdateRecorder,
    param_groups,
    train_optimizee,
)


class WarmupAdam(torch.optim.Adam):
    """``torch.optim.Adam`` whose learning rate at step ``t`` (from 1) is ``lr * min(1, t / warmup)``.

    The same linear warm-up as small_fc's ``warmup`` (10 steps in the shipped optimizers), so that a learned
    optimizer with a warm-up can be compared with Adam given the same schedule (baseline ``adam_warmup``).
    """

    def __init__(self, params, lr: float = 1e-3, warmup: float = 10.0, **kwargs: Any) -> None:
        if warmup <= 0:
            raise ValueError(f"warmup must be > 0 steps, got {warmup}")
        super().__init__(params, lr=lr, **kwargs)
        self.warmup, self.t = float(warmup), 0
        self.base_lrs = [g["lr"] for g in self.param_groups]

    def factor(self, t: int) -> float:
        """The multiplier of every group's learning rate at step ``t`` (from 1); subclasses may add a schedule."""
        return min(1.0, t / self.warmup)

    @torch.no_grad()
    def step(self, closure=None):
        self.t += 1
        for group, base in zip(self.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * self.factor(self.t)
        return super().step(closure)


#: TensorFlow 2 Keras's optimizers, which the study used at their defaults ("The default values were left for each
#: of the standard optimiser hyper-parameters"), as torch optimizers: Keras's learning rates (SGD 0.01, the others
#: 0.001) and its other defaults where they differ from torch's (epsilon 1e-7, RMSprop's rho 0.9, Adagrad's initial
#: accumulator 0.1)
KerasAdam = functools.partial(torch.optim.Adam, eps=1e-7)
KerasRMSprop = functools.partial(torch.optim.RMSprop, alpha=0.9, eps=1e-7)
KerasAdagrad = functools.partial(torch.optim.Adagrad, initial_accumulator_value=0.1, eps=1e-7)

#: baselines and their default learning rates (torch's own defaults); ``adam_warmup`` is Adam with the shipped
#: learned optimizers' 10-step linear warm-up (not in evaluate.py's default list: ``--baselines adam,adam_warmup``);
#: ``keras_*`` are the study's baselines (:data:`BASELINE_SETS` ``study_defaults``)
BASELINES: dict[str, tuple[Callable[..., torch.optim.Optimizer], float]] = {
    "adam": (torch.optim.Adam, 1e-3),
    "rmsprop": (torch.optim.RMSprop, 1e-2),
    "sgd": (torch.optim.SGD, 1e-3),
    "adagrad": (torch.optim.Adagrad, 1e-2),
    "adam_warmup": (WarmupAdam, 1e-3),
    "keras_adam": (KerasAdam, 1e-3),
    "keras_rmsprop": (KerasRMSprop, 1e-3),
    "keras_sgd": (torch.optim.SGD, 1e-2),
    "keras_adagrad": (KerasAdagrad, 1e-3),
}
#: named sets of baselines for ``evaluate.py --baselines``
BASELINE_SETS: dict[str, list[str]] = {"study_defaults": ["keras_adam", "keras_rmsprop", "keras_sgd", "keras_adagrad"]}
#: learning-rate grid of the tuned baselines: half-decades from 1e-4 to 3
LR_GRID: tuple[float, ...] = tuple(round(m * 10.0**e, 10) for e in range(-4, 1) for m in (1, 3))


def baseline_factory(name: str, lr: float | None = None) -> OptimizerFactory:
    """Factory for a torch.optim baseline at ``lr`` (its default when None)."""
    cls, default_lr = BASELINES[name]
    return lambda groups: cls(groups, lr=default_lr if lr is None else lr)


def _half_decade(x: float, up: bool) -> float:
    """The next value of the 1, 3, 10, 30, ... ladder above (or below) ``x``."""
    e = math.floor(math.log10(x) + 1e-9)
    ladder = [m * 10.0**k for k in (e - 1, e, e + 1) for m in (1, 3)]
    return round(min(v for v in ladder if v > x * 1.01) if up else max(v for v in ladder if v < x / 1.01), 12)


def _extension_ladder(grid: Sequence[float]) -> tuple[int, int]:
    """How many learning rates :func:`tune_lr` can add below and above ``grid`` (down to 1e-7, up to 100)."""
    down, up = 0, 0
    lo, hi = min(grid), max(grid)
    while lo > 1e-7:
        lo, down = _half_decade(lo, up=False), down + 1
    while hi < 100:
        hi, up = _half_decade(hi, up=True), up + 1
    return down, up


def tune_runs_bound(grid: Sequence[float], seeds: int, extend: bool = True) -> int:
    """The most optimizee runs :func:`tune_lr` does for one optimizer: ``seeds`` per learning rate, for the grid
    and its extension (it grows in one direction only: past the edge that wins, while the new edge wins)."""
    down, up = _extension_ladder(grid) if extend else (0, 0)
    return (len(set(grid)) + max(down, up)) * seeds


def tune_lr(family: TaskFamily, name: str, steps: int, seeds: int = 3,
            grid: Sequence[float] = LR_GRID, metric: str = "train_loss",
            extend: bool = True, average: float | None = None,
            progress: Callable[[float, float], None] | None = None,
            factory: Callable[[float], OptimizerFactory] | None = None) -> tuple[float, dict[float, float]]:
    """Grid-search the learning rate of baseline ``name`` on instances disjoint from evaluation.

    ``factory(lr)``, when given, makes the optimizer to tune instead of the baseline ``name`` (e.g. a learned
    optimizer, whose ``lr`` multiplies its learned step).

    If the best learning rate lies on an edge of ``grid`` and ``extend`` is set, the grid grows by
    half-decades past that edge (down to 1e-7, up to 100) until the best is inside it, so a tuned
    baseline is never limited by the grid.

    ``average``: tune for the final metric of the averaged iterates (:func:`train_optimizee`).
    ``progress(lr, score)`` is called after each learning rate's ``seeds`` runs.

    Returns ``(best_lr, {lr: mean final metric})``; a diverged run counts as +inf.
    """
    scores: dict[float, float] = {}

    def score(lr: float) -> float:
        if lr not in scores:
            vals = []
            for i in range(seeds):
                task = family.sample(TUNE_SEED_OFFSET + i)
                make = baseline_factory(name, lr) if factory is None else factory(lr)
                r = train_optimizee(task, make, steps, TUNE_SEED_OFFSET + i, average=average)
                vals.append(math.inf if r.diverged else r.final[metric])
            scores[lr] = sum(vals) / len(vals)
            if progress:
                progress(lr, scores[lr])
        return scores[lr]

    lrs = sorted(grid)
    for lr in lrs:
        score(lr)
    while extend:
        best = min(scores, key=lambda lr: (scores[lr], lr))
        lo, hi = min(scores), max(scores)
        if best == hi and hi < 100:
            score(_half_decade(hi, up=True))
        elif best == lo and lo > 1e-7:
            score(_half_decade(lo, up=False))
        else:
            break
    best = min(scores, key=lambda lr: (scores[lr], lr))
    return best, dict(sorted(scores.items()))


def summarize(runs: list[RunResult]) -> dict[str, Any]:
    """Mean/std of the final metrics over seeds (diverged runs excluded and counted)."""
    ok = [r for r in runs if not r.diverged]
    out: dict[str, Any] = {"diverged": len(runs) - len(ok)}
    keys = sorted({k for r in ok for k in r.final})
    # per-seed finals (None for a diverged seed): every optimizer sees the same seeds, so verdicts can pair them
    out["per_seed"] = {k: [None if r.diverged else r.final.get(k) for r in runs] for k in keys}
    for k in keys:
        vals = torch.tensor([r.final[k] for r in ok], dtype=torch.float64)
        out[k] = {"mean": float(vals.mean()), "std": float(vals.std(unbiased=False)) if len(vals) > 1 else 0.0}
    curves = torch.stack([r.losses for r in runs]).double()
    out["curve"] = [None if not math.isfinite(v) else v for v in curves.mean(0).tolist()]
    out["curve_std"] = [None if not math.isfinite(v) else v for v in curves.std(0, unbiased=False).tolist()]
    for q in (25, 75):  # spread bands that stay meaningful on a log scale
        qs = torch.nanquantile(curves, q / 100, dim=0).tolist()
        out[f"curve_q{q}"] = [None if not math.isfinite(v) else v for v in qs]
    if any(r.epochs for r in ok):
        n_ep = min(len(r.epochs) for r in ok)
        ep = {k: torch.tensor([[r.epochs[e][k] for e in range(n_ep)] for r in ok], dtype=torch.float64)
              for k in ok[0].epochs[0]}
        out["epochs"] = [{k: float(v[:, e].mean()) for k, v in ep.items()} for e in range(n_ep)]
        # spread over seeds of each per-epoch metric (same keys; "step" has none)
        out["epochs_std"] = [{k: float(v[:, e].std(unbiased=False)) for k, v in ep.items() if k != "step"}
                             for e in range(n_ep)]
    return out


def compare(family: TaskFamily, optimizers: dict[str, tuple[OptimizerFactory, float | None]], steps: int,
            seeds: int, epoch_steps: int | None = None,
            progress: Callable[[str], None] | None = None, average: float | None = None,
            first_seed: int = TEST_SEED_OFFSET) -> dict[str, Any]:
    """Train ``seeds`` held-out instances of ``family`` (seeds ``first_seed``, ``first_seed + 1``, ...) with every
    optimizer.

    Args:
        optimizers: name -> (factory, learning rate to report or None).
        average: metrics at an average of the iterates (:func:`train_optimizee`).
        first_seed: the first held-out instance (:func:`check_test_seeds`).

    Returns:
        ``{name: {"lr", "final_loss", "diverged", <metric>: {"mean","std"}, "curve", ...}}``.
    """
    out: dict[str, Any] = {}
    for name, (factory, lr) in optimizers.items():
        if progress:
            progress(name)
        runs = [train_optimizee(family.sample(first_seed + i), factory, steps, first_seed + i,
                                epoch_steps=epoch_steps, average=average) for i in range(seeds)]
        s = summarize(runs)
        s["final_loss"] = s.get("train_loss", {"mean": float("nan"), "std": float("nan")})
        out[name] = {"lr": lr, **s}
    return out


def update_sizes(family: TaskFamily, optimizers: dict[str, tuple[OptimizerFactory, float | None]], steps: int,
                 seed: int = TEST_SEED_OFFSET) -> dict[str, Any]:
    """Train the held-out instance ``seed`` once with each optimizer, recording its update sizes
    (:class:`UpdateRecorder`). Returns ``{"seed", "steps", "optimizers": {name: {"lr", "diverged",
    "log10_range", "counts", "zeros", "mean_abs", "median_abs"}}}`` (the content of ``updates.json``)."""
    out: dict[str, Any] = {"seed": seed, "steps": steps, "optimizers": {}}
    for name, (factory, lr) in optimizers.items():
        rec = UpdateRecorder()
        r = train_optimizee(family.sample(seed), factory, steps, seed, record_updates=rec)
        out["optimizers"][name] = {"lr": lr, "diverged": r.diverged, **rec.to_dict()}
    return out


def updates_against_adam(family: TaskFamily, lopt: Any, steps: int, optimizers: Mapping[str, Any] | None = None,
                         adam_lr: float | None = None, seed: int = TEST_SEED_OFFSET) -> dict[str, Any]:
    """:func:`update_sizes` of the learned optimizer ``lopt`` and of Adam: at ``adam_lr`` if given, else at
    the tuned learning rate of ``optimizers["adam_tuned"]`` (the ``optimizers`` of a ``results.json``)
    when there is one, else at Adam's default."""
    from l2l_torch.optim import LearnedOptimizer  # (import cycle at module level)

    tuned = (optimizers or {}).get("adam_tuned")
    if adam_lr is not None:
        name, lr = "adam", adam_lr
    elif tuned is not None:
        name, lr = "adam_tuned", tuned["lr"]
    else:
        name, lr = "adam", BASELINES["adam"][1]
    return update_sizes(family, {lopt.arch_name: (lambda groups: LearnedOptimizer(groups, lopt=lopt), None),
                                 name: (baseline_factory("adam", lr), lr)}, steps, seed)


#: the fields of :func:`host`, in its order
HOST_FIELDS = ("processor", "cpu_capability", "threads")


def host() -> dict[str, Any]:
    """The processor that runs this process, the vector instruction set torch's CPU kernels use on it, and torch's
    CPU thread count, as ``{"processor", "cpu_capability", "threads"}``.

    A CPU run rounds differently on another processor (two of one model name can differ in AVX-512), or with another
    thread count, and some learned optimizers amplify that: an evaluation records all three so that a re-evaluation
    that does not reproduce can tell why.
    """
    processor = platform.processor() or platform.machine()
    try:  # Linux names the model there; platform.processor() often gives only the architecture
        with open("/proc/cpuinfo") as f:
            processor = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                             processor)
    except OSError:
        pass
    return dict(zip(HOST_FIELDS, (processor, torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())))


def _hosts_differ(reuse: Mapping[str, Any]) -> str:
    """A clause naming how the machine of an earlier evaluation (``reuse``) differs from this one, or ''."""
    here = host()
    diff = [f"{k} {reuse[k]!r} there, {here[k]!r} here" for k in here if k in reuse and reuse[k] != here[k]]
    return f" ({'; '.join(diff)})" if diff else ""


def check_test_seeds(first_seed: int, seeds: int) -> None:
    """Raise ValueError unless the held-out instances ``first_seed ... first_seed + seeds - 1`` lie in the test range
    ``[TEST_SEED_OFFSET, TUNE_SEED_OFFSET)``, which neither meta-training, validation nor tuning ever samples."""
    if not TEST_SEED_OFFSET <= first_seed <= TUNE_SEED_OFFSET - seeds:
        raise ValueError(f"held-out instances must lie in [{TEST_SEED_OFFSET}, {TUNE_SEED_OFFSET}); "
                         f"{seeds} from {first_seed} do not")


#: tuned baselines that are not one torch.optim baseline with its learning rate tuned: their whole recipe is searched
#: (:mod:`l2l_torch.tuning`); there is no default-setting row of them
SEARCHED_BASELINES: tuple[str, ...] = ("adamw_tuned",)


class ReuseRefused(RuntimeError):
    """``reuse`` baselines that do not reproduce on this machine (:func:`check_reuse`), refused by default."""


def tuned_factory(name: str, entry: Mapping[str, Any], steps: int) -> OptimizerFactory:
    """The optimizer of a tuned baseline as ``results.json`` records it (``entry``: its ``optimizers[name]``):
    ``adamw_tuned`` from its ``hparams``, ``<baseline>_tuned`` (or a default-setting baseline) from its ``lr``."""
    if name == "adamw_tuned":
        from l2l_torch.tuning import adamw_factory

        return adamw_factory(entry["hparams"], steps)
    return baseline_factory(name.removesuffix("_tuned"), entry["lr"])


def evaluate_learned_optimizer(family: TaskFamily, lopt_factory: OptimizerFactory, steps: int, seeds: int,
                               tune: bool = True, tune_seeds: int = 3, tune_steps: int | None = None,
                               baselines: Sequence[str] = tuple(BASELINES), learned_name: str = "lstm",
                               epoch_steps: int | None = None, tune_metric: str = "train_loss",
                               progress: Callable[[str], None] | None = None, lr_grid: Sequence[float] = LR_GRID,
                               reuse: Mapping[str, Any] | None = None, average: float | None = None,
                               tune_trials: int | None = None, allow_drift: bool = False,
                               first_seed: int = TEST_SEED_OFFSET,
                               reuse_check: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full comparison of ``evaluate.py``: the learned optimizer against every baseline at its
    default learning rate and (``tune``) at its learning rate tuned on separate instances.

    ``baselines`` names :data:`BASELINES` (a default row and an lr-tuned ``<name>_tuned`` row each) and
    :data:`SEARCHED_BASELINES` (``adamw_tuned``: AdamW's whole recipe searched with ``tune_trials`` Optuna trials,
    :func:`l2l_torch.tuning.tune_adamw`; only when ``tune``). Every tuned row records ``tuning_cost``: the
    optimizee steps its tuning took, comparable with a learned optimizer's meta-training cost.

    ``average``: every optimizer, learned or not, is evaluated (and the baselines tuned) at an exponential
    moving average of its iterates with this decay (:func:`train_optimizee`). ``first_seed``: the first of the
    ``seeds`` held-out instances (:func:`check_test_seeds`); tuning always uses ``TUNE_SEED_OFFSET + i``.

    ``tune_metric`` is the final metric the learning-rate search minimises (``train_loss``, or e.g.
    ``val_loss``); ``lr_grid`` is the starting grid of that search (it still grows past an edge).
    ``reuse``: an earlier ``results.json`` of the same task, steps and seeds whose baseline runs and
    tuning are taken as they are, so only the learned optimizer is trained; it must come from the same
    code and settings (``evaluate.py --reuse-baselines`` checks the settings). A run is deterministic per
    seed on one machine, but another CPU (its BLAS code path) or library version can round differently,
    and on some tasks (the STN) that drifts a 200-step run far: so one reused run is trained again first
    (:func:`check_reuse`, recorded as ``"reuse_check"``), and unless ``allow_drift`` a reuse that does not
    reproduce, or cannot be checked, raises :class:`ReuseRefused` (:func:`checked_reuse`; ``reuse_check``, the
    result of that function called earlier on the same reuse, skips training it again).
    Returns the ``optimizers`` part of ``results.json`` plus ``"tuning"``: ``{name: {lr: score}}`` (``adamw_tuned``:
    its search record).
    """
    check_test_seeds(first_seed, seeds)
    optimizers: dict[str, tuple[OptimizerFactory, float | None]] = {learned_name: (lopt_factory, None)}
    tuning: dict[str, Any] = {}
    held_out = {"epoch_steps": epoch_steps, "progress": progress, "average": average, "first_seed": first_seed}
    if reuse is not None:
        kept = _kept_baselines(reuse, baselines)
        check = reuse_check if reuse_check is not None else checked_reuse(
            family, reuse, baselines, steps, progress, average=average, first_seed=first_seed, allow_drift=allow_drift)
        results = compare(family, optimizers, steps, seeds, **held_out)
        return {"optimizers": {**results, **kept},
                "tuning": {k: v for k, v in reuse.get("tuning", {}).items() if k in kept or f"{k}_tuned" in kept},
                "reuse_check": check}
    grid_baselines = [b for b in baselines if b not in SEARCHED_BASELINES]
    runs_done, bound = 0, tune_runs_bound(lr_grid, tune_seeds) * len(grid_baselines)
    if tune and grid_baselines and progress:
        progress(f"tuning lr for {len(grid_baselines)} optimizer{'s' if len(grid_baselines) > 1 else ''}: up to "
                 f"{bound} runs of {tune_steps or steps} steps ({tune_seeds} per learning rate; {len(lr_grid)} "
                 "learning rates, more past an edge of the grid that wins)")
    extra: dict[str, dict[str, Any]] = {}  # what results.json records of each tuned row besides its runs
    for i, name in enumerate(grid_baselines):
        optimizers[name] = (baseline_factory(name), BASELINES[name][1])
        if tune:
            def tuned(lr: float, score: float, name: str = name, i: int = i) -> None:
                nonlocal runs_done
                runs_done += tune_seeds
                if progress:
                    result = f"{tune_metric} {score:.4g}" if math.isfinite(score) else "diverged"
                    progress(f"tuning {name} ({i + 1}/{len(grid_baselines)}): lr {lr:.3g} -> {result}"
                             f"  [{runs_done} of at most {bound} runs]")

            best, scores = tune_lr(family, name, tune_steps or steps, tune_seeds, grid=lr_grid, metric=tune_metric,
                                   average=average, progress=tuned)
            if progress:
                progress(f"tuning {name}: best lr {best:.3g} of {len(scores)} tried")
            tuning[name] = {str(k): v for k, v in scores.items()}
            optimizers[f"{name}_tuned"] = (baseline_factory(name, best), best)
            extra[f"{name}_tuned"] = {"tuning_cost": {"runs": len(scores) * tune_seeds,
                                                      "optimizee_steps": len(scores) * tune_seeds * (tune_steps or steps)}}
    if tune and "adamw_tuned" in baselines:
        from l2l_torch.tuning import DEFAULT_TRIALS, adamw_factory, tune_adamw

        hp, record = tune_adamw(family, tune_steps or steps, tune_trials or DEFAULT_TRIALS, tune_seeds, tune_metric,
                                average=average, progress=progress)
        if progress:
            progress(f"tuning adamw: best {hp} ({record['cost']['optimizee_steps']} optimizee steps)")
        tuning["adamw_tuned"] = record
        optimizers["adamw_tuned"] = (adamw_factory(hp, steps), hp["lr"])
        extra["adamw_tuned"] = {"hparams": hp, "tuning_cost": record["cost"]}
    results = compare(family, optimizers, steps, seeds, **held_out)
    for name, e in extra.items():
        results[name].update(e)
    return {"optimizers": results, "tuning": tuning}


def meta_training_cost(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """What meta-training a learned optimizer cost, in optimizee steps, from its checkpoint metadata (the ``meta``
    of :func:`l2l_torch.checkpoint.read_learned_optimizer`): ``global_step`` meta-steps, each running
    ``tasks_per_step`` task instances (times the estimator's particles per instance, 2 for PES) for ``unroll``
    steps. Validation runs and the stages of a warm start's lineage are not counted (``"warm_started_from"`` says
    when there were some); a file that does not record its estimator counts one optimizee per instance. None when
    the metadata lacks the figures."""
    try:
        particles = 2 if meta.get("estimator") == "PES" else 1
        steps = int(meta["global_step"]) * int(meta["tasks_per_step"]) * particles * int(meta["unroll"])
    except (KeyError, TypeError, ValueError):
        return None
    return {"optimizee_steps": steps, "meta_steps": int(meta["global_step"]),
            "counted": "this stage's meta-training, without validation", "estimator": meta.get("estimator"),
            "warm_started_from": meta.get("warm_started_from")}


#: relative difference above which a reused baseline run counts as not reproduced
REUSE_RTOL = 1e-4


def _kept_baselines(reuse: Mapping[str, Any], baselines: Sequence[str]) -> dict[str, Any]:
    """The rows of an earlier ``results.json`` (``reuse``) that ``baselines`` name, default and tuned."""
    return {k: v for k, v in reuse["optimizers"].items() if k in baselines or k.removesuffix("_tuned") in baselines}


def checked_reuse(family: TaskFamily, reuse: Mapping[str, Any], baselines: Sequence[str], steps: int,
                  progress: Callable[[str], None] | None = None, average: float | None = None,
                  first_seed: int = TEST_SEED_OFFSET, allow_drift: bool = False) -> dict[str, Any]:
    """:func:`check_reuse` of the rows of ``reuse`` that ``baselines`` name, raising :class:`ReuseRefused` when
    they do not reproduce here or cannot be checked (unless ``allow_drift``). Returns the check."""
    check = check_reuse(family, _kept_baselines(reuse, baselines), steps, progress, average=average, seed=first_seed)
    if not check.get("reproduced") and not allow_drift:
        why = (f"do not reproduce here: {check['optimizer']} on seed {check['seed']} differs by "
               f"{check['max_rel_diff']:.2g} (relative)") if check.get("reproduced") is False else (
               "cannot be checked here (no tuned baseline with per-seed figures to train again)")
        raise ReuseRefused(f"the reused baselines {why}; they came from another machine, library version or "
                           f"code{_hosts_differ(reuse)}. "
                           "Run the evaluation without --reuse-baselines (or pass --allow-drift to compare "
                           "against them anyway, which mixes two environments)")
    return check


def check_reuse(family: TaskFamily, reused: Mapping[str, Any], steps: int,
                progress: Callable[[str], None] | None = None, average: float | None = None,
                seed: int = TEST_SEED_OFFSET) -> dict[str, Any]:
    """Train the first held-out instance (``seed``) again with one reused baseline (``adam_tuned`` if there is one) and
    compare its final metrics with the stored ones.

    Returns ``{"optimizer", "lr", "seed", "stored", "rerun", "max_rel_diff", "reproduced"}``, ``reproduced``
    meaning every final metric agrees within :data:`REUSE_RTOL` (relative); ``reproduced`` is None when there is
    nothing to check (no tuned baseline, no per-seed figures stored, or that seed diverged then). When it is
    false, the reused baselines came from a machine or environment that rounds differently, and a comparison
    with them mixes two environments: a fresh evaluation (no ``--reuse-baselines``) is the fair one. A warning
    says so.
    """
    name = "adam_tuned" if "adam_tuned" in reused else next((k for k in reused if k.endswith("_tuned")), None)
    entry = reused.get(name) if name else None
    if entry is None or not entry.get("per_seed"):  # nothing to compare with (results.json without per-seed figures)
        return {"optimizer": name, "reproduced": None}
    if progress:
        progress(f"checking that the reused {name} reproduces (seed {seed})")
    r = train_optimizee(family.sample(seed), tuned_factory(name, entry, steps), steps, seed, average=average)
    stored = {k: v[0] for k, v in entry["per_seed"].items() if k in r.final and v and v[0] is not None}
    if not stored:  # that seed had diverged in the stored run
        return {"optimizer": name, "lr": entry["lr"], "seed": seed, "reproduced": None}
    worst = max(abs(r.final[k] - v) / max(abs(v), 1e-12) for k, v in stored.items())  # NaN if it diverges now
    out = {"optimizer": name, "lr": entry["lr"], "seed": seed, "stored": stored,
           "rerun": {k: r.final[k] for k in stored}, "max_rel_diff": worst, "reproduced": worst <= REUSE_RTOL}
    if not out["reproduced"]:
        warnings.warn(f"the reused {name} does not reproduce here (seed {seed}: largest relative difference "
                      f"{worst:.2g} over {sorted(stored)}); its runs came from another machine or environment, "
                      "so compare against a fresh evaluation (without --reuse-baselines)", stacklevel=2)
    return out
