"""Optimizer state memory per parameter: each shipped learned optimizer next to torch.optim.Adam.

    python -m research.tools.state_memory > research/experiments/drop_in/memory.json

Measured, not computed from a formula: one step on a 20-32-1 MLP, then the bytes of every state tensor
(shared storages counted once) divided by the number of parameters. Also prints the figure that
``LearnedOptimizer.state_bytes_per_param()`` claims, which must agree.
"""

from __future__ import annotations

import json

import torch
from torch import nn

from l2l_torch import LearnedOptimizer, list_pretrained


def state_bytes(opt: torch.optim.Optimizer) -> int:
    storages = {}
    for s in opt.state.values():
        for v in s.values():
            if torch.is_tensor(v) and v.dim() > 0:  # Adam's scalar step counter is not per parameter
                st = v.untyped_storage()
                storages[st.data_ptr()] = st.nbytes()
    return sum(storages.values())


def per_param(make) -> float:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 1))
    opt = make(model.parameters())
    model(torch.randn(8, 20)).pow(2).mean().backward()
    opt.step()
    return state_bytes(opt) / sum(p.numel() for p in model.parameters())


def main() -> None:
    out = {"adam": {"measured_bytes_per_param": per_param(lambda ps: torch.optim.Adam(ps))}}
    for name in list_pretrained():
        claimed = LearnedOptimizer([nn.Parameter(torch.zeros(1))], pretrained=name).state_bytes_per_param()
        out[name] = {"measured_bytes_per_param": per_param(lambda ps, n=name: LearnedOptimizer(ps, pretrained=n)),
                     "state_bytes_per_param()": claimed}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
