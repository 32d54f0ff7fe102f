"""What a meta-training checkpoint keeps beyond theta: the optimizees in flight and the random generators, so a
resumed run continues exactly where it stopped (tested bit for bit in ``tests/test_reliability.py``)."""

from __future__ import annotations

from typing import Any

import torch

from l2l_torch.tasks.base import TaskFamily
from l2l_torch.unroll import UnrollState


def to_device(obj: Any, device: str | torch.device) -> Any:
    """``obj`` (nested dicts/lists/tuples of tensors) with every tensor detached and on ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def save_optimizees(seeds: list[int], states: list[UnrollState]) -> list[dict[str, Any]]:
    """The optimizees in flight (task seed, step, params, buffers, optimizer state, batch generator), on the CPU;
    empty when the seeds do not match the states."""
    if len(seeds) != len(states):
        return []
    return [{"seed": seed, "step": s.step, "params": to_device(s.params, "cpu"), "buffers": to_device(s.buffers, "cpu"),
             "lopt_state": to_device(s.lopt_state, "cpu"), "generator": s.generator.get_state()}
            for seed, s in zip(seeds, states)]


def restore_optimizees(family: TaskFamily, saved: list[dict[str, Any]]) -> list[UnrollState]:
    """The states written by :func:`save_optimizees`, on the family's device."""
    states = []
    for d in saved:
        task = family.sample(int(d["seed"]))
        gen = torch.Generator(device=task.device)
        gen.set_state(d["generator"])
        states.append(UnrollState(task, to_device(d["params"], task.device), to_device(d["buffers"], task.device),
                                  to_device(d["lopt_state"], task.device), int(d["step"]), gen))
    return states


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
