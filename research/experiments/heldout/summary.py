"""One table of the held-out benchmark's verdicts for the recommended optimizer, one column per way of using it:
as shipped, with its lr tuned per model, and with its lr adapted online by hypergradient descent. Each cell: the
ratio of its mean final training loss to lr-tuned Adam's, and its verdicts against lr-tuned Adam and `adamw_tuned`
(paired t-test, Holm over the cell's own table). Run from the repository root:

    python research/experiments/heldout/summary.py > research/experiments/heldout/summary.md

The lr-tuned rows of the all-conv CNN and the CIFAR-10 MLP are not in the lr-tuned table: the tuning chose lr 1 and
0.1 there (run 11 in COMMAND.md), so their cells are read from the as-shipped and the `lr=0.1` tables (marked *).
"""

import json
from pathlib import Path

from l2l_torch.heldout import HELDOUT_MODELS

HERE = Path(__file__).parent
COLUMNS = {"as shipped": "small_fc_warmup_pes", "lr tuned per model": "small_fc_warmup_pes_lr_tuned",
           "lr adapted online (HypergradientLR, beta 1)": "small_fc_warmup_pes_hypergradient"}
#: lr-tuned cells that live in another table: the one at the lr the tuning chose
ELSEWHERE = {"cifar10_allconv_b64": ("small_fc_warmup_pes", 1.0), "cifar10_mlp_256x128_relu":
             ("small_fc_warmup_pes_lr0.1", 0.1)}


def load(folder: str) -> dict:
    path = HERE / folder / "heldout.json"
    return json.loads(path.read_text()) if path.is_file() else {"models": {}, "comparisons": []}


def cell(result: dict, name: str, lr: float | None = None, mark: str = "") -> str:
    r = result["models"].get(name)
    if r is None:
        return "not run"
    v = {c["reference"]: c["verdict"] for c in result["comparisons"] if c["model"] == name}
    lr_text = f" (lr {lr:g})" if lr is not None else ""
    ratio = f"{r['ratio_to_adam_tuned']:.3f}"
    ratio = f"**{ratio}**" if r["target_met"] else ratio
    return f"{ratio}{lr_text}{mark}: {v.get('adam_tuned', '?')} / {v.get('adamw_tuned', '?')}"


def main() -> None:
    tables = {col: load(folder) for col, folder in COLUMNS.items()}
    print("Ratio of the mean final training loss to lr-tuned Adam's over 5 held-out seeds (bold: below the 0.95 "
          "target); then the verdicts against lr-tuned Adam / `adamw_tuned` (Holm over each column's table).\n")
    print("| held-out model | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    met, run = dict.fromkeys(COLUMNS, 0), dict.fromkeys(COLUMNS, 0)
    worse = {col: [0, 0] for col in COLUMNS}
    for m in HELDOUT_MODELS:
        cells = []
        for col, result in tables.items():
            if col == "lr tuned per model" and m.name not in result["models"] and m.name in ELSEWHERE:
                folder, lr = ELSEWHERE[m.name]
                source = load(folder)
                cells.append(cell(source, m.name, lr, "*"))
                r, comps = source["models"].get(m.name), source["comparisons"]
            else:
                r, comps = result["models"].get(m.name), result["comparisons"]
                cells.append(cell(result, m.name, r.get("learned_lr") if r and col == "lr tuned per model" else None))
            if r is not None:
                run[col] += 1
                met[col] += bool(r["target_met"])
                for i, ref in enumerate(("adam_tuned", "adamw_tuned")):
                    worse[col][i] += any(c["model"] == m.name and c["reference"] == ref and
                                         c["verdict"] in ("worse", "diverged") for c in comps)
        print(f"| {m.name} | " + " | ".join(cells) + " |")
    print("| **below 0.95x / worse than Adam / worse than `adamw_tuned`** | " +
          " | ".join(f"{met[c]} / {worse[c][0]} / {worse[c][1]} of {run[c]}" for c in COLUMNS) + " |")
    print("\n\\* the lr-tuned cell of this model is a row of another table, at the lr its tuning chose (see the "
          "docstring).")


if __name__ == "__main__":
    main()
