"""Meta-train a learned optimizer: ``python train.py --task NAME [LightningCLI overrides...]``.

``--task NAME`` selects ``configs/NAME.yaml``; every other argument goes to LightningCLI, e.g.
``--trainer.max_steps 50`` or ``--model.truncation.unroll 10``. ``--ckpt_path last`` resumes the run in
``--out`` (default ``runs/NAME``). The best learned optimizer on held-out task instances is
written to ``OUT/optimizer.pt``; TensorBoard logs go to ``OUT/tb/``. Ctrl-C (or SIGTERM) stops after
the meta-step in progress and saves ``OUT/checkpoints/last.ckpt`` and ``OUT/optimizer.pt`` first.
``python train.py --help`` is the short help; ``--help-all`` lists every LightningCLI option.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import textwrap
import warnings
from pathlib import Path

USAGE = ("python train.py --task NAME [--out DIR] [--ckpt_path last|FILE] [--checkpoint_every N] "
         "[--validate_first] [LightningCLI overrides ...]")

#: a few LightningCLI overrides worth knowing, with an example value each (``--help`` shows them)
COMMON_OVERRIDES = [
    ("--trainer.max_steps 2000", "meta-steps to train (one meta-step = one truncation + one update of theta)"),
    ("--trainer.max_time 00:01:30:00", "time budget, DD:HH:MM:SS (stops at whichever comes first)"),
    ("--trainer.accelerator cpu", "force the CPU (default: a GPU when there is one)"),
    ("--model.truncation.unroll 20", "optimizee steps per truncation (meta-step)"),
    ("--model.truncation.horizon 200", "optimizee steps before a fresh optimizee is sampled"),
    ("--optimizer.lr 0.001", "learning rate of the meta-optimizer"),
    ("--model.estimator l2l_torch.estimators.PES", "the meta-gradient estimator (default: truncated BPTT)"),
    ("--model.val_every 100", "meta-steps between validations on held-out task instances"),
    ("--model.lopt.init_args.hidden_size 20", "an option of the learned optimizer (see --print_config)"),
    ("--seed_everything 1", "random seed"),
]

#: range checks of the LightningCLI values (from the config or the command line), before anything is built:
#: (key, argparse type from l2l_torch.cli); ``None`` values are skipped (they mean "off" or "the default")
RANGE_CHECKS = [
    ("trainer.max_steps", "steps_or_unlimited"), ("trainer.max_epochs", "steps_or_unlimited"),
    ("trainer.max_time", "duration"), ("trainer.log_every_n_steps", "positive_int"),
    ("model.truncation.init_args.horizon", "positive_int"), ("model.truncation.init_args.unroll", "positive_int"),
    ("model.truncation.init_args.min_unroll", "positive_int"),
    ("model.truncation.init_args.horizon_curriculum", "nonnegative_int"),
    ("model.estimator.init_args.sigma", "positive_float"), ("model.tasks_per_step", "positive_int"),
    ("optimizer.init_args.lr", "positive_float"), ("optimizer.init_args.weight_decay", "nonnegative_float"),
    ("model.grad_clip", "nonnegative_float"), ("model.loss_bound", "positive_float"),
    ("model.val_every", "positive_int"), ("model.val_tasks", "positive_int"), ("model.val_horizon", "positive_int"),
    ("model.val_seed", "nonnegative_int"), ("model.seed", "nonnegative_int"),
]

#: messages of Lightning and torch that say nothing a user of train.py can act on (each matched exactly)
QUIET_WARNINGS = [
    # the config's optimizer:/lr_scheduler: replace MetaModule's default meta-optimizer on purpose
    (r"`MetaModule.configure_optimizers` will be overridden by `TrainCLI.configure_optimizers`\.", UserWarning),
    # our checkpoints are meant to hold theta after the meta-step's update; the warning's 13-line advice is for
    # checkpoints taken before it
    (r"Using ModelCheckpoint with manual optimization and every_n_train_steps, but no pre-optimization state "
     r"was saved", UserWarning),
    # Lightning's own use of a torch.utils._pytree class that torch deprecated (not fixable here)
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    # resuming writes into the checkpoint folder on purpose; a fresh run into a used folder gets our own note
    (r"Checkpoint directory .* exists and is not empty\.", UserWarning),
]
#: log records dropped, by logger and the exact opening words of the message
QUIET_LOGS = {
    # Lightning's advertisements for its cloud services
    "lightning.pytorch.utilities.rank_zero": ("💡 Tip: For seamless cloud logging", "💡 Tip: For seamless cloud uploads"),
    # torch's compiler looking for CUDA on a machine without it (the learned LSTM's compiled cell on a CPU)
    "torch.utils.cpp_extension": ("No CUDA runtime is found",),
}


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def _quiet_lightning() -> None:
    for message, category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    # args= is how train.py hands LightningCLI its share of the command line; not a mistake
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    for name, prefixes in QUIET_LOGS.items():
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in log.filters):
            log.addFilter(_DropMessages(prefixes))


def _pre_parser():
    from l2l_torch.cli import ArgumentParser, positive_int

    pre = ArgumentParser(prog="python train.py", usage=USAGE, add_help=False, allow_abbrev=False)
    pre.add_argument("--task", metavar="NAME", help="the experiment: configs/NAME.yaml (tasks listed below)")
    pre.add_argument("--out", metavar="DIR", help="output folder (default: runs/NAME)")
    pre.add_argument("--ckpt_path", metavar="last|FILE",
                     help="resume from a Lightning checkpoint; 'last' = OUT/checkpoints/last.ckpt")
    pre.add_argument("--checkpoint_every", type=positive_int, default=50, metavar="N",
                     help="meta-steps between checkpoints (OUT/checkpoints/last.ckpt; default 50)")
    pre.add_argument("--validate_first", action="store_true",
                     help="validate the initial optimizer before meta-training (meta-step 0), so that it is a "
                          "candidate for the exported optimizer.pt; always done for a warm start (init_from)")
    pre.add_argument("-h", "--help", action="store_true", help="this help")
    pre.add_argument("--help-all", action="store_true",
                     help="every LightningCLI option (of the task's config with --task)")
    return pre


def short_help() -> str:
    """The ``--help`` text: this script's flags, the tasks, a few common overrides, where to find the rest."""
    from l2l_torch.cli import available_tasks

    pre = _pre_parser()
    lines = [f"usage: {USAGE}", "", __doc__.splitlines()[0].replace("``", ""), "", "options:"]
    for action in pre._actions:
        flags = ", ".join(action.option_strings)
        if action.metavar or action.nargs != 0:
            flags += f" {action.metavar or action.dest.upper()}"
        lines += textwrap.wrap(action.help, width=110, initial_indent=f"  {flags:<24} ", subsequent_indent=" " * 27)
    tasks = available_tasks()
    lines += ["", f"tasks ({len(tasks)}, configs/NAME.yaml):"]
    lines += textwrap.wrap(", ".join(tasks), width=100, initial_indent="  ", subsequent_indent="  ")
    lines += ["", "common LightningCLI overrides (any key of the task's config can be set like this):"]
    lines += [f"  {flag:<40} {what}" for flag, what in COMMON_OVERRIDES]
    lines += ["", "examples:",
              "  python train.py --task quadratic --trainer.max_steps 200 --out runs/q",
              "  python train.py --task quadratic --out runs/q --ckpt_path last --trainer.max_steps 400"
              "   # continue it",
              "", "more:",
              "  python train.py --task NAME --print_config   the task's full configuration (every key and value)",
              "  python train.py --task NAME --help-all       every LightningCLI option, with the task's defaults",
              "  Ctrl-C (or SIGTERM) stops after the current meta-step and saves OUT/checkpoints/last.ckpt "
              "and OUT/optimizer.pt"]
    return "\n".join(lines)


