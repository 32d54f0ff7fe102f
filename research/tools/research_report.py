"""Regenerate ``research/RESULTS.md`` and the README's results section from committed results.

    python -m research.tools.research_report              # re-run every committed evaluation, then regenerate
    python -m research.tools.research_report --no-rerun   # only regenerate the markdown from results/*/results.json
    python -m research.tools.research_report --quick      # smoke test: re-run each evaluation tiny, into a temp folder

Each ``results/<name>/results.json`` records the ``evaluate.py`` command that made it; re-running
replays that command (from the committed checkpoint). Nothing in the report is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from l2l_torch.plots import epoch_table, markdown_table, update_summary
from l2l_torch.stats import holm, paired_comparison, unpaired_comparison
from l2l_torch.stats import verdict as stats_verdict

REPO = Path(__file__).resolve().parents[2]

#: figures of the study (test accuracy, %, default learning rates) where it reports them
STUDY_REFERENCE: dict[str, dict[str, float]] = {
    "fmnist_t1": {"lstm": 77, "adam": 78, "rmsprop": 77, "sgd": 59, "adagrad": 32},
    "fmnist_t2": {"lstm": 85, "adam": 86, "rmsprop": 86, "sgd": 85, "adagrad": 81},
    "fmnist_t3": {"lstm": 77, "adam": 77, "rmsprop": 75, "sgd": 60, "adagrad": 27},
}


def compare(learned: dict[str, Any], adam: dict[str, Any], n: int, key: str = "final_loss",
            lower_is_better: bool = True) -> dict[str, Any]:
    """One test of a learned optimizer against tuned Adam on ``key``, for :func:`judge` to correct with its table's.

    Paired (:func:`l2l_torch.stats.paired_comparison`) when both carry per-seed values over the same seeds; otherwise
    (old results.json files) Welch's unpaired test on the stored mean, population std and the ``n`` seeds less the
    diverged ones (:func:`l2l_torch.stats.unpaired_comparison`). Returns the comparison's keys plus ``paired``,
    ``lower_is_better`` and ``status``: ``"diverged"`` or ``"better (Adam diverged)"`` where there is nothing to test.
    """
    nan = float("nan")
    out: dict[str, Any] = {"n": 0, "mean_diff": nan, "ci_low": nan, "ci_high": nan, "p": nan, "paired": True,
                           "lower_is_better": lower_is_better, "status": None}
    a, b = learned.get(key), adam.get(key)
    if not a or a.get("mean") is None:
        return {**out, "status": "diverged"}
    if not b or b.get("mean") is None:
        return {**out, "status": "better (Adam diverged)"}
    seed_key = "train_loss" if key == "final_loss" else key
    pa, pb = learned.get("per_seed", {}).get(seed_key), adam.get("per_seed", {}).get(seed_key)
    if pa and pb and len(pa) == len(pb):
        return {**out, **paired_comparison(pa, pb)}
    na, nb = n - (learned.get("diverged") or 0), n - (adam.get("diverged") or 0)
    return {**out, **unpaired_comparison((a["mean"], a["std"], na), (b["mean"], b["std"], nb)), "paired": False}


def judge(tests: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """``(verdict, Holm-adjusted p)`` of each of a table's tests (:func:`compare`), corrected across all of them.

    The verdict is :func:`l2l_torch.stats.verdict`'s "better" / "level" / "worse" at family-wise 5 %; a test
    without a p-value is "level" (adjusted p ``nan``), labelled "level (too few seeds)" below two seeds, and the
    special cases of :func:`compare` keep their label.
    """
    adjusted = holm([t["p"] if t["status"] is None else float("nan") for t in tests])
    out = []
    for t, p in zip(tests, adjusted):
        if t["status"] is not None:
            out.append((t["status"], p))
        elif t["n"] < 2:
            out.append(("level (too few seeds)", p))
        else:
            out.append((stats_verdict(t["mean_diff"], p, t["lower_is_better"]), p))
    return out


def p_cell(p: float, paired: bool = True) -> str:
    """An adjusted p-value as a table cell (``n/a`` without one; ``†`` marks an unpaired test)."""
    return ("n/a" if math.isnan(p) else f"{p:.2g}") + ("" if paired else " †")


UNPAIRED_NOTE = ("† unpaired: no per-seed values stored, so Welch's t-test on the stored mean and std "
                 "(converted from the population std to the sample std).")


def learned_name(res: dict[str, Any]) -> str:
    return next(k for k, v in res["optimizers"].items() if v.get("lr") is None)


def primary(res: dict[str, Any]) -> str:
    """The metric an experiment is judged on (what its baselines were tuned on)."""
    return res.get("primary_metric", "final_loss")


def higher_is_better(key: str) -> bool:
    """SSIM and accuracy figures are better high; losses low."""
    return key.endswith(("_ssim", "_accuracy"))


def primary_test(res: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    """:func:`compare` of an evaluation's learned optimizer with its tuned Adam on ``key`` (default: its primary metric)."""
    key = key or primary(res)
    return compare(res["optimizers"][learned_name(res)], res["optimizers"].get("adam_tuned", {}), res["seeds"], key,
                   not higher_is_better(key))


