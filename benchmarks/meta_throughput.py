"""Meta-training throughput: l2l_torch's unroll against a plain reference, in the same run.

    python benchmarks/meta_throughput.py [--json] [--repeats 3] [--threads 2] [--out DIR] [--device cpu]

Counts optimizee steps per second of truncated-BPTT meta-training: per step the optimizee's
forward and backward, the LSTM's forward, and (amortised over the truncation) the LSTM's
backward and the meta-optimizer's update. The standard configuration: Fashion-MNIST
MLP 784-20-10 with sigmoid (15,910 params), batch 128, unroll 20, horizon 100, a two-layer LSTM with
20 hidden units and log/sign preprocessing. The conv+dense CIFAR-10 CNN is measured too.

The reference is the plain implementation a user would write first: one pair of ``nn.LSTMCell`` over
all coordinates (``(N, F)`` layout), a linear head, the same preprocessing, data tensors indexed per
batch, no further optimisation. Both paths start from the same weights and data; the benchmark
checks that they produce the same meta-loss before timing them, then alternates them
(reference, ours, reference, ours, ...) and reports medians and the ratio. The last line printed with
``--json`` is one JSON object holding ``meta_steps_per_s`` (optimizee steps per second of ours, one
task instance per meta-step) and, beside it, ``batched_meta_steps_per_s``: the Fashion-MNIST MLP
with ``--tasks-per-step`` B task instances per meta-step, ours stepping all B with one LSTM call
(:func:`l2l_torch.unroll.batched_unroll`), the reference looping over them; the reference always
runs the same number of optimizee steps as ours, and every figure counts optimizee steps. A third MLP
row (``recompute_*``; ``--no-recompute-row`` skips it) measures ``LSTMOptimizer(recompute_gates=True)``,
which saves about 3x less memory for the meta-backward and recomputes the LSTM gates there.

With ``--out DIR`` it writes ``DIR/meta_throughput.json`` (the summary and every row); without it, no file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import add_out_argument, write_json  # noqa: E402
from l2l_torch.learned_optimizers import LSTMOptimizer, preprocess_gradients  # noqa: E402
from l2l_torch.learned_optimizers.lstm import _ifog_weights  # noqa: E402
from l2l_torch.unroll import batched_unroll, init_unroll, truncated_unroll  # noqa: E402

#: where the benchmark runs (``--device``); CPU by default: the throughput target is for CPU machines
DEVICE = torch.device("cpu")


def clock(device: torch.device | None = None) -> float:
    """``time.perf_counter()`` after the queued work of ``device`` (default :data:`DEVICE`) is done: CUDA runs
    asynchronously."""
    device = DEVICE if device is None else device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class PlainLSTMOptimizer(nn.Module):
    """The reference: ``nn.LSTMCell`` pair on ``(N, F)`` inputs, a linear head, nothing else."""

    def __init__(self, lopt: LSTMOptimizer) -> None:
        super().__init__()
        net = lopt.nets["all"]
        self.cells = net.cells  # the very same weights as ``lopt``
        self.head = net.head
        self.scale, self.p = lopt.output_scale, lopt.preprocess_p

    def forward(self, grad: torch.Tensor, hidden):
        x = preprocess_gradients(grad, self.p)
        new = []
        for cell, hc in zip(self.cells, hidden):
            h, c = cell(x, hc)
            new.append((h, c))
            x = h
        return self.scale * self.head(x).squeeze(-1), new


def reference_truncation(plain: PlainLSTMOptimizer, task, params, hidden, gen, unroll: int):
    """One truncation of the plain implementation. Returns ``(meta_loss, params, hidden)``."""
    names = list(params)
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    hidden = [(h.detach(), c.detach()) for h, c in hidden]
    losses = []
    for t in range(unroll + 1):
        x, y = task.sample_batch("train", gen)  # data tensors indexed per batch
        loss = nn.functional.cross_entropy(torch.func.functional_call(task.module, params, (x,)), y)
        if t > 0:
            losses.append(loss)
        if t == unroll:
            break
        grads = torch.autograd.grad(loss, [params[n] for n in names], retain_graph=True)
        flat = torch.cat([g.detach().reshape(-1) for g in grads])
        update, hidden = plain(flat, hidden)
        parts = update.split([params[n].numel() for n in names])
        params = {n: params[n] + u.view_as(params[n]) for n, u in zip(names, parts)}
    return torch.stack(losses).mean(), params, hidden


def gemm_only_steps_per_s(lopt: LSTMOptimizer, n: int, steps: int) -> float:
    """Optimizee steps per second if a step cost nothing but the LSTM's matrix products.

    Per step and layer, our fused cell (:class:`~l2l_torch.learned_optimizers.lstm._FusedLSTMCell`) runs one
    ``mm`` for the gates and, in the meta-backward, one for the weights' gradient and one for each input that
    needs a gradient (the first layer's input, the preprocessed gradient, does not), plus the head's
    ``(1, H)`` product and its gradient. This times exactly those products, with the same shapes, on random
    data. The reference does the same products (``nn.LSTMCell`` in the ``(N, F)`` layout), so
    ``this / reference_steps_per_s`` bounds the speedup of any implementation built from these ATen
    products, whatever it does with the elementwise work.
    """
    ws = [_ifog_weights(c).detach() for c in lopt.nets["all"].cells]
    head = lopt.nets["all"].head.weight.detach()
    xs = [torch.randn(w.shape[1], n, device=DEVICE) for w in ws]
    ds = [torch.randn(w.shape[0], n, device=DEVICE) for w in ws]
    f_ins = [c.input_size for c in lopt.nets["all"].cells]
    h, dout = torch.randn(head.shape[1], n, device=DEVICE), torch.randn(1, n, device=DEVICE)

    def step() -> None:
        for i, (w, x, d, f_in) in enumerate(zip(ws, xs, ds, f_ins)):
            torch.mm(w, x)
            torch.mm(x, d.t())
            if i > 0:
                torch.mm(w[:, :f_in].t(), d)
            torch.mm(w[:, f_in:-1].t(), d)
        torch.mm(head, h)
        torch.mm(dout, h.t())
        torch.mm(head.t(), dout)

    for _ in range(3):
        step()
    t0 = clock()
    for _ in range(steps):
        step()
    return steps / (clock() - t0)


def ours_steps_per_s(lopt: LSTMOptimizer, meta_opt: torch.optim.Optimizer, tasks: list, truncations: int,
                     unroll: int) -> float:
    """Optimizee steps per second of our meta-training: ``truncations`` truncations of ``unroll`` steps from fresh
    instances of ``tasks`` (seeds 100, 101, ...; several tasks step together with :func:`batched_unroll`), each
    followed by the meta-backward and a step of ``meta_opt``."""
    s = [init_unroll(lopt, t, 100 + b) for b, t in enumerate(tasks)]
    t0 = clock()
    for _ in range(truncations):
        rs = [truncated_unroll(lopt, s[0], unroll)] if len(tasks) == 1 else batched_unroll(lopt, s, unroll)
        meta_opt.zero_grad()
        torch.stack([r.meta_loss for r in rs]).mean().backward()
        meta_opt.step()
        s = [r.state for r in rs]
    return len(tasks) * truncations * unroll / (clock() - t0)


def make_task(kind: str, seed: int = 0):
    from l2l_torch.tasks.image_classification import ImageClassificationFamily

    if kind == "mlp":
        fam = ImageClassificationFamily(dataset="fashion_mnist", model="mlp", hidden=[20], activation="sigmoid",
                                        batch_size=128)
    else:
        fam = ImageClassificationFamily(dataset="cifar10", source="folder", model="convdense", batch_size=128)
    return fam.to(DEVICE).sample(seed)


def bench(kind: str, repeats: int, truncations: int, unroll: int = 20, tasks_per_step: int = 1,
          recompute_gates: bool = False) -> dict:
    """Optimizee steps per second of ours and of the reference, alternated in one process.

    With ``tasks_per_step`` B > 1, one meta-step unrolls B task instances: ours with
    :func:`batched_unroll` (one LSTM call over all B*N coordinates per step), the reference with its
    plain per-task loop; both count B optimizee steps per unrolled step, so the same total work.
    """
    task = make_task(kind)
    tasks = [task] + [make_task(kind, seed=b) for b in range(1, tasks_per_step)]
    torch.manual_seed(0)
    lopt = LSTMOptimizer(recompute_gates=recompute_gates).to(DEVICE)  # hidden 20, 2 layers, log/sign preprocessing
    plain = PlainLSTMOptimizer(lopt)
    meta_opt = torch.optim.Adam(lopt.parameters(), lr=1e-3)
    n_params = sum(p.numel() for p in task.init_params(0)[0].values())

    def ref_start(seed: int):
        params, _ = task.init_params(seed)
        hidden = [(torch.zeros(n_params, 20, device=DEVICE), torch.zeros(n_params, 20, device=DEVICE)) for _ in range(2)]
        return params, hidden, torch.Generator(device=DEVICE).manual_seed(seed)

    # same start, same batches: the two paths must agree before we time them
    states = [init_unroll(lopt, t, b) for b, t in enumerate(tasks)]
    if tasks_per_step == 1:
        ours = truncated_unroll(lopt, states[0], unroll).meta_loss
    else:
        ours = torch.stack([r.meta_loss for r in batched_unroll(lopt, states, unroll)]).mean()
    refs = []
    for b, t in enumerate(tasks):
        p0, h0, gen = ref_start(b)
        refs.append(reference_truncation(plain, t, p0, h0, gen, unroll)[0])
    agree = torch.allclose(ours, torch.stack(refs).mean(), rtol=1e-4, atol=1e-5)

    def run_ours() -> float:
        return ours_steps_per_s(lopt, meta_opt, tasks, truncations, unroll)

    def run_ref() -> float:
        runs = [list(ref_start(100 + b)) for b in range(tasks_per_step)]
        t0 = clock()
        for _ in range(truncations):
            losses = []
            for t, r in zip(tasks, runs):
                loss, r[0], r[1] = reference_truncation(plain, t, r[0], r[1], r[2], unroll)
                losses.append(loss)
            meta_opt.zero_grad()
            torch.stack(losses).mean().backward()
            meta_opt.step()
        return tasks_per_step * truncations * unroll / (clock() - t0)

    run_ours(), run_ref()  # warm-up (allocator, caches)
    r_ours, r_ref, r_gemm = [], [], []
    for _ in range(repeats):
        r_ref.append(run_ref())
        r_ours.append(run_ours())
        r_gemm.append(gemm_only_steps_per_s(lopt, tasks_per_step * n_params, truncations * unroll) * tasks_per_step)
    m_ours, m_ref, m_gemm = statistics.median(r_ours), statistics.median(r_ref), statistics.median(r_gemm)
    return {"task": kind, "params": n_params, "unroll": unroll, "batch": 128, "tasks_per_step": tasks_per_step,
            "recompute_gates": recompute_gates, "same_meta_loss": bool(agree), "ours_steps_per_s": m_ours, "reference_steps_per_s": m_ref,
            "speedup": m_ours / m_ref, "ours_runs": r_ours, "reference_runs": r_ref,
            "lstm_gemm_only_steps_per_s": m_gemm, "speedup_ceiling": m_gemm / m_ref, "lstm_gemm_only_runs": r_gemm}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="end with one JSON line")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--truncations", type=int, default=3, help="truncations per timed run")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    ap.add_argument("--tasks", default="mlp,convdense")
    ap.add_argument("--tasks-per-step", type=int, default=4,
                    help="task instances per meta-step of the batched mlp row (1 skips that row)")
    ap.add_argument("--recompute-row", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure the standard configuration with LSTMOptimizer(recompute_gates=True), "
                         "the memory-saving meta-backward (default: on)")
    add_out_argument(ap, "meta_throughput.json")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda: both paths and the data run there")
    a = ap.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(a.device)
    torch.set_num_threads(a.threads)
    rows = []
    for k in filter(None, a.tasks.split(",")):
        rows.append(bench(k, a.repeats, a.truncations))
        if k == "mlp" and a.tasks_per_step > 1:
            rows.append(bench(k, a.repeats, a.truncations, tasks_per_step=a.tasks_per_step))
        if k == "mlp" and a.recompute_row:
            rows.append(bench(k, a.repeats, a.truncations, recompute_gates=True))
    print(f"{'task':10} {'params':>8} {'tasks/step':>10} {'recompute':>9} {'ours steps/s':>13} {'reference':>10} "
          f"{'speedup':>8} {'same loss':>9} {'GEMM-only':>10} {'ceiling':>8}")
    for r in rows:
        print(f"{r['task']:10} {r['params']:>8} {r['tasks_per_step']:>10} {str(r['recompute_gates']):>9} "
              f"{r['ours_steps_per_s']:>13.2f} {r['reference_steps_per_s']:>10.2f} {r['speedup']:>7.2f}x "
              f"{str(r['same_meta_loss']):>9} {r['lstm_gemm_only_steps_per_s']:>10.2f} {r['speedup_ceiling']:>7.2f}x")
    # the standard configuration: one Fashion-MNIST MLP per meta-step; the batched row is reported beside it
    std = next((r for r in rows if r["task"] == "mlp" and r["tasks_per_step"] == 1 and not r["recompute_gates"]),
               rows[0])
    summary = {"meta_steps_per_s": std["ours_steps_per_s"], "reference_steps_per_s": std["reference_steps_per_s"],
               "speedup_vs_reference": std["speedup"], "tasks_per_step": 1,
               "lstm_gemm_only_steps_per_s": std["lstm_gemm_only_steps_per_s"],
               "speedup_ceiling_at_gemm_floor": std["speedup_ceiling"]}
    bat = next((r for r in rows if r["task"] == "mlp" and r["tasks_per_step"] > 1), None)
    if bat is not None:
        summary.update({"batched_tasks_per_step": bat["tasks_per_step"],
                        "batched_meta_steps_per_s": bat["ours_steps_per_s"],
                        "batched_reference_steps_per_s": bat["reference_steps_per_s"],
                        "batched_speedup_vs_reference": bat["speedup"]})
    rec = next((r for r in rows if r["recompute_gates"]), None)
    if rec is not None:
        summary.update({"recompute_meta_steps_per_s": rec["ours_steps_per_s"],
                        "recompute_reference_steps_per_s": rec["reference_steps_per_s"],
                        "recompute_speedup_vs_reference": rec["speedup"]})
    summary.update({"threads": a.threads, "device": str(DEVICE), "torch": torch.__version__, "rows": rows})
    write_json(a.out, "meta_throughput.json", summary)
    if a.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))


if __name__ == "__main__":
    main()