def _check_ranges(config) -> None:
    """Out-of-range numbers in the parsed LightningCLI config: one :class:`UserError` naming the flag."""
    import l2l_torch.cli as cli_types

    for key, kind in RANGE_CHECKS:
        value = config.get(key)
        if value is None or (kind == "duration" and not isinstance(value, str)):
            continue  # None: off or default; max_time as a dict or timedelta from a config: Lightning checks it
        cli_types.check_value(f"--{key.replace('.init_args', '')}", value, getattr(cli_types, kind))


def _make_cli_class():
    from lightning.pytorch.callbacks import ProgressBar
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.plugins.io import CheckpointIO

    from l2l_torch.callbacks import MetaStepProgressBar
    from l2l_torch.reliability import AtomicCheckpointIO

    class TrainCLI(LightningCLI):
        """LightningCLI plus: range checks before anything is built, the meta-step progress bar, and the
        atomic checkpoint writer (added here rather than as a parser default, which jsonargparse cannot
        write into the saved config)."""

        def parse_arguments(self, parser, args) -> None:
            super().parse_arguments(parser, args)
            _check_ranges(self.config)  # before anything is seeded, built or written

        def _instantiate_trainer(self, config, callbacks):
            given = list(config.get("callbacks") or []) + list(callbacks)
            if config.get("enable_progress_bar", True) is not False and not any(
                    isinstance(c, ProgressBar) for c in given):
                callbacks = [*callbacks, MetaStepProgressBar()]
            plugins = config.get("plugins")
            plugins = [] if plugins is None else list(plugins) if isinstance(plugins, list) else [plugins]
            if not any(isinstance(p, CheckpointIO) for p in plugins):
                config["plugins"] = [*plugins, AtomicCheckpointIO()]
            return super()._instantiate_trainer(config, callbacks)

    return TrainCLI


