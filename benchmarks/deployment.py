"""Deployment overhead: one training step with ``LearnedOptimizer`` against ``torch.optim.Adam``.

    python benchmarks/deployment.py [--steps 20] [--repeats 5] [--threads 2] [--out DIR] [--device cpu]

Times forward + backward + optimizer step of the conv+dense CIFAR-10 CNN and of the Fashion-MNIST MLP at
batch 128 (plain ``nn.Module`` training, no functional_call), alternating Adam and the learned
optimizer so both see the same machine load, and reports the median wall time per step and the ratio.
The learned optimizer is a per-kind LSTM (conv and dense), as the CNN experiments use.

``--heldout MODEL --pretrained NAME`` adds a row: a model of the held-out benchmark (:mod:`l2l_torch.heldout`, e.g.
its largest CNN, ``cifar10_cnn_4conv_bn``) at its own batch size, trained with the shipped optimizer ``NAME`` as a
user would (``LearnedOptimizer(model.parameters(), pretrained=NAME)``); ``--hypergradient BETA`` also times that
optimizer with its ``lr`` adapted by :class:`~l2l_torch.HypergradientLR`, alternated with the other two. With
``--out DIR`` it writes
``DIR/deployment.json`` (every timed run); without it, no file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import add_out_argument, write_json  # noqa: E402
from benchmarks.meta_throughput import clock  # noqa: E402
from l2l_torch import HypergradientLR, LearnedOptimizer, LSTMOptimizer, param_groups_by_kind  # noqa: E402


def model_and_data(kind: str, device: torch.device):
    from l2l_torch.tasks.models import build_model

    torch.manual_seed(0)
    if kind.startswith("heldout:"):
        from l2l_torch.data import DATASETS
        from l2l_torch.heldout import model as heldout_model

        m = heldout_model(kind.removeprefix("heldout:"))
        shape = DATASETS[m.dataset].shape
        net = build_model(m.model, shape, hidden=list(m.hidden) or None, activation=m.activation,
                          channels=list(m.channels) or None, batchnorm=m.batchnorm, pooling=m.pooling)
        x = torch.randn(m.batch_size, *shape)
        return net.to(device), x.to(device), torch.randint(0, 10, (m.batch_size,)).to(device)
    if kind == "convdense":
        model, x = build_model("convdense", (3, 32, 32)), torch.randn(128, 3, 32, 32)
    else:
        model, x = build_model("mlp", (1, 28, 28), hidden=[20], activation="sigmoid"), torch.randn(128, 1, 28, 28)
    return model.to(device), x.to(device), torch.randint(0, 10, (128,)).to(device)


def time_steps(model: nn.Module, opt: torch.optim.Optimizer, x, y, steps: int) -> float:
    t0 = clock(x.device)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return (clock(x.device) - t0) / steps


def bench(kind: str, steps: int, repeats: int, device: torch.device, pretrained: str | None = None,
          hypergradient: float | None = None) -> dict:
    model, x, y = model_and_data(kind, device)
    opts = {"adam": torch.optim.Adam(model.parameters(), lr=1e-3)}
    if pretrained is not None:
        opts["learned"] = LearnedOptimizer(model.parameters(), pretrained=pretrained)
    else:
        opts["learned"] = LearnedOptimizer(param_groups_by_kind(model), lopt=LSTMOptimizer(per_kind=True))
    if hypergradient is not None:
        opts["hypergradient"] = LearnedOptimizer(model.parameters(), pretrained=pretrained)
        HypergradientLR(opts["hypergradient"], beta=hypergradient)
    for opt in opts.values():
        time_steps(model, opt, x, y, 3)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in opts}
    for _ in range(repeats):
        for k, opt in opts.items():
            times[k].append(time_steps(model, opt, x, y, steps))
    n = sum(p.numel() for p in model.parameters())
    ms = {k: 1e3 * statistics.median(t) for k, t in times.items()}
    row = {"task": kind, "learned": pretrained or "lstm per kind (untrained)", "batch": len(x), "params": n,
           "adam_ms": ms["adam"], "learned_ms": ms["learned"], "ratio": ms["learned"] / ms["adam"],
           "adam_runs_ms": [1e3 * t for t in times["adam"]], "learned_runs_ms": [1e3 * t for t in times["learned"]]}
    if hypergradient is not None:
        row.update(hypergradient_beta=hypergradient, hypergradient_ms=ms["hypergradient"],
                   hypergradient_ratio=ms["hypergradient"] / ms["adam"],
                   hypergradient_runs_ms=[1e3 * t for t in times["hypergradient"]])
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    add_out_argument(ap, "deployment.json")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--heldout", help="also time this held-out benchmark model (needs --pretrained)")
    ap.add_argument("--pretrained", help="the shipped optimizer of the --heldout row")
    ap.add_argument("--hypergradient", type=float, metavar="BETA",
                    help="the --heldout row also times the optimizer with HypergradientLR(beta=BETA)")
    a = ap.parse_args(argv)
    if bool(a.heldout) != bool(a.pretrained):
        ap.error("--heldout and --pretrained go together")
    if a.hypergradient is not None and not a.heldout:
        ap.error("--hypergradient needs --heldout and --pretrained")
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    rows = [bench(k, a.steps, a.repeats, device) for k in ("convdense", "mlp")]
    if a.heldout:
        rows.append(bench(f"heldout:{a.heldout}", a.steps, a.repeats, device, a.pretrained, a.hypergradient))
    print(f"{'model':34} {'params':>8} {'Adam ms/step':>13} {'learned ms/step':>16} {'ratio':>6}  learned")
    for r in rows:
        print(f"{r['task']:34} {r['params']:>8} {r['adam_ms']:>13.2f} {r['learned_ms']:>16.2f} {r['ratio']:>6.2f}  "
              f"{r['learned']}")
        if "hypergradient_ms" in r:
            print(f"{'  with HypergradientLR':34} {'':>8} {'':>13} {r['hypergradient_ms']:>16.2f} "
                  f"{r['hypergradient_ratio']:>6.2f}  beta {r['hypergradient_beta']:g}")
    write_json(a.out, "deployment.json", {"threads": a.threads, "device": a.device, "rows": rows})
    print(json.dumps({"convdense_ratio": rows[0]["ratio"], "mlp_ratio": rows[1]["ratio"],
                      **({"heldout_ratio": rows[2]["ratio"]} if a.heldout else {}),
                      **({"heldout_hypergradient_ratio": rows[2]["hypergradient_ratio"]}
                         if a.hypergradient is not None else {})}))


if __name__ == "__main__":
    main()
