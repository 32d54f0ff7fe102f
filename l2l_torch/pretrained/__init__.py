"""Learned optimizers shipped with l2l_torch (package data).

Each entry is a pair of files in this folder: ``NAME.pt`` (the versioned learned-optimizer
format of :mod:`l2l_torch.checkpoint`) and ``NAME.json`` (what it was trained on, its horizon and
a one-line summary of its measured results). Entries are added or refreshed from an evaluated
results folder, never typed by hand::

    python scripts/add_pretrained.py research/experiments/quadratic            # -> l2l_torch/pretrained/quadratic.*

The folder must hold ``optimizer.pt`` (from ``train.py``) and ``results.json`` (from
``evaluate.py``); the summary line is built from ``results.json``.

``list_pretrained()`` maps each name to its metadata (the JSON file, a plain ``dict``); printed, it is a
short table: name, architecture, what it was trained on, its measured result and what it is for. The
"use for" text is the entry's ``use_for`` field, else a guess from what it was meta-trained on (marked
``~``); entries with ``"recommended": true`` are marked ``*``. From a shell::

    python -m l2l_torch.pretrained               # the table
    python -m l2l_torch.pretrained NAME          # one entry's full metadata

Example:
    >>> from l2l_torch import LearnedOptimizer, list_pretrained
    >>> print(list_pretrained())                         # doctest: +SKIP
    >>> list_pretrained()["quadratic"]["horizon"]        # doctest: +SKIP
    100
    >>> opt = LearnedOptimizer(model.parameters(), pretrained="small_fc_warmup_pes")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent

#: the table's columns: (heading, width cap); a longer cell is cut and ends with "…". The last column gets what
#: is left of :data:`LINE_WIDTH`.
COLUMNS = (("name", 22), ("arch", 10), ("trained on", 40), ("measured (best baseline)", 46), ("use for", None))
LINE_WIDTH = 158


class PretrainedCatalog(dict):
    """``{name: metadata}`` of the shipped learned optimizers (a ``dict``; each value is the entry's JSON
    metadata, unchanged) that prints as a short table, one line per entry (:meth:`table`)."""

    def rows(self) -> list[dict[str, Any]]:
        """One :func:`describe_entry` row per entry, in the mapping's order."""
        return [describe_entry(name, meta) for name, meta in self.items()]

    def table(self) -> str:
        """An aligned text table: name, architecture, trained on, measured result, use for."""
        if not self:
            return "no pretrained learned optimizers"
        rows = self.rows()
        cells = [[r["name"] + (" *" if r["recommended"] else ""), r["arch"],
                  r["trained_on"] + (f", stage {r['stages']}" if r["stages"] > 1 else ""), r["measured"],
                  ("~" if r["use_for_derived"] else "") + r["use_for"]] for r in rows]
        widths = [min(cap or LINE_WIDTH, max(len(head), *(len(c[i]) for c in cells)))
                  for i, (head, cap) in enumerate(COLUMNS)]
        widths[-1] = min(widths[-1], max(len(COLUMNS[-1][0]), LINE_WIDTH - sum(widths[:-1]) - 2 * (len(widths) - 1)))

        def line(values: list[str]) -> str:
            return "  ".join(_cut(v, w).ljust(w) for v, w in zip(values, widths)).rstrip()

        lines = [line([head for head, _ in COLUMNS]), *(line(c) for c in cells)]
        notes = []
        if any(r["recommended"] for r in rows):
            notes.append("* recommended")
        if any(r["use_for_derived"] for r in rows):
            notes.append("~ guessed from what it was trained on")
        if any(r["stages"] > 1 for r in rows):
            notes.append("stage N: the last of N meta-training stages")
        notes.append("details: list_pretrained()[NAME] or python -m l2l_torch.pretrained NAME")
        footer = "; ".join(notes)
        return "\n".join([*lines, *([footer] if len(footer) <= LINE_WIDTH else notes)])

    __str__ = __repr__ = table

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython shows the table too
        p.text(self.table())


