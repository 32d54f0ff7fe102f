"""The paper's synthetic 10-d quadratics: ``f(x) = ||W x - y||^2`` (Andrychowicz et al. 2016, 3.1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from l2l_torch.tasks import Task, TaskFamily


class QuadraticModule(nn.Module):
    """``num`` independent quadratics stacked along dim 0; the optimizee param is ``x``: (num, dim)."""

    def __init__(self, num: int, dim: int, init_std: float) -> None:
        super().__init__()
        self.init_std = init_std
        self.x = nn.Parameter(torch.empty(num, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.x, std=self.init_std)

    def forward(self, w: Tensor, y: Tensor) -> Tensor:
        """Residuals ``W x - y``: (num, dim), from ``w``: (num, dim, dim) and ``y``: (num, dim)."""
        return torch.einsum("nij,nj->ni", w, self.x) - y


class QuadraticTask(Task):
    """``num`` random quadratics ``||W x - y||^2`` with ``W``, ``y`` ~ N(0, 1).

    :meth:`loss` returns the *sum* over the ``num`` instances, so each instance gets exactly its
    own gradient (the instances are independent problems stacked for speed); :meth:`evaluate`
    reports the *mean* over instances.
    """

    eval_splits = ("train",)  # no data: train, val and test loss are the same function

    def __init__(self, seed: int = 0, dim: int = 10, num: int = 1, init_std: float = 0.01) -> None:
        super().__init__(seed)
        self.dim, self.num = dim, num
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(num, dim, dim, generator=g)
        self.y = torch.randn(num, dim, generator=g)
        self.module = QuadraticModule(num, dim, init_std)

    def to(self, device):  # noqa: D102
        super().to(device)
        self.w, self.y = self.w.to(self.device), self.y.to(self.device)
        return self

    def sample_batch(self, split: str, generator: torch.Generator):
        return (self.w, self.y)  # deterministic problem: the "batch" is the problem itself

    def inputs(self, batch):
        return batch

    def loss_from_output(self, output: Tensor, batch) -> Tensor:
        return output.pow(2).sum()

    @torch.no_grad()
    def evaluate(self, params, buffers, split: str = "val") -> dict[str, float]:
        out, _ = self.forward(params, buffers, (self.w, self.y), train=False)
        return {"loss": float(out.pow(2).sum() / self.num)}

    def loss_signature(self):
        """The class and the shapes: ``W`` and ``y`` come in as the batch."""
        return (type(self), self.dim, self.num)

    def describe(self):
        return {**super().describe(), "dim": self.dim, "num": self.num}


class QuadraticFamily(TaskFamily):
    """Random 10-d quadratics, one new ``W``, ``y`` and initial ``x`` per seed.

    Args:
        dim: dimension of ``x``.
        num: quadratics stacked in one task instance (meta-training uses several for a
            lower-variance meta-gradient at the cost of one).
        init_std: standard deviation of the initial ``x`` (0.01 as in the paper's code).
    """

    name = "quadratic"

    def __init__(self, dim: int = 10, num: int = 1, init_std: float = 0.01) -> None:
        super().__init__()
        self.dim, self.num, self.init_std = dim, num, init_std

    def sample(self, seed: int) -> QuadraticTask:
        return QuadraticTask(seed, self.dim, self.num, self.init_std).to(self.device)

    def describe(self):
        return {**super().describe(), "dim": self.dim, "num": self.num}