def summary_row(name: str, res: dict[str, Any], test: dict[str, Any], judged: tuple[str, float]) -> str:
    """One row of the summary table; ``test`` is :func:`primary_test` of ``res``, ``judged`` its entry of :func:`judge`."""
    lo = res["optimizers"][learned_name(res)]
    ad = res["optimizers"].get("adam_tuned", {})
    key = primary(res)
    f = lambda s: "diverged" if not s or s.get("mean") is None else f"{s['mean']:.4g} ± {s['std']:.2g}"  # noqa: E731
    acc = lambda o: "" if "test_accuracy" not in o else f"{100 * o['test_accuracy']['mean']:.1f}%"  # noqa: E731
    label = "train loss" if key == "final_loss" else key.replace("_", " ")
    return (f"| [{name}](experiments/{name}/) | {res['steps']} | {res['seeds']} | {label} | {f(lo.get(key))} | "
            f"{f(ad.get(key))} (lr {ad.get('lr', float('nan')):g}) | {acc(lo)} | {acc(ad)} | "
            f"{p_cell(judged[1], test['paired'])} | {judged[0]}{reuse_note(res)} |")


def summary_rows(results: dict[str, dict[str, Any]]) -> tuple[list[str], bool]:
    """The rows of one table of evaluations, Holm-corrected across them, and whether any test is unpaired."""
    tests = [primary_test(r) for r in results.values()]
    rows = [summary_row(n, r, t, j) for (n, r), t, j in zip(results.items(), tests, judge(tests))]
    return rows, any(not t["paired"] and t["status"] is None for t in tests)


def reuse_note(res: dict[str, Any]) -> str:
    """``" (reused baselines off by X %)"`` when the evaluation reused baselines that did not reproduce on its
    machine (``reuse_check`` of ``evaluate.py --reuse-baselines``), else ``""``."""
    chk = res.get("reuse_check") or {}
    if chk.get("reproduced") is not False:
        return ""
    return f" (reused baselines off by {100 * chk['max_rel_diff']:.2g} %)"


def updates_line(updates: dict[str, Any]) -> str:
    """One sentence on the update sizes in ``updates.json``: median and 10-90th percentiles per optimizer."""
    parts = []
    for n, st in update_summary(updates).items():
        lr = updates["optimizers"][n].get("lr")
        parts.append(f"{n}{'' if lr is None else f' (lr {lr:g})'} {st['p50']:.2g} ({st['p10']:.2g}–{st['p90']:.2g})"
                     + (f", {100 * st['zero_fraction']:.2g}% exactly 0" if st["zero_fraction"] >= 1e-3 else ""))
    return (f"Update sizes on one held-out instance (seed {updates.get('seed')}, all {updates.get('steps')} steps, "
            f"every coordinate), median |update| (10th–90th percentile): " + "; ".join(parts) + "."
            + (f" Made by `{updates['command']}`." if updates.get("command") else ""))