def list_pretrained(folder: str | os.PathLike | None = None) -> PretrainedCatalog:
    """The shipped learned optimizers: ``{name: {"trained_on", "horizon", "summary", ...}}``, sorted by name.

    The result is a ``dict`` (a :class:`PretrainedCatalog`) that prints as a short table; index it for the
    full metadata of one entry."""
    out = PretrainedCatalog()
    for meta in sorted(Path(folder or PACKAGE_DIR).glob("*.json")):
        if meta.with_suffix(".pt").is_file():
            out[meta.stem] = json.loads(meta.read_text())
    return out


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


_DATASET_SHORT = {"fashion_mnist": "FMNIST", "mnist": "MNIST", "cifar10": "CIFAR10"}
_FAMILY = re.compile(r"\b(\w+Family)\b(?!Mixture)")


#: families that only combine or transform others: described by what they wrap (an augmented family by
#: "augmented", see :func:`short_trained_on`)
_WRAPPERS = ("FamilyMixture", "AugmentedFamily")


def _families(trained_on: str) -> list[tuple[str, str]]:
    """``(class, its text)`` for each task family named in a ``trained_on`` string (mixtures name several)."""
    hits = [m for m in _FAMILY.finditer(trained_on) if m.group(1) not in _WRAPPERS]
    return [(m.group(1), trained_on[m.end(): hits[i + 1].start() if i + 1 < len(hits) else len(trained_on)])
            for i, m in enumerate(hits)]


def _arg(text: str, key: str) -> str | None:
    """The value of ``key`` in ``key=value`` or ``'key': value`` form (a word or a ``[...]`` list)."""
    m = re.search(rf"\b{key}'?\s*[=:]\s*('?[\w.-]+'?|\[[^\]]*\])", text)
    return m.group(1).replace("'", "") if m else None


def _short_family(cls: str, text: str) -> str:
    datasets = _arg(text, "datasets") or _arg(text, "dataset") or ""
    short = "+".join(_DATASET_SHORT.get(d.strip(), d.strip()) for d in datasets.strip("[]").split(",") if d.strip())
    if cls == "ImageClassificationFamily":
        model = _arg(text, "model") or "mlp"
        hidden = _arg(text, "hidden") if model == "mlp" else None
        return f"{short} {'MLP' if model == 'mlp' else 'CNN'}{(hidden or '').replace(' ', '')}".strip()
    if cls == "MLPMixtureFamily":
        return f"{short or 'image'} MLPs"
    if cls == "CNNMixtureFamily":
        return f"{short or 'image'} CNNs"
    if cls == "STNFamily":
        return "affNIST STN"
    if cls == "QuadraticFamily":
        dim = _arg(text, "dim")
        return f"{dim}-d quadratics" if dim else "quadratics"
    if cls == "LinearRegressionFamily":
        return "linear regression"
    return cls.removesuffix("Family")


#: the "use for" guess of an entry without a ``use_for`` field, by the task families it was meta-trained on
_USE_FOR = {"ImageClassificationFamily": "image classifiers", "MLPMixtureFamily": "image classifiers",
            "CNNMixtureFamily": "image classifiers",
            "STNFamily": "STN alignment", "QuadraticFamily": "toy problems", "LinearRegressionFamily": "toy problems"}


def short_trained_on(meta: dict[str, Any]) -> str:
    """What an entry was meta-trained on (its last stage, when there were several), in a few words: its task
    families, e.g. ``"FMNIST MLPs + affNIST STN"``."""
    text = str(meta.get("trained_on", "?"))
    fams = _families(text)
    if not fams:
        return text
    short = " + ".join(dict.fromkeys(_short_family(c, t) for c, t in fams))
    return f"augmented {short}" if "AugmentedFamily" in text else short


