"""Meta-train a learned optimizer: ``python train.py --task NAME [LightningCLI args...]``.

``--task NAME`` selects ``configs/NAME.yaml``; every other argument goes to LightningCLI, e.g.
``--trainer.max_steps 50`` or ``--model.unroll 10``. ``--ckpt_path last`` resumes the run in
``--out`` (default ``runs/NAME``). The best learned optimizer on held-out task instances is
written to ``OUT/optimizer.pt``; TensorBoard logs go to ``OUT/``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    from l2l_torch.cli import UserError, available_tasks, config_path, fail

    pre = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                  add_help=False, allow_abbrev=False)
    pre.add_argument("--task", help=f"experiment name, one of: {', '.join(available_tasks())}")
    pre.add_argument("--out", help="output folder (default: runs/TASK)")
    pre.add_argument("--ckpt_path", help="resume from a Lightning checkpoint; 'last' = the last one in --out")
    pre.add_argument("--checkpoint_every", type=int, default=50, help="meta-steps between checkpoints (default 50)")
    pre.add_argument("--validate_first", action="store_true",
                     help="validate the initial optimizer before meta-training (meta-step 0), so that it is a "
                          "candidate for the exported optimizer.pt; always done for a warm start (init_from)")
    args, rest = pre.parse_known_args(argv)
    if args.task is None:
        if any(a in ("-h", "--help") for a in rest):
            pre.print_help()
            print("\nAll other arguments are LightningCLI's: python train.py --task quadratic --help")
            return
        fail(f"--task is required; available tasks: {', '.join(available_tasks())}")
    try:
        cfg = config_path(args.task)
    except UserError as e:
        fail(str(e))
    out = Path(args.out or Path("runs") / args.task)
    ckpt = args.ckpt_path
    if ckpt and ckpt != "last" and not Path(ckpt).is_file():
        fail(f"checkpoint not found: {ckpt}")
    if ckpt == "last":
        last = out / "checkpoints" / "last.ckpt"
        if not last.is_file():
            fail(f"--ckpt_path last: no checkpoint to resume at {last}")
        ckpt = str(last)

    from jsonargparse import lazy_instance as spec
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.loggers import TensorBoardLogger

    from l2l_torch.callbacks import ExportBestOptimizer
    from l2l_torch.meta_module import MetaModule
    from l2l_torch.reliability import AtomicCheckpointIO, RestartLog

    trainer_defaults = {
        "default_root_dir": str(out),
        "logger": spec(TensorBoardLogger, save_dir=str(out), name="tb"),
        "callbacks": [
            ModelCheckpoint(dirpath=str(out / "checkpoints"), monitor="val/loss", mode="min", save_top_k=1,
                            save_last=True, every_n_train_steps=args.checkpoint_every, filename="best-{step}"),
            ExportBestOptimizer(dirpath=str(out)),
            LearningRateMonitor(),
            RestartLog(),  # OUT/restarts.jsonl: step and theta digest at every (re)start
        ],
        "plugins": [spec(AtomicCheckpointIO)],
        "inference_mode": False,  # validation trains optimizees, which needs autograd
        "accelerator": "auto",
        "devices": 1,
        "log_every_n_steps": 10,
    }
    from l2l_torch.reliability import check_resume_checkpoint

    # args= is how train.py hands LightningCLI its share of the command line; not a mistake
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    try:
        # exit_on_error=False: a bad or mistyped key raises (one line below) instead of printing the
        # whole usage; allow_abbrev=False: a mistyped key is an error, not a silent prefix match
        cli = LightningCLI(MetaModule, trainer_defaults=trainer_defaults, run=False,
                           save_config_kwargs={"overwrite": True},
                           parser_kwargs={"exit_on_error": False, "allow_abbrev": False},
                           args=["--config", str(cfg), *rest])
        if ckpt:  # before Lightning touches it: readable, a meta-training run, the same architecture
            check_resume_checkpoint(ckpt, cli.model.lopt)
    except (ValueError, FileNotFoundError, UserError, argparse.ArgumentError) as e:
        fail(" ".join(line.strip() for line in str(e).splitlines() if line.strip()))
    if not ckpt and (cli.model.lopt.warm_started_from or args.validate_first):
        # the starting point is a candidate too (meta-step 0): if meta-training here only makes it worse,
        # the exported optimizer.pt is the starting point itself, and optimizer.json says so (meta_step 0)
        start = cli.model.lopt.warm_started_from or "the initial optimizer"
        print(f"validating {start} before meta-training", flush=True)
        cli.trainer.validate(cli.model, verbose=False)
    cli.trainer.fit(cli.model, ckpt_path=ckpt)
    best = out / "optimizer.pt"
    if cli.trainer.is_global_zero:
        print(f"best learned optimizer (by validation on held-out tasks): {best if best.exists() else 'none saved'}")


if __name__ == "__main__":
    sys.exit(main())