def provenance_lines(res: dict[str, Any], rel: str, folder: Path | None) -> list[str]:
    """How to make the checkpoint again: ``python train.py --task NAME`` when the checkpoint lies in
    ``research/experiments/NAME/`` and ``configs/NAME.yaml`` exists, and links to the ``COMMAND.md`` files (of the
    experiment's folder or its parent) that hold the exact commands and their circumstances."""
    out = []
    ckpt = Path(res.get("checkpoint") or "")
    if ckpt.parent.name and (REPO / "configs" / f"{ckpt.parent.name}.yaml").is_file():
        task = ckpt.parent.name
        out.append(f"Meta-train this checkpoint again from scratch: `python train.py --task {task} --out runs/{task}` "
                   f"(then `cp runs/{task}/optimizer.pt {ckpt}`).")
    if folder is not None:
        docs = [(folder / "COMMAND.md", f"{rel}/COMMAND.md")]
        if "/" in rel:
            docs.append((folder.parent / "COMMAND.md", f"{rel.rsplit('/', 1)[0]}/COMMAND.md"))
        found = [link for f, link in docs if f.is_file()]
        if found:
            out.append(f"Exact commands and circumstances: [COMMAND.md]({found[0]}).")
    return out + [""] if out else []


def section_verdicts(res: dict[str, Any]) -> str:
    """The sentence of an experiment's section that judges it against tuned Adam: its primary metric and, where
    evaluated, test accuracy, Holm-corrected across these (the section's own family of tests)."""
    keys = [primary(res)] + (["test_accuracy"] if "test_accuracy" in res["optimizers"][learned_name(res)] else [])
    tests = [primary_test(res, k) for k in keys]
    parts = []
    for k, t, (v, p) in zip(keys, tests, judge(tests)):
        ci = "" if math.isnan(t["ci_low"]) else f", 95 % CI [{t['ci_low']:+.3g}, {t['ci_high']:+.3g}]"
        d = "" if math.isnan(t["mean_diff"]) else f"difference {t['mean_diff']:+.3g}{ci}, "
        how = "paired t-test" if t["paired"] else "unpaired Welch t-test (no per-seed values)"
        parts.append(f"on {'train loss' if k == 'final_loss' else k.replace('_', ' ')} **{v}** "
                     f"({d}{how}, p (Holm) {p_cell(p)})")
    family = "" if len(tests) == 1 else f"; Holm-corrected across these {len(tests)} tests"
    return (f"Verdict against tuned Adam (difference: learned minus tuned Adam{family}): "
            + "; ".join(parts) + f"{reuse_note(res)}.")