def short_summary(summary: str) -> str:
    """A :func:`summary_from_results` line in a few words: the evaluation task (without its overrides), and the
    learned optimizer's test accuracy (or final training loss where no accuracy was measured) against the best
    baseline's. Returns ``summary`` itself when it is not in that form."""
    m = re.match(r"(?P<task>[^,(]+?)(?: \([^)]*\))?, (?P<steps>\S+) steps, \S+ held-out instances: final train loss (?P<loss>\S+)"
                 r"(?: ± \S+)?(?:, test accuracy (?P<acc>\S+)(?: ± \S+)?)?, diverged (?P<div>\d+)"
                 r"(?:; best baseline (?P<base>\S+) \(lr [^)]*\): (?P<bloss>\S+)(?: ± \S+)?"
                 r"(?:, test accuracy (?P<bacc>\S+)(?: ± \S+)?)?)?$", summary)
    if not m:
        return summary
    g = m.groupdict()
    acc = g["acc"] is not None and (g["base"] is None or g["bacc"] is not None)
    ours, theirs, what = (g["acc"], g["bacc"], "test acc") if acc else (g["loss"], g["bloss"], "loss")
    line = f"{g['task']}: {what} {ours}" + (f" vs {g['base']} {theirs}" if g["base"] else "")
    return line + (f", {g['div']} diverged" if g["div"] != "0" else "")


def heldout_clause(meta: dict[str, Any]) -> str:
    """How the entry fared as shipped on the held-out benchmark, from its ``heldout`` block (written by
    ``scripts/add_pretrained.py --heldout``): ``"held-out models: as shipped it loses on 5 of 9"`` (worse than
    lr-tuned Adam, or diverged), then, when its ``heldout_hypergradient`` block exists, on how many models it met
    the target with its ``lr`` adapted online; ``""`` when the entry has no ``heldout`` block."""
    h = meta.get("heldout")
    if not isinstance(h, dict) or not h.get("models_run"):
        return ""
    v = (h.get("verdicts") or {}).get("adam_tuned") or {}
    lost = int(v.get("worse", 0)) + int(v.get("diverged", 0))
    clause = f"held-out models: as shipped it loses on {lost} of {len(h['models_run'])}"
    hd = meta.get("heldout_hypergradient")
    if isinstance(hd, dict) and hd.get("models_run"):
        clause += (f"; with HypergradientLR(beta={hd['hypergradient_beta']:g}) it is below "
                   f"{hd['target_ratio']:g}x tuned Adam on {hd['target_met']} of {len(hd['models_run'])}")
    return clause


