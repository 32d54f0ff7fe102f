"""The cost of a PES meta-step against a truncated-BPTT one of the same length, in the same run.

    python benchmarks/pes_cost.py [--pairs 8] [--unroll 20] [--repeats 3] [--threads 2] [--out DIR] [--device cpu]

For each row, one meta-step's meta-gradient on fresh task instances: truncated BPTT (one optimizee, ``unroll``
steps forward, then the backward through them) against PES with ``pairs`` antithetic pairs (2 x pairs particles,
``unroll`` steps each, forward only; :class:`l2l_torch.estimators.PES`), both with its particles unrolled one by
one (``PES(batched=False)``) and all at once (``PES()``, one vectorised call per optimizee step:
:mod:`l2l_torch.vmap_unroll`). Rows: ``hyper_adam`` on fmnist_t1 (``configs/hyper_adam_fmnist_t1.yaml``) and
``small_fc`` (the shipped ``small_fc_warmup_pes``) on the CIFAR-10 conv+dense CNN (``configs/cifar_convdense.yaml``).
The three are timed in turn, ``repeats`` times, so all see the same machine load. Reports the median wall seconds of
each and the ratios of PES to BPTT (``ratio``: batched, ``ratio_sequential``: one by one); the target is a PES
meta-step with 8 pairs in at most 3x one BPTT truncation. ``ratio_floor`` is the same ratio for the particles'
optimizee work alone (:func:`particles_floor`): what no learned optimizer, however cheap, can go below. With
``--out DIR`` it writes ``DIR/pes_cost.json``; without it, no file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import add_out_argument, write_json  # noqa: E402
from benchmarks.meta_throughput import clock  # noqa: E402
from l2l_torch.cli import instantiate, load_config, task_family_from_config  # noqa: E402
from l2l_torch.estimators import PES, TruncatedBPTT  # noqa: E402
from l2l_torch.unroll import init_unroll  # noqa: E402

#: (row name, config of the task family, shipped optimizer or None for the config's own, untrained)
ROWS = [
    ("hyper_adam on fmnist_t1", "hyper_adam_fmnist_t1", None),
    ("small_fc on cifar_convdense", "cifar_convdense", "small_fc_warmup_pes"),
]


def _lopt(config: str, pretrained: str | None):
    if pretrained is not None:
        from l2l_torch.checkpoint import load_learned_optimizer
        from l2l_torch.pretrained import pretrained_path

        return load_learned_optimizer(pretrained_path(pretrained))[0]
    spec = load_config(config)["model"]["lopt"]
    return instantiate({**spec, "init_args": {k: v for k, v in spec.get("init_args", {}).items() if k != "init_from"}})


def one_step(estimator, lopt, family, tasks: int, unroll: int, device: torch.device) -> float:
    """Wall seconds of one meta-gradient on ``tasks`` fresh instances (instance building not timed)."""
    states = estimator.start(lopt, [init_unroll(lopt, family.sample(s), s) for s in range(tasks)])
    lopt.zero_grad()
    t0 = clock(device)
    est = estimator.estimate(lopt, states, unroll, None)
    if est.grad is None:
        est.meta_loss.backward()
    return clock(device) - t0


def particles_floor(family, pairs: int, unroll: int, device: torch.device) -> float:
    """Wall seconds of the PES particles' optimizee work alone: ``2 * pairs`` optimizees (``pairs`` instances, two
    particles each on the same batches), each ``unroll`` steps of loss and gradient plus the last loss, computed as
    the batched PES computes them (vectorised with ``torch.func.vmap``, or one by one with autograd for convolutions
    on a CPU: :func:`l2l_torch.vmap_unroll.vectorize_loss`), with a plain gradient step in place of the learned
    optimizer. No PES meta-step can cost less on this machine, whatever its learned optimizer costs."""
    from torch.func import grad_and_value, vmap
    from torch.utils._pytree import tree_map

    from l2l_torch.vmap_unroll import _looped_loss_and_grad, vectorize_loss

    tasks = [family.sample(s) for s in range(pairs)]
    inits = [t.init_params() for t in tasks]
    params = {k: torch.stack([p[k] for p, _ in inits for _ in (0, 1)]) for k in inits[0][0]}
    buffers = {k: torch.stack([b[k] for _, b in inits for _ in (0, 1)]) for k in inits[0][1]}
    gens = [torch.Generator(device).manual_seed(s) for s in range(pairs)]
    task = tasks[0]
    loss_and_grad = vmap(grad_and_value(task.loss, has_aux=True), randomness="error")
    vectorized = vectorize_loss(task)
    t0 = clock(device)
    for t in range(unroll + 1):
        batches = [b for tk, g in zip(tasks, gens) for b in [tk.sample_batch("train", g)] * 2]
        if vectorized:
            grads, (_, buffers) = loss_and_grad(params, buffers, tree_map(lambda *xs: torch.stack(xs), *batches))
        else:
            grads, (_, buffers) = _looped_loss_and_grad(task, params, buffers, batches)
        if t < unroll:
            params = {k: v - 1e-3 * grads[k] for k, v in params.items()}
    return clock(device) - t0


def bench(name: str, config: str, spec, pairs: int, unroll: int, repeats: int, device: torch.device) -> dict:
    family = task_family_from_config(config)
    family.to(device)
    lopt = _lopt(config, spec).to(device)
    bptt, pes, pes_seq = TruncatedBPTT(), PES(sigma=0.01), PES(sigma=0.01, batched=False)
    for est in (bptt, pes, pes_seq):  # warm-up
        one_step(est, lopt, family, 1, 2, device)
    particles_floor(family, 1, 2, device)
    tb, tp, ts, tf = [], [], [], []
    for _ in range(repeats):  # alternated, so all see the same machine load
        tb.append(one_step(bptt, lopt, family, 1, unroll, device))
        ts.append(one_step(pes_seq, lopt, family, pairs, unroll, device))
        tp.append(one_step(pes, lopt, family, pairs, unroll, device))
        tf.append(particles_floor(family, pairs, unroll, device))
    b, p, q, f = (statistics.median(x) for x in (tb, tp, ts, tf))
    print(f"{name:32s} bptt {b:7.2f} s   pes ({pairs} pairs) batched {p:7.2f} s ({p / b:5.2f}x)   "
          f"one by one {q:7.2f} s ({q / b:5.2f}x)   particles' optimizee work alone {f:7.2f} s ({f / b:5.2f}x)",
          flush=True)
    return {"row": name, "config": config, "arch": lopt.arch_name, "unroll": unroll, "pairs": pairs,
            "bptt_s": b, "pes_s": p, "ratio": p / b, "pes_sequential_s": q, "ratio_sequential": q / b,
            "particles_floor_s": f, "ratio_floor": f / b,
            "bptt_runs_s": tb, "pes_runs_s": tp, "pes_sequential_runs_s": ts, "particles_floor_runs_s": tf}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--unroll", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    add_out_argument(ap, "pes_cost.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    rows = [bench(n, c, s, a.pairs, a.unroll, a.repeats, device) for n, c, s in ROWS]
    write_json(a.out, "pes_cost.json", {"threads": a.threads, "device": a.device, "target_ratio": 3.0, "rows": rows})


if __name__ == "__main__":
    main()
