"""Experiment 1 of the study: linear regression ``y = A x + B + noise`` (A=3, B=2)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from l2l_torch.tasks import Task, TaskFamily


class LinearRegressionTask(Task):
    """One noisy 1-d linear regression problem, fitted by an ``nn.Linear(1, 1)``.

    Data: ``x`` ~ U(0, 1) (``numpy.random.rand``-style samples: the slope and intercept are correlated,
    which makes the problem ill-conditioned for first-order methods), ``y = a x + b + noise``,
    noise ~ N(0, ``noise_std``^2); 200 train, 50 val and 50 test samples drawn from ``seed``. Training is
    full-batch, as in the study. Loss: mean squared error.
    """

    def __init__(self, seed: int = 0, a: float = 3.0, b: float = 2.0, noise_std: float = 0.1,
                 n_train: int = 200, n_val: int = 50, n_test: int = 50) -> None:
        super().__init__(seed)
        self.a, self.b, self.noise_std = a, b, noise_std
        g = torch.Generator().manual_seed(seed)
        n = n_train + n_val + n_test
        x = torch.rand(n, 1, generator=g)
        y = a * x + b + noise_std * torch.randn(n, 1, generator=g)
        cuts = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
        self.data = {k: (x[i:j], y[i:j]) for k, (i, j) in cuts.items()}
        self.module = nn.Linear(1, 1)

    def to(self, device):  # noqa: D102
        super().to(device)
        self.data = {k: (x.to(self.device), y.to(self.device)) for k, (x, y) in self.data.items()}
        return self

    def sample_batch(self, split: str, generator: torch.Generator):
        return self.data[split]

    def full_batches(self, split: str):
        return [self.data[split]]

    def batch_size_of(self, batch) -> int:
        return batch[0].shape[0]

    def loss_from_output(self, output: Tensor, batch) -> Tensor:
        return (output - batch[1]).pow(2).mean()

    def loss_signature(self):
        """The class alone: the data come in as the batch."""
        return (type(self),)

    def describe(self):
        return {**super().describe(), "a": self.a, "b": self.b, "noise_std": self.noise_std}


class LinearRegressionFamily(TaskFamily):
    """Regression problems with fresh samples per seed.

    Args:
        a, b: the true slope and intercept (3 and 2 in the study).
        coef_std: if > 0, each instance draws its slope and intercept from
            N(a, coef_std^2) and N(b, coef_std^2), so a learned optimizer cannot simply memorise
            the answer; 0 reproduces the study's single function.
        noise_std: standard deviation of the additive noise.
    """

    name = "regression"

    def __init__(self, a: float = 3.0, b: float = 2.0, coef_std: float = 0.0, noise_std: float = 0.1) -> None:
        super().__init__()
        self.a, self.b, self.coef_std, self.noise_std = a, b, coef_std, noise_std

    def sample(self, seed: int) -> LinearRegressionTask:
        a, b = self.a, self.b
        if self.coef_std > 0:
            g = torch.Generator().manual_seed(seed + 7919)
            a, b = (float(v) for v in torch.tensor([a, b]) + self.coef_std * torch.randn(2, generator=g))
        return LinearRegressionTask(seed, a, b, self.noise_std).to(self.device)

    def describe(self):
        return {**super().describe(), "a": self.a, "b": self.b, "coef_std": self.coef_std}