def describe_entry(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """One entry in a few words: ``{"name", "arch", "trained_on", "stages", "measured", "use_for",
    "use_for_derived", "recommended"}``: ``trained_on`` is its last meta-training stage (:func:`short_trained_on`),
    ``stages`` how many there were. ``use_for`` is the metadata's ``use_for`` when it has one, else a guess
    from the task families of all its meta-training stages (``use_for_derived`` is then True); an entry measured
    on the held-out benchmark has :func:`heldout_clause` after it, in brackets."""
    use_for = meta.get("use_for")
    derived = not (isinstance(use_for, str) and use_for.strip())
    if derived:
        texts = [str(meta.get("trained_on", ""))] + [str(st.get("trained_on", "")) for st in meta.get("lineage") or []]
        fams = [c for text in texts for c, _ in _families(text)]
        use_for = ", ".join(dict.fromkeys(_USE_FOR.get(c, "problems like " + c.removesuffix("Family")) for c in fams))
        use_for = use_for or "problems like those it was trained on"
    clause = heldout_clause(meta)
    if clause:
        use_for = f"{use_for.strip()} ({clause})"
    return {"name": name, "arch": str(meta.get("arch", "?")), "trained_on": short_trained_on(meta),
            "stages": max(1, len(meta.get("lineage") or [])),
            "measured": short_summary(str(meta.get("summary", ""))) or "not measured",
            "use_for": " ".join(use_for.split()), "use_for_derived": derived,
            "recommended": meta.get("recommended") is True}


def pretrained_path(name: str, folder: str | os.PathLike | None = None) -> Path:
    """Path of the shipped learned optimizer ``name``.

    Raises:
        ValueError: no such name (the message lists the available ones).
    """
    available = list_pretrained(folder)
    if name not in available:
        raise ValueError(f"unknown pretrained optimizer {name!r}; available: "
                         f"{', '.join(sorted(available)) or 'none'}")
    return Path(folder or PACKAGE_DIR) / f"{name}.pt"


def checkpoint_path(checkpoint: str) -> str:
    """``checkpoint`` itself when it is a file, else the path of the shipped optimizer of that name (a name that
    is neither stays as it is, for the loader's own error)."""
    if not Path(checkpoint).exists() and checkpoint in list_pretrained():
        return str(pretrained_path(checkpoint))
    return checkpoint


def _fmt(stat: Any) -> str:
    if not isinstance(stat, dict) or stat.get("mean") is None or not math.isfinite(stat["mean"]):
        return "diverged"
    return f"{stat['mean']:.3g} ± {stat['std']:.2g}"


def trained_on(task: Any) -> str:
    """``{"class": "QuadraticFamily", "name": "quadratic", "dim": 10}`` -> ``"QuadraticFamily(dim=10)"``."""
    if not isinstance(task, dict):
        return str(task)
    args = ", ".join(f"{k}={v}" for k, v in task.items() if k not in ("class", "name"))
    return f"{task.get('class', task.get('name', '?'))}({args})"


def lineage(path: str | os.PathLike, meta: dict[str, Any], max_stages: int = 50) -> list[dict[str, Any]]:
    """The meta-training stages behind the optimizer file ``path`` (whose metadata is ``meta``), last first:
    ``{"file", "trained_on", "horizon", "global_step"}`` per stage, following each stage's
    ``warm_started_from``. The chain ends at a fresh start, at a file that is no longer there
    (``{"file": ..., "missing": True}``), or at a file written before runs recorded their warm start
    (``"warm_started_from": "not recorded"``)."""
    from l2l_torch.checkpoint import read_checkpoint, resolve_path

    stages: list[dict[str, Any]] = []
    while len(stages) < max_stages:
        stage = {"file": str(path), "trained_on": trained_on(meta.get("task")), "horizon": meta.get("horizon"),
                 "global_step": meta.get("global_step")}
        stages.append(stage)
        if "warm_started_from" not in meta:
            stage["warm_started_from"] = "not recorded"
            break
        path = meta["warm_started_from"]
        if path is None:
            break
        if not resolve_path(path).is_file():  # recorded paths may predate a move (checkpoint.resolve_path)
            stages.append({"file": str(path), "missing": True})
            break
        meta = read_checkpoint(path)["meta"]  # (the metadata only: no network is built)
    return stages


def summary_from_results(results: dict[str, Any]) -> str:
    """One line from an ``evaluate.py`` ``results.json``: the learned optimizer's final training loss
    (and test accuracy where measured) against the best baseline, over the held-out instances."""
    opts = results["optimizers"]
    learned = [n for n, o in opts.items() if o.get("lr") is None]
    if not learned:
        raise ValueError("results.json has no learned optimizer (an entry with lr null)")
    name = learned[0]
    lo = opts[name]

    def score(o: dict[str, Any]) -> float:
        s = o.get("final_loss") or {}
        m = s.get("mean")
        return m if isinstance(m, (int, float)) and math.isfinite(m) else math.inf

    baselines = {n: o for n, o in opts.items() if n != name}
    overrides = results.get("overrides") or {}
    task = results.get("task", "?") + (f" ({', '.join(f'{k}={v}' for k, v in overrides.items())})" if overrides else "")
    line = (f"{task}, {results.get('steps', '?')} steps, {results.get('seeds', '?')} held-out "
            f"instances: final train loss {_fmt(lo.get('final_loss'))}")
    if "test_accuracy" in lo:
        line += f", test accuracy {_fmt(lo['test_accuracy'])}"
    line += f", diverged {lo.get('diverged', 0)}"
    if baselines:
        best = min(baselines, key=lambda n: score(baselines[n]))
        b = baselines[best]
        line += f"; best baseline {best} (lr {b.get('lr')}): {_fmt(b.get('final_loss'))}"
        if "test_accuracy" in b:
            line += f", test accuracy {_fmt(b['test_accuracy'])}"
    return line


#: the fields of an entry written by hand, which a refresh of its file keeps
CURATED = ("use_for", "recommended")


def add_pretrained(results_dir: str | os.PathLike, name: str | None = None,
                   folder: str | os.PathLike | None = None,
                   evaluation: str | os.PathLike | None = None) -> dict[str, Any]:
    """Add (or refresh) the entry ``name`` from ``results_dir/optimizer.pt`` and ``results.json``.

    ``name`` defaults to the folder's name. ``evaluation`` is the folder whose ``results.json`` gives the
    summary when it is not ``results_dir`` itself (an optimizer evaluated in subfolders, one per task).
    The checkpoint is validated (format, version, architecture, finite weights) before it is copied. Refreshing
    an entry keeps its :data:`CURATED` fields (and drops its held-out and deployment cards, which described the
    old file).
    Returns the entry's metadata.

    Raises:
        FileNotFoundError: a file is missing. CheckpointError: the optimizer file is unusable.
    """
    import torch

    from l2l_torch.checkpoint import load_learned_optimizer

    results_dir = Path(results_dir)
    name = name or results_dir.resolve().name
    evaluation = Path(evaluation) if evaluation is not None else results_dir
    ckpt, res = results_dir / "optimizer.pt", evaluation / "results.json"
    for f in (ckpt, res):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found (run train.py and evaluate.py for this task first)")
    lopt, meta = load_learned_optimizer(ckpt)
    if not all(torch.isfinite(p).all() for p in lopt.parameters()):
        raise ValueError(f"{ckpt} has non-finite weights")
    results = json.loads(res.read_text())
    entry = {"name": name, "trained_on": trained_on(meta.get("task")), "horizon": meta.get("horizon"),
             "lineage": lineage(ckpt, meta),
             "arch": lopt.arch_name, "config": lopt.config(), "summary": summary_from_results(results),
             "state_bytes_per_param": lopt.state_bytes_per_param(), "source": str(results_dir),
             "evaluation": str(evaluation), "evaluation_command": results.get("command")}
    folder = Path(folder or PACKAGE_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    old = folder / f"{name}.json"
    if old.is_file():  # a refresh keeps what was written by hand; a held-out card described the old file
        entry.update({k: v for k, v in json.loads(old.read_text()).items() if k in CURATED})
    tmp = folder / f".{name}.pt.tmp"
    shutil.copyfile(ckpt, tmp)
    os.replace(tmp, folder / f"{name}.pt")
    _write_entry(folder / f"{name}.json", entry)
    return entry


def _write_entry(path: Path, entry: dict[str, Any]) -> None:
    """Write a shipped entry's ``NAME.json`` (every writer of the file goes through here)."""
    path.write_text(json.dumps(entry, indent=1, default=str, ensure_ascii=False) + "\n")


def _set_card_part(name: str, folder: str | os.PathLike | None, key: str, value: Any) -> None:
    """Set one part of the shipped entry ``name``'s model card (``NAME.json[key]``), keeping the rest."""
    path = pretrained_path(name, folder).with_suffix(".json")
    entry = json.loads(path.read_text())
    entry[key] = value
    _write_entry(path, entry)


def set_heldout_card(name: str, heldout_dir: str | os.PathLike, folder: str | os.PathLike | None = None) -> dict:
    """Record in the shipped entry ``name`` its held-out benchmark (``heldout_dir/heldout.json``, written by
    ``python -m l2l_torch.benchmark heldout``), summarised by :func:`l2l_torch.heldout.card`: under ``"heldout"``
    for a run of the optimizer as shipped, under ``"heldout_lr_tuned"`` for a run that tuned its ``lr`` per model
    (``--tune-learned-lr``), under ``"heldout_hypergradient"`` for a run that adapted it online from the shipped
    step (``--hypergradient``). Returns the card.

    Raises:
        ValueError: no entry ``name``; the run was of another optimizer; or it fixed another ``lr`` than the
            shipped step (``--learned-lr``: a diagnostic, not a way a user would choose it).
        FileNotFoundError: no heldout.json.
    """
    from l2l_torch.heldout import card

    pretrained_path(name, folder)  # an unknown name is refused before the run is read
    result = json.loads((Path(heldout_dir) / "heldout.json").read_text())
    if Path(str(result.get("checkpoint"))).stem != name:
        raise ValueError(f"{heldout_dir}/heldout.json is a run of {result.get('checkpoint')!r}, not of {name!r}")
    if result.get("learned_lr_grid"):
        key = "heldout_lr_tuned"
    elif result.get("hypergradient") is not None and (result.get("learned_lr") or 1.0) == 1.0:
        key = "heldout_hypergradient"
    elif (result.get("learned_lr") or 1.0) == 1.0:
        key = "heldout"
    else:
        raise ValueError(f"{heldout_dir}/heldout.json ran the optimizer at a fixed lr {result['learned_lr']:g} "
                         "(--learned-lr): a model card records it as shipped, or with its lr tuned per model")
    part = card(result, str(heldout_dir))
    _set_card_part(name, folder, key, part)
    return part


def deployment_card(name: str, bench: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """The rows of ``name`` in a ``deployment.json`` of ``benchmarks/deployment.py --pretrained NAME`` (``bench``,
    read from ``source``), as its model card keeps them: the model, its parameters and batch, milliseconds per
    training step of Adam and of the learned optimizer, their ratio, the threads and the device."""
    return [{"model": r["task"], "params": r["params"], "batch": r["batch"],
             "adam_ms_per_step": round(r["adam_ms"], 2), "learned_ms_per_step": round(r["learned_ms"], 2),
             "per_step_vs_adam": round(r["ratio"], 3),
             **({"hypergradient_beta": r["hypergradient_beta"],
                 "hypergradient_ms_per_step": round(r["hypergradient_ms"], 2),
                 "hypergradient_per_step_vs_adam": round(r["hypergradient_ratio"], 3)} if "hypergradient_ms" in r
                else {}),
             "threads": bench.get("threads"), "device": bench.get("device"), "source": source}
            for r in bench.get("rows", []) if r.get("learned") == name]


def set_deployment_card(name: str, deployment_json: str | os.PathLike, folder: str | os.PathLike | None = None) -> list:
    """Record in the shipped entry ``name`` what one training step with it costs against Adam's
    (:func:`deployment_card` of ``deployment_json``), under ``"deployment"``. Returns those rows.

    Raises:
        ValueError: no entry ``name``, or the file has no row of it. FileNotFoundError: no such file.
    """
    pretrained_path(name, folder)  # an unknown name is refused before the file is read
    rows = deployment_card(name, json.loads(Path(deployment_json).read_text()), str(deployment_json))
    if not rows:
        raise ValueError(f"{deployment_json} has no row of {name!r} (benchmarks/deployment.py --pretrained {name})")
    _set_card_part(name, folder, "deployment", rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m l2l_torch.pretrained [NAME] [--folder DIR]``: the table, or one entry's full metadata (JSON)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m l2l_torch.pretrained",
                                 description="The learned optimizers shipped with l2l_torch "
                                             "(LearnedOptimizer(params, pretrained=NAME)).")
    ap.add_argument("name", nargs="?", help="print this entry's full metadata instead of the table")
    ap.add_argument("--folder", help="a folder of NAME.pt/NAME.json pairs (default: the shipped ones)")
    a = ap.parse_args(argv)
    catalog = list_pretrained(a.folder)
    if a.name is None:
        print(catalog.table())
        return 0
    if a.name not in catalog:
        print(f"error: unknown pretrained optimizer {a.name!r}; available: {', '.join(catalog) or 'none'}",
              file=sys.stderr)
        return 2
    print(json.dumps(catalog[a.name], indent=1, ensure_ascii=False))
    return 0


__all__ = ["list_pretrained", "PretrainedCatalog", "describe_entry", "pretrained_path", "add_pretrained", "lineage",
           "summary_from_results", "PACKAGE_DIR"]