def experiment_section(name: str, res: dict[str, Any], rel: str, folder: Path | None = None) -> str:
    """Markdown of one experiment. ``folder`` (the experiment's results folder) adds the per-epoch and
    update-size figures where it holds them; its ``table.md`` (every optimizer's figures, written by
    ``evaluate.py``) is linked rather than repeated, and so is the command where a ``COMMAND.md`` holds it."""
    averaged = "" if res.get("average") is None else \
        f"; every optimizer evaluated at the moving average of its iterates (decay {res['average']:g})"
    provenance = provenance_lines(res, rel, folder)
    documented = any(line.startswith("Exact commands") for line in provenance)
    lines = [f"## {name}", ""] + ([] if documented else [f"`{res.get('command', '?')}`", ""]) + [
             f"{res['steps']} optimizee steps, {res['seeds']} held-out seeds; checkpoint "
             f"`{res.get('checkpoint')}` (selected meta-step: {res.get('checkpoint_meta', {}).get('global_step', '?')})"
             f"{averaged}.", ""]
    lines += provenance
    table = folder is not None and (folder / "table.md").is_file()
    lines.append(f"Every optimizer's figures (and the per-epoch table where evaluated): [table.md]({rel}/table.md).\n"
                 if table else markdown_table(res))
    lines.append(section_verdicts(res))
    ref = STUDY_REFERENCE.get(name)
    if ref:
        ours = {k: res["optimizers"].get(k if k != "lstm" else learned_name(res), {}).get("test_accuracy")
                for k in ref}
        lines += ["", "| test accuracy | " + " | ".join(ref) + " |", "|---|" + "---|" * len(ref),
                  "| study (default lrs) | " + " | ".join(f"{v:g}%" for v in ref.values()) + " |",
                  "| ours (default lrs) | " + " | ".join(
                      "–" if not o or o.get("mean") is None else f"{100 * o['mean']:.1f}%" for o in ours.values()) + " |"]
    lines.append("")
    if folder is not None and (folder / "curves.png").is_file():
        lines += [f"![{name}]({rel}/curves.png)", ""]
    ep = None if table else epoch_table(res)
    if ep:
        lines += [ep]
    if folder is not None and (folder / "epochs.png").is_file():
        lines += [f"![{name}: per-epoch validation]({rel}/epochs.png)", ""]
    if folder is not None and (folder / "updates.json").is_file():
        lines += [updates_line(json.loads((folder / "updates.json").read_text())), ""]
        if (folder / "updates.png").is_file():
            lines += [f"![{name}: update sizes]({rel}/updates.png)", ""]
    return "\n".join(lines)


def memory_lines(m: dict[str, Any]) -> list[str]:
    """Markdown lines of ``benchmarks/results/memory.json`` (``benchmarks/memory.py``)."""
    def mib(v: float | None) -> str:
        return "n/a" if v is None else f"{v / 2**20:.1f}"

    r0 = m["rows"][0]
    peak = "CUDA allocator" if r0["device"] == "cuda" else "CPU allocator, torch.profiler"
    mode = (" with `LSTMOptimizer(recompute_gates=True)`" if m.get("recompute_gates") else "")
    flag = " --recompute-gates" if m.get("recompute_gates") else ""
    lines = [f"Memory of one meta-training truncation and its meta-backward against the unroll length{mode} "
             f"({m['task']}, {m.get('params', '?')} params, {r0['device']}, `python benchmarks/memory.py{flag}`): "
             "bytes that autograd holds for the meta-backward when the forward ends (unique storages), the "
             "allocator's peak above the start, and the process's peak resident memory above the start "
             "(coarse: the C allocator reuses freed pages):", "",
             f"| unroll | saved for backward MiB | peak MiB ({peak}) | peak RSS MiB |", "|---|---|---|---|"]
    lines += [f"| {r['unroll']} | {mib(r['saved_bytes'])} | {mib(r['peak_bytes'])} | {mib(r.get('peak_rss_bytes'))} |"
              for r in m["rows"]]
    names = {"saved_bytes": "saved for backward", "peak_bytes": "allocator peak", "peak_rss_bytes": "peak RSS"}
    fits = "; ".join(f"{names.get(k, k)} {f['bytes_per_unrolled_step'] / 2**20:.2f} MiB per unrolled step "
                     f"(intercept {f['intercept_bytes'] / 2**20:.1f} MiB, R² = {f['r2']:.4f})"
                     for k, f in m["fits"].items())
    per = ""
    if m.get("params") and "saved_bytes" in m["fits"]:
        per = (f" Saved per unrolled step and optimizee parameter: "
               f"{m['fits']['saved_bytes']['bytes_per_unrolled_step'] / m['params']:.0f} B, of which "
               f"{m['lstm_state_bytes_per_param']} B are the LSTM's new hidden and cell states"
               + ("" if m.get("recompute_gates") else " (the rest: mostly the activated gates and tanh(c'), "
                  "kept so that the backward recomputes nothing)") + ".")
    return lines + ["", f"Linear fits: {fits}.{per} Optimizer state per parameter: LSTM "
                    f"{m['lstm_state_bytes_per_param']} B, Adam {m['adam_state_bytes_per_param']} B.", ""]


