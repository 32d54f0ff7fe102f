"""Write ``tests/data/pretrained_reference.pt``: the parameters every shipped learned optimizer reaches in 3 steps.

For each optimizer in ``l2l_torch/pretrained/*.pt``, :class:`l2l_torch.LearnedOptimizer` runs 3 steps on two fixed
models, a small MLP and a small CNN with BatchNorm, each on 3 fixed batches, and the parameters after the 3 steps
are stored (float32)::

    {"steps": 3, "optimizers": {NAME: {"mlp": {param: tensor}, "cnn": {param: tensor}}}}

``tests/test_pretrained_reference.py`` replays the same steps (:func:`run`) and compares: a change of the
checkpoint format, of the loader or of the optimizers' code must leave the updates of the shipped optimizers as
they were when the reference was written. Rewrite the reference only when the updates are meant to change::

    python tests/data/make_pretrained_reference.py
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

REFERENCE = Path(__file__).resolve().parent / "pretrained_reference.pt"
PRETRAINED = Path(__file__).resolve().parents[2] / "l2l_torch" / "pretrained"
STEPS = 3


def mlp() -> nn.Module:
    """A seeded MLP, 6 -> 5 -> 3 (tanh)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def cnn() -> nn.Module:
    """A seeded CNN with BatchNorm on ``(B, 1, 6, 6)`` inputs: conv 3x3 (2 channels), BN, ReLU, linear to 3.

    The convolution has no bias: BatchNorm cancels it, so its gradient would be rounding noise, whose sign a
    sign-reading optimizer would follow (and the reference would depend on the number of threads)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


MODELS = {"mlp": (mlp, (6,)), "cnn": (cnn, (1, 6, 6))}


def batches(shape: tuple[int, ...], seed: int) -> list[tuple[Tensor, Tensor]]:
    """:data:`STEPS` fixed batches of 8 inputs of ``shape`` and class labels in ``[0, 3)``."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, *shape, generator=gen), torch.randint(0, 3, (8,), generator=gen)) for _ in range(STEPS)]


def run(path: str | Path, model_name: str) -> dict[str, Tensor]:
    """The parameters of model ``model_name`` after :data:`STEPS` steps of the learned optimizer at ``path``."""
    from l2l_torch import LearnedOptimizer, param_groups_by_kind

    make, shape = MODELS[model_name]
    model = make()
    model.train()  # BatchNorm normalises with the batch's statistics
    opt = LearnedOptimizer(param_groups_by_kind(model), checkpoint=path)
    for x, y in batches(shape, seed=10 + list(MODELS).index(model_name)):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def main() -> None:
    torch.set_num_threads(1)
    out = {name.stem: {m: run(name, m) for m in MODELS} for name in sorted(PRETRAINED.glob("*.pt"))}
    torch.save({"steps": STEPS, "optimizers": out}, REFERENCE)
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size} bytes, {len(out)} optimizers)")


if __name__ == "__main__":
    main()