def main(argv: list[str] | None = None) -> None:
    from l2l_torch.cli import UserError, config_path, fail

    args, rest = _pre_parser().parse_known_args(argv)
    if args.help:
        print(short_help())
        return
    if args.task is None and not args.help_all:
        fail("--task is required (python train.py --help lists the tasks)")
    try:
        cfg = config_path(args.task) if args.task is not None else None
    except UserError as e:
        fail(str(e))
    if args.help_all:  # LightningCLI's own help, with the task's values as defaults
        rest = [*(["--config", str(cfg)] if cfg else []), "--help"]
    out = Path(args.out or Path("runs") / (args.task or "TASK"))
    ckpt = args.ckpt_path
    if ckpt and ckpt != "last" and not Path(ckpt).is_file():
        fail(f"checkpoint not found: {ckpt}")
    if ckpt == "last":
        last = out / "checkpoints" / "last.ckpt"
        if not last.is_file():
            fail(f"--ckpt_path last: no checkpoint to resume at {last}")
        ckpt = str(last)

    from jsonargparse import lazy_instance as spec
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from l2l_torch.callbacks import ExportBestOptimizer
    from l2l_torch.meta_module import MetaModule
    from l2l_torch.reliability import (
        Interrupted,
        RestartLog,
        RunInfo,
        SaveOnStop,
        check_resume_checkpoint,
        logger_version_to_resume,
    )

    _quiet_lightning()
    # a resumed run (from this folder's checkpoints) writes on in the TensorBoard folder of the run it continues
    inside_out = ckpt is not None and Path(ckpt).resolve().is_relative_to(out.resolve())
    version = logger_version_to_resume(ckpt, out / "tb") if inside_out else None
    export = ExportBestOptimizer(dirpath=str(out))
    stop = SaveOnStop(out / "checkpoints" / "last.ckpt", export)
    trainer_defaults = {
        "default_root_dir": str(out),
        "logger": spec(TensorBoardLogger, save_dir=str(out), name="tb", version=version),
        "callbacks": [
            export,
            LearningRateMonitor(),
            RestartLog(),  # OUT/restarts.jsonl: step and theta digest at every (re)start
            RunInfo(),  # the TensorBoard version in every checkpoint, for a resumed run
            # OUT/checkpoints/last.ckpt every checkpoint_every meta-steps, whether or not a validation ran yet
            ModelCheckpoint(dirpath=str(out / "checkpoints"), save_top_k=0, save_last=True,
                            every_n_train_steps=args.checkpoint_every),
            # best-step=N.ckpt: the best validation so far, saved at that validation's meta-step N: the same
            # meta-step as optimizer.json's global_step, unless the starting point validated before fit (meta-step
            # 0, which has no Lightning checkpoint) stays the best: the summary says so
            ModelCheckpoint(dirpath=str(out / "checkpoints"), monitor="val/loss", mode="min", save_top_k=1,
                            filename="best-{step}", save_on_train_epoch_end=False),
            stop,  # after the ModelCheckpoints: last.ckpt at the end, and on Ctrl-C or SIGTERM (with optimizer.pt)
        ],
        "inference_mode": False,  # validation trains optimizees, which needs autograd
        "accelerator": "auto",
        "devices": 1,
        "log_every_n_steps": 10,
    }
    try:
        # exit_on_error=False: a bad or mistyped key raises (one line below) instead of printing the
        # whole usage; allow_abbrev=False: a mistyped key is an error, not a silent prefix match
        cli = _make_cli_class()(MetaModule, trainer_defaults=trainer_defaults, run=False,
                                save_config_kwargs={"overwrite": True},
                                parser_kwargs={"exit_on_error": False, "allow_abbrev": False},
                                args=["--config", str(cfg), *rest] if cfg else rest)
        if ckpt:  # before Lightning touches it: readable, a meta-training run, the same architecture
            check_resume_checkpoint(ckpt, cli.model.lopt)
        if cli.datamodule is not None:  # the config's data: section feeds the task family
            cli.model.task.attach(cli.datamodule)
        cli.model.task.prepare_data()  # the files are there (found, extracted or downloaded), else one line here
    except (ValueError, FileNotFoundError, UserError, argparse.ArgumentError, MisconfigurationException) as e:
        fail(" ".join(line.strip() for line in str(e).splitlines() if line.strip()))
    trainer = cli.trainer
    if not ckpt and (out / "checkpoints" / "last.ckpt").is_file() and trainer.is_global_zero:
        print(f"note: {out} holds an earlier run; this new run overwrites its checkpoints "
              f"(to continue that run instead: --ckpt_path last)", flush=True)
    if trainer.is_global_zero and cli.model.task.data_source:
        print(f"data: {cli.model.task.data_source}", flush=True)
    if trainer.is_global_zero:
        print(plan(out, trainer, cli.model), flush=True)
    if not ckpt and (cli.model.lopt.warm_started_from or args.validate_first):
        # the starting point is a candidate too (meta-step 0): if meta-training here only makes it worse,
        # the exported optimizer.pt is the starting point itself, and optimizer.json says so (meta_step 0)
        start = cli.model.lopt.warm_started_from or "the initial optimizer"
        print(f"validating {start} before meta-training", flush=True)
        trainer.validate(cli.model, verbose=False)
    try:
        trainer.fit(cli.model, ckpt_path=ckpt)
    except Interrupted as e:
        if trainer.is_global_zero:
            print(summary(args.task, out, trainer, cli.model, interrupted=stop.saved))
        raise SystemExit(128 + e.signum) from None
    except SystemExit:
        if stop.hard_stop:  # a second Ctrl-C: Lightning exits with 1; say what a shell expects of Ctrl-C
            last = out / "checkpoints" / "last.ckpt"
            print("stopped without saving; " + (f"the last checkpoint is {last}" if last.is_file() else
                                                 "no checkpoint was written yet"), file=sys.stderr)
            raise SystemExit(130) from None
        raise
    finally:
        stop.restore_signal_handlers()
    if trainer.is_global_zero:
        print(summary(args.task, out, trainer, cli.model))


