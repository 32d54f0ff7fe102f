"""Add or refresh a pretrained learned optimizer shipped in ``l2l_torch/pretrained/``.

    python scripts/add_pretrained.py research/experiments/quadratic [--name quadratic] [--evaluation DIR]
    python scripts/add_pretrained.py --heldout DIR --name NAME
    python scripts/add_pretrained.py --deployment benchmarks/results/deployment_heldout.json --name NAME

Copies ``results/<task>/optimizer.pt`` into the package and writes ``<name>.json`` beside it with
what it was trained on, its horizon, and a one-line summary built from ``results/<task>/results.json``.
``--heldout DIR`` (alone) records the held-out benchmark run in ``DIR/heldout.json`` in the shipped entry ``NAME``
(its model card's ``"heldout"``: models run, target, verdicts, where it is not better; ``"heldout_lr_tuned"`` for a
run that tuned the optimizer's ``lr`` per model, with the ``lr`` chosen for each; ``"heldout_hypergradient"`` for a
run that adapted it online with ``--hypergradient``). ``--deployment FILE`` (alone)
records what a training step with it costs against Adam's, from the rows of ``benchmarks/deployment.py --pretrained
NAME`` in FILE (its model card's ``"deployment"``).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    from l2l_torch.checkpoint import CheckpointError
    from l2l_torch.cli import fail
    from l2l_torch.pretrained import add_pretrained, set_deployment_card, set_heldout_card

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", nargs="?",
                   help="folder with optimizer.pt and results.json (e.g. research/experiments/quadratic)")
    p.add_argument("--name", help="entry name (default: the folder's name)")
    p.add_argument("--evaluation", help="folder of the results.json that gives the summary (default: results_dir)")
    p.add_argument("--heldout", metavar="DIR", help="record DIR/heldout.json in the entry --name (nothing else)")
    p.add_argument("--deployment", metavar="FILE",
                   help="record the deployment cost per step of FILE (benchmarks/deployment.py) in the entry --name")
    a = p.parse_args(argv)
    if a.deployment:
        if a.results_dir or a.heldout or not a.name:
            p.error("--deployment takes --name and nothing else")
        try:
            rows = set_deployment_card(a.name, a.deployment)
        except (FileNotFoundError, ValueError) as e:
            fail(str(e))
        for r in rows:
            print(f"{a.name}: one step on {r['model']} ({r['params']:,} parameters) costs {r['per_step_vs_adam']:.2f}x "
                  f"Adam's ({r['threads']} thread(s), {r['device']})")
        return
    if a.heldout:
        if a.results_dir or not a.name:
            p.error("--heldout takes --name and no results_dir")
        try:
            c = set_heldout_card(a.name, a.heldout)
        except (FileNotFoundError, ValueError) as e:
            fail(str(e))
        how = " with its lr tuned per model" if "chosen_lr" in c else ""
        print(f"{a.name}{how}: held-out target met on {c['target_met']} of {len(c['models_run'])} models run")
        return
    if not a.results_dir:
        p.error("results_dir is required (or --heldout DIR --name NAME)")
    try:
        entry = add_pretrained(a.results_dir, a.name, evaluation=a.evaluation)
    except (FileNotFoundError, CheckpointError, ValueError, KeyError) as e:
        fail(str(e))
    print(f"{entry['name']}: trained on {entry['trained_on']}, horizon {entry['horizon']}\n  {entry['summary']}")


if __name__ == "__main__":
    sys.exit(main())
