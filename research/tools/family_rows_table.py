"""One table of the one-optimizer brief's rows for several learned optimizers, from their committed evaluations.

    python -m research.tools.family_rows_table research/experiments/fmnist_family_lstm_h200 research/experiments/lopt_small_fc_all ... > TABLE.md
    python -m research.tools.family_rows_table --long 2000 small_fc_warmup_pes=research/experiments/family_rows_seeds10 > research/experiments/family_rows_seeds10/table.md

Each ``DIR`` is laid out as ``research/tools/eval_family_rows.sh`` writes it: ``comparison.json`` (the six Fashion-MNIST MLP
rows; the learned column is the last one), ``fmnist_t1_sigmoid_<LONG>/`` (``--long``, default 1000 steps),
``cifar_convdense_300/`` and ``affnist_200/`` (``results.json`` each). An MLP row missing from ``comparison.json``
(or a folder without one) is read from ``DIR/fmnist_t1_<activation>_<steps>/results.json``, an ``evaluate.py`` run.
A row is labelled with the folder's name, or with ``LABEL`` when given as ``LABEL=DIR``. Every cell is the learned
optimizer's mean final training loss (SSIM for the STN), bold where the verdict against tuned Adam over the same seeds
is "better", with "(w)" where it is "worse" (plain: "level"); for the SSIM, higher is better. The verdicts are those of
``l2l_torch.stats``: a paired t-test per cell (Welch's unpaired test where an evaluation holds no per-seed values,
marked "†"), Holm-corrected across every cell of the table, which is one family of tests. Missing evaluations print as
"–". A note under the table says how many cells were tested.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from l2l_torch.stats import paired_comparison
from research.tools.research_report import compare, judge, learned_name

MLP_ROWS = [f"fmnist_t1_{a}_{s}" for a in ("sigmoid", "tanh", "relu") for s in (100, 200)]
SSIM_SETS = ("test8", "test6", "test1")


def mark(mean: float, verdict_: str, paired: bool = True) -> str:
    """``mean`` as a table cell: bold when better than tuned Adam, "(w)" when worse, "†" when the test is unpaired."""
    text = f"{mean:.3f}" + ("" if paired else " †")
    return f"**{text}**" if verdict_ == "better" else f"{text} (w)" if verdict_ == "worse" else text


def evaluation(path: Path) -> tuple[dict, dict, int] | None:
    """(learned optimizer, tuned Adam, held-out seeds) of the ``evaluate.py`` results in ``path``, or None."""
    f = path / "results.json"
    if not f.exists():
        return None
    res = json.loads(f.read_text())
    return res["optimizers"][learned_name(res)], res["optimizers"]["adam_tuned"], res.get("seeds", 0)


def mlp_rows(folder: Path) -> dict[str, dict]:
    """Per-seed final training losses of each MLP row, ``{row: {"adam_tuned": [...], <learned>: [...]}}``: from
    ``comparison.json``, else from each row's ``evaluate.py`` folder."""
    comp = folder / "comparison.json"
    by_eval = {r["eval"]: r for r in json.loads(comp.read_text())} if comp.exists() else {}
    for name in MLP_ROWS:
        f = folder / name / "results.json"
        if name not in by_eval and f.exists():
            res = json.loads(f.read_text())
            by_eval[name] = {k: res["optimizers"][k]["per_seed"]["train_loss"]
                             for k in ("adam_tuned", learned_name(res))}
    return by_eval


def row_tests(folder: Path, long: str) -> list[tuple[float, dict[str, Any]] | str]:
    """Each cell of one optimizer's row: ``(learned mean, test)`` (a :func:`research.tools.research_report.compare`
    result), or the cell's final text where there is nothing to test ("–", "diverged")."""
    cells: list[tuple[float, dict[str, Any]] | str] = []
    by_eval = mlp_rows(folder)
    for name in MLP_ROWS:
        r = by_eval.get(name)
        if r is None:
            cells.append("–")
            continue
        col = [k for k in r if k not in ("eval", "steps", "adam_tuned")][-1]
        ok = [x for x in r[col] if x is not None]
        test = {**paired_comparison(r[col], r["adam_tuned"]), "paired": True, "lower_is_better": True,
                "status": None}
        cells.append((sum(ok) / len(ok), test) if ok else "diverged")
    for sub in (f"fmnist_t1_sigmoid_{long}", "cifar_convdense_300"):
        e = evaluation(folder / sub)
        cells.append("–" if e is None else (e[0]["train_loss"]["mean"], compare(*e, key="train_loss")))
    e = evaluation(folder / "affnist_200")
    for s in SSIM_SETS:
        k = f"{s}_ssim"
        cells.append("–" if e is None else (e[0][k]["mean"], compare(*e, key=k, lower_is_better=False)))
    return cells


def render(rows: list[list[tuple[float, dict[str, Any]] | str]]) -> tuple[list[list[str]], int, bool]:
    """The cells' text, Holm-corrected across every tested cell of the table; with the number of tests and whether
    any is unpaired."""
    tests = [c[1] for r in rows for c in r if not isinstance(c, str)]
    judged = iter(judge(tests))
    out = []
    for r in rows:
        cells = []
        for c in r:
            if isinstance(c, str):
                cells.append(c)
                continue
            v, _ = next(judged)
            mean, t = c
            cells.append(v if mean is None or v == "diverged" else mark(mean, v, t["paired"]))
        out.append(cells)
    counted = sum(1 for t in tests if t["status"] is None)
    return out, counted, any(not t["paired"] and t["status"] is None for t in tests)


def adam_row(folder: Path, long: str) -> list[str]:
    by_eval = mlp_rows(folder)
    cells = [f"{sum(by_eval[n]['adam_tuned']) / len(by_eval[n]['adam_tuned']):.3f}" if n in by_eval else "–"
             for n in MLP_ROWS]
    for sub in (f"fmnist_t1_sigmoid_{long}", "cifar_convdense_300"):
        e = evaluation(folder / sub)
        cells.append("–" if e is None else f"{e[1]['train_loss']['mean']:.3f}")
    e = evaluation(folder / "affnist_200")
    cells += ["–" if e is None else f"{e[1][f'{s}_ssim']['mean']:.3f}" for s in SSIM_SETS]
    return cells


def main(argv: list[str]) -> None:
    long = "1000"
    if argv[:1] == ["--long"] and len(argv) > 1:
        long, argv = argv[1], argv[2:]
    if not argv:
        raise SystemExit(__doc__)
    head = ["sigmoid 100", "sigmoid 200", "tanh 100", "tanh 200", "ReLU 100", "ReLU 200", f"sigmoid {int(long):,}",
            "CIFAR conv+dense 300", "STN SSIM 8s", "6s", "1s"]
    print("| optimizer | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    rows = [a.split("=", 1) if "=" in a else (Path(a).name, a) for a in argv]
    print("| tuned Adam | " + " | ".join(adam_row(Path(rows[0][1]), long)) + " |")
    cells, tests, unpaired = render([row_tests(Path(f), long) for _, f in rows])
    for (label, f), c in zip(rows, cells):
        print(f"| [{label}]({f}/) | " + " | ".join(c) + " |")
    print(f"\nBold: better than tuned Adam, (w): worse, plain: level; paired t-test per cell over the same seeds, "
          f"Holm-corrected across the {tests} tested cells of this table (family-wise error 5 %)."
          + (" † unpaired: Welch's t-test on the stored mean and std (no per-seed values)." if unpaired else ""))

if __name__ == "__main__":
    main(sys.argv[1:])