def plan(out: Path, trainer, module) -> str:
    """What the run will do, said once before it starts: its limits, how the optimizer is selected, where it goes."""
    import datetime

    from lightning.pytorch.callbacks import Timer

    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    seconds = getattr(timer, "_duration", None)
    limits = [f"{trainer.max_steps} meta-steps"] if trainer.max_steps > 0 else []
    if seconds:
        limits.append(f"{datetime.timedelta(seconds=int(seconds))} (h:mm:ss)")
    hp = module.hparams
    warm = module.lopt.warm_started_from
    start = f", warm-started from {warm}" if warm else ""
    return (f"plan: meta-train {module.lopt.arch_name} ({type(module.estimator).__name__}{start}) for at most "
            + (" or ".join(limits) or "an unlimited number of meta-steps")
            + (", whichever comes first" if len(limits) > 1 else "") + "\n"
            f"      training task instances from seed {hp.get('seed')} on (--model.seed"
            + ("; the warm start fixes the initialisation, so runs differ only by this seed" if warm else "") + ")\n"
            f"      every {hp.get('val_every')} meta-steps it validates on {hp.get('val_tasks')} held-out task "
            f"instances; the best so far is written to {out / 'optimizer.pt'}")


def summary(task: str, out: Path, trainer, module, interrupted: dict | None = None) -> str:
    """Where the outputs went and what to run next."""
    import json

    from lightning.pytorch.callbacks import Timer

    q = shlex.quote
    step, max_steps = int(trainer.global_step), trainer.max_steps
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if interrupted is not None:
        head = f"interrupted at meta-step {step}: saved {interrupted['checkpoint']}"
    elif timer is not None and (timer.time_remaining() or 0) <= 0 and (max_steps < 0 or step < max_steps):
        head = f"time budget used up at meta-step {step}" + (f" of {max_steps}" if max_steps > 0 else "")
    else:
        head = f"done: meta-step {step}" + (f" of {max_steps}" if max_steps > 0 else "")
    best = out / "optimizer.pt"
    lines = [head, "outputs:"]
    meta: dict = {}
    if best.is_file():
        try:
            meta = json.loads(best.with_suffix(".json").read_text())
        except (OSError, ValueError):
            pass
        if meta.get("validated", True):
            what = (f"the best by validation on held-out tasks: meta-step {meta.get('global_step', '?')}, "
                    f"{meta.get('selected_by', 'val/loss')} {meta.get('selected_value', float('nan')):.4g}")
        else:
            what = f"meta-step {meta.get('global_step', '?')}, NOT validated (stopped before any validation)"
        lines.append(f"  learned optimizer  {best}  ({what}; details in {best.with_suffix('.json').name})")
    else:
        val_every = module.hparams.get("val_every")
        lines.append(f"  learned optimizer  none: no validation ran (one every {val_every} meta-steps; "
                     f"`python -m l2l_torch.export {out / 'checkpoints' / 'last.ckpt'} FILE.pt` exports the last)")
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("*.ckpt"))
    if ckpts:
        note = ""
        if meta.get("validated") and meta.get("global_step") == 0 and any(
                c.startswith("best-") for c in ckpts):  # Lightning's checkpoints start with meta-training
            note = "; best-step is the best of meta-training itself: the starting point, in optimizer.pt, did better"
        lines.append(f"  checkpoints        {out / 'checkpoints'}/  ({', '.join(ckpts)}{note})")
    log_dir = getattr(trainer.logger, "log_dir", None) if trainer.logger is not None else None
    if log_dir:
        lines.append(f"  TensorBoard        {log_dir}")
    lines.append("next:")
    if best.is_file():
        lines.append(f"  python evaluate.py --task {q(task)} --checkpoint {q(str(best))} --out {q(str(out / 'eval'))}")
    if log_dir:
        lines.append(f"  tensorboard --logdir {q(str(Path(log_dir).parent))}")
    more = f" --trainer.max_steps {max(step * 2, step + 1)}" if interrupted is None else ""
    lines.append(f"  python train.py --task {q(task)} --out {q(str(out))} --ckpt_path last{more}"
                 f"   # {'resume' if interrupted is not None else 'train on'}")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before meta-training started (during meta-training it stops cleanly)
        print("\ninterrupted before meta-training started: nothing to save", file=sys.stderr)
        sys.exit(130)