def iter_results(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(folder, parsed results.json)`` of every ``evaluate.py`` output under ``root``, in path order."""
    for p in sorted(root.glob("**/results.json")):
        yield p.parent, json.loads(p.read_text())


def find_results(root: Path) -> dict[str, dict[str, Any]]:
    """Every ``evaluate.py`` output under ``root`` that has a tuned Adam to judge against (the tables' reference;
    an evaluation run with other baselines only, e.g. ``--baselines adam_warmup``, is left out)."""
    found = {d.name if d.parent == root else str(d.relative_to(root)): res for d, res in iter_results(root)}
    return {k: v for k, v in found.items() if "adam_tuned" in v.get("optimizers", {})}


def rerun(results: dict[str, dict[str, Any]], root: Path, quick: bool, out_root: Path | None) -> None:
    for name, res in results.items():
        cmd = shlex.split(res.get("command", ""))
        if len(cmd) < 2 or cmd[:2] != ["python", "evaluate.py"]:
            print(f"skip {name}: no evaluate.py command recorded", file=sys.stderr)
            continue
        args = cmd[2:]
        if quick:
            args = _replace(args, {"--seeds": "2", "--tune-seeds": "1", "--steps": str(min(res["steps"], 10)),
                                   "--out": str(out_root / name), "--reuse-baselines": None})
        print(f"[report] {name}: python evaluate.py {' '.join(args)}", flush=True)
        subprocess.run([sys.executable, "evaluate.py", *args], cwd=REPO, check=True)


def _replace(args: list[str], new: dict[str, str | None]) -> list[str]:
    """``args`` with each option of ``new`` set to its value (``None``: the option removed)."""
    out, skip = [], False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a in new:
            skip = i + 1 < len(args) and not args[i + 1].startswith("--")
            continue
        out.append(a)
    for k, v in new.items():
        if v is not None:
            out += [k, v]
    return out


def study_table(results: dict[str, dict[str, Any]]) -> str | None:
    """Markdown: the study's test accuracies (default learning rates) beside ours, at default and at tuned
    learning rates, for the experiments the study reports a table for; None when none is present."""
    rows = []
    for name, ref in STUDY_REFERENCE.items():
        res = results.get(name)
        if res is None:
            continue
        opts = res["optimizers"]

        def acc(key: str, opts: dict[str, Any] = opts) -> str:
            o = opts.get(key, {}).get("test_accuracy")
            return "–" if not o or o.get("mean") is None else f"{100 * o['mean']:.1f} ± {100 * o['std']:.1f}"

        learned = learned_name(res)
        rows += [f"| {name} | study, default lrs | " + " | ".join(f"{v:g}" for v in ref.values()) + " |",
                 f"| | ours, default lrs | {acc(learned)} | " + " | ".join(acc(k) for k in list(ref)[1:]) + " |",
                 f"| | ours, tuned lrs | {acc(learned)} | " + " | ".join(acc(f"{k}_tuned") for k in list(ref)[1:]) + " |"]
        # other learned optimizers evaluated on the very same setting and seeds (e.g. the family-rows family ones)
        for other, o_res in sorted(results.items()):
            if other != name and all(o_res.get(k) == res.get(k) for k in ("task", "steps", "seeds", "overrides")):
                o_acc = acc(learned_name(o_res), o_res["optimizers"])
                rows.append(f"| | ours, learned: [{other}](experiments/{other}/) | {o_acc} | – | – | – | – |")
    if not rows:
        return None
    return "\n".join(["Test accuracy (%) beside the study's tables (mean ± std over our seeds; the learned optimizer "
                      "has no learning rate, so its figure repeats):", "",
                      "| experiment | | learned (study: LSTM) | Adam | RMSprop | SGD | Adagrad |",
                      "|---|---|---|---|---|---|---|", *rows, ""])


def generalization_table(results: dict[str, dict[str, Any]]) -> str | None:
    """Markdown: one line per generalisation row (``results.json`` written by :mod:`research.tools.generalize`),
    in the suite's order: what changed, from, to, learned vs tuned Adam, and the verdict."""
    rows = {n: r for n, r in results.items() if r.get("generalization")}
    if not rows:
        return None
    order: dict[str, int] = {}
    suite = next(iter(rows.values()))["generalization"].get("suite")
    if suite and (REPO / suite).is_file():
        import yaml

        names = [r["name"] for r in (yaml.safe_load((REPO / suite).read_text()) or {}).get("rows", [])]
        order = {n: i for i, n in enumerate(names)}
    lines = ["Generalisation suite (`python -m research.tools.generalize research/experiments/generalization/suite.yaml`): the optimizer "
             "meta-trained on the base setting, evaluated on a changed one against baselines tuned there (verdicts Holm-corrected "
             "across this table's rows):", "",
             "| what changes | from | to | steps | learned | tuned Adam | learned: test acc | tuned Adam: test acc "
             "| p (Holm) | verdict vs tuned Adam |", "|---|---|---|---|---|---|---|---|---|---|"]
    ordered = dict(sorted(rows.items(), key=lambda kv: (order.get(kv[0].split("/")[-1], len(order)), kv[0])))
    table, unpaired = summary_rows(ordered)
    for (name, res), row in zip(ordered.items(), table):
        g = res["generalization"]
        cells = row.split(" | ")  # | [name](...) | steps | seeds | metric | learned | adam | acc | acc | p | verdict |
        lines.append(f"| [{g.get('what')}](experiments/{name}/) | {g.get('from')} | {g.get('to')} | {res['steps']} | "
                     + " | ".join(cells[4:]))
    return "\n".join(lines + ([""] + [UNPAIRED_NOTE] if unpaired else []) + [""])


def write_report(root: Path) -> str:
    """Write ``RESULTS.md`` beside ``root`` (the experiments folder) and return its summary table."""
    results = find_results(root)
    head = ["| experiment | steps | seeds | metric (final) | learned | tuned Adam | "
            "learned: test acc | tuned Adam: test acc | p (Holm) | verdict vs tuned Adam |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    rows, unpaired = summary_rows(results)
    summary = "\n".join(head + rows) + "\n" + (f"\n{UNPAIRED_NOTE}\n" if unpaired else "")
    for extra in (study_table(results), generalization_table(results)):
        if extra:
            summary += "\n" + extra
    body = ["# Results of every committed evaluation", "",
            "Generated by `python -m research.tools.research_report --no-rerun` from "
            "`research/experiments/*/results.json`; do not edit. Verdicts (the rule of the README's tables, "
            "`l2l_torch/stats.py`): a paired t-test of learned minus tuned Adam over the same held-out seeds, "
            "Holm-corrected across the rows of each table (each table is one family of tests, family-wise error 5 %); "
            "\"better\" / \"worse\" where the adjusted p-value is below 0.05, else \"level\". Each experiment's "
            "section corrects across its own tests only, so its verdict can be stronger than its row's in the "
            "summary table, which corrects across every row.", "",
            summary, ""]
    body += [experiment_section(n, r, f"experiments/{n}", root / n) for n, r in results.items()]
    (root.parent / "RESULTS.md").write_text("\n".join(body))
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(REPO / "research" / "experiments"), help="experiments folder")
    p.add_argument("--quick", action="store_true", help="tiny re-runs into a temp folder (CI smoke test)")
    p.add_argument("--no-rerun", action="store_true", help="only regenerate the markdown")
    a = p.parse_args(argv)
    root = Path(a.results)
    results = find_results(root)
    if not results:
        print(f"error: no results.json under {root}", file=sys.stderr)
        raise SystemExit(2)
    if a.quick:
        with tempfile.TemporaryDirectory() as tmp:
            rerun(results, root, True, Path(tmp) / "experiments")
            print(write_report(Path(tmp) / "experiments"))
        return
    if not a.no_rerun:
        rerun(results, root, False, None)
    print(write_report(root))


if __name__ == "__main__":
    main()
