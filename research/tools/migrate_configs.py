"""Rewrite meta-training configs written for the flat ``MetaModule`` arguments into today's layout, comments kept.

    pip install ruamel.yaml        # the one tool that rewrites YAML with its comments; not a dependency
    python -m research.tools.migrate_configs configs/*.yaml research/experiments/*/*.yaml

Moves, under ``model:``: ``horizon``, ``unroll``, ``min_unroll``, ``horizon_curriculum`` and ``loss_weights`` into
``truncation:`` (:class:`l2l_torch.truncation.TruncationSchedule`); ``estimator``, ``pes_sigma``, ``second_order`` and
``batch_tasks`` into ``estimator:`` (:class:`~l2l_torch.estimators.TruncatedBPTT` or
:class:`~l2l_torch.estimators.PES`); ``meta_optimizer``, ``meta_lr`` and ``weight_decay`` into the top-level
``optimizer:`` (``torch.optim.Adam`` or ``RMSprop``); ``meta_lr_decay: D`` into ``lr_scheduler:``
(``CosineAnnealingLR`` with ``T_max: D``: the same half cosine to 0 over D meta-steps, after which torch's schedule
rises again where the former one stayed at 0). A file without these keys is left as it is. Defaults are written out
(``meta_lr`` 1e-3, Adam) so that every migrated config says what it runs. A feature-based learned optimizer's
former options (``use_grad``, ``momentum_decays``, ``tensor_scale``, ...) become its ``features`` list
(:func:`l2l_torch.checkpoint.migrate_config`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

TRUNCATION = ("horizon", "unroll", "min_unroll", "horizon_curriculum", "loss_weights")
ESTIMATOR = ("estimator", "pes_sigma", "second_order", "batch_tasks")
OPTIMIZER = ("meta_optimizer", "meta_lr", "weight_decay")
OLD = (*TRUNCATION, *ESTIMATOR, *OPTIMIZER, "meta_lr_decay")


def _pop(model, key, default=None):
    return model.pop(key) if key in model else default


def migrate_lopt(model) -> bool:
    """Rewrite ``model.lopt.init_args`` to the current constructor arguments; True if anything changed."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    from l2l_torch.checkpoint import migrate_config

    lopt = model.get("lopt") if isinstance(model, dict) else None
    args = lopt.get("init_args") if isinstance(lopt, dict) else None
    if not isinstance(args, dict):
        return False
    new = migrate_config(lopt["class_path"], dict(args))
    if new == dict(args):
        return False
    kept = CommentedMap()
    for k, v in new.items():
        kept[k] = args[k] if k in args and args[k] == v else v
        if k == "features" and not (k in args and args[k] == v):
            kept[k] = CommentedSeq(v)
            kept[k].fa.set_flow_style()  # one line: [g, p, m0.9, ...]
    if hasattr(args, "ca"):
        kept.ca.comment = args.ca.comment
        kept.ca.items.update({k: v for k, v in args.ca.items.items() if k in kept})
    lopt["init_args"] = kept
    return True


def migrate(doc) -> bool:
    """Rewrite the parsed document ``doc`` in place; True if anything changed."""
    from ruamel.yaml.comments import CommentedMap

    model = doc.get("model") if isinstance(doc, dict) else None
    changed = migrate_lopt(model)
    if not isinstance(model, dict) or isinstance(model.get("estimator"), dict) or not any(k in model for k in OLD):
        return changed  # nothing of the former layout (an estimator: object is the current one)
    trunc = CommentedMap((k, _pop(model, k)) for k in TRUNCATION if k in model)
    pes = _pop(model, "estimator", "bptt") == "pes"
    sigma, second, batch = _pop(model, "pes_sigma"), _pop(model, "second_order"), _pop(model, "batch_tasks")
    if pes:
        est = CommentedMap(class_path="l2l_torch.estimators.PES",
                           init_args=CommentedMap(sigma=sigma if sigma is not None else 0.01))
    else:
        args = CommentedMap((k, v) for k, v in (("second_order", second), ("batch_tasks", batch)) if v is not None)
        est = CommentedMap(class_path="l2l_torch.estimators.TruncatedBPTT", **({"init_args": args} if args else {}))
    rms = _pop(model, "meta_optimizer", "adam") == "rmsprop"
    opt_args = CommentedMap(lr=_pop(model, "meta_lr", 1e-3))
    if "weight_decay" in model:
        opt_args["weight_decay"] = model.pop("weight_decay")
    decay = _pop(model, "meta_lr_decay", 0)
    model.insert(list(model).index("lopt") + 1 if "lopt" in model else len(model), "estimator", est)
    model.insert(list(model).index("estimator") + 1, "truncation",
                 CommentedMap(class_path="l2l_torch.truncation.TruncationSchedule", init_args=trunc))
    doc["optimizer"] = CommentedMap(class_path=f"torch.optim.{'RMSprop' if rms else 'Adam'}", init_args=opt_args)
    if decay:
        doc["lr_scheduler"] = CommentedMap(class_path="torch.optim.lr_scheduler.CosineAnnealingLR",
                                           init_args=CommentedMap(T_max=decay))
    return True


def main(argv: list[str] | None = None) -> None:
    from ruamel.yaml import YAML

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path)
    a = p.parse_args(argv)
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    for path in a.files:
        doc = yaml.load(path.read_text())
        if migrate(doc):
            with path.open("w") as f:
                yaml.dump(doc, f)
            print(f"migrated {path}")


if __name__ == "__main__":
    main()
