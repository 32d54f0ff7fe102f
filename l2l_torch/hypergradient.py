"""Online step-size adaptation by hypergradient descent, for a learned optimizer deployed where its step may be too
large.

Hypergradient descent (Baydin et al., "Online learning rate adaptation with hypergradient descent", ICLR 2018)
moves the learning rate down the derivative of the loss with respect to it. After step ``t - 1`` moved a param
group's params by ``u_{t-1}``, that derivative at the new point is ``g_t . u_{t-1} / lr``: positive when the step
overshot along its own direction. :class:`HypergradientLR` takes it in a multiplicative, scale-free form, so that
``beta`` means the same on every model: before each step,

    factor <- clamp(factor * exp(-beta * cos(g_t, u_{t-1})), min_factor, max_factor)
    lr      = factor * (the group's lr when the adaptation was attached)

With the default ``max_factor=1`` the step only ever shrinks below the one it started from, and grows back up to it.

Example:
    >>> model = torch.nn.Linear(4, 2)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> adaptation = HypergradientLR(opt, beta=1.0)
    >>> model(torch.randn(8, 4)).pow(2).mean().backward()
    >>> opt.step()  # the adaptation runs in the optimizer's step hooks
    >>> adaptation.factors()
    [1.0]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class HypergradientLR:
    """Adapts each param group's ``lr`` of ``optimizer`` by multiplicative hypergradient descent.

    It runs in the optimizer's step hooks (inside the closure, after it, when ``step`` gets one; so not for LBFGS,
    which calls its closure several times), like a scheduler that needs no ``step()`` call, and owns the ``lr``:
    do not combine it with a learning-rate scheduler on the same optimizer. The ``lr`` becomes a 0-d tensor on the
    params' device, so that nothing is read back to the host per step; :class:`~l2l_torch.LearnedOptimizer` and
    torch's SGD, Adam and AdamW take such an ``lr``. It keeps one copy of the params (the last update). Groups
    added to the optimizer afterwards keep their own ``lr``. To resume, attach it to the new optimizer first, then
    load the optimizer's state dict and this one's.

    Args:
        optimizer: the optimizer whose groups' ``lr`` (numbers, when this is attached) it adapts.
        beta: the adaptation's rate per step; 0 keeps the ``lr`` as it is.
        min_factor, max_factor: the bounds of ``lr`` relative to each group's ``lr`` when this was attached.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, beta: float = 1.0, min_factor: float = 1e-3,
                 max_factor: float = 1.0) -> None:
        if not beta >= 0 or not 0 < min_factor <= 1 <= max_factor:
            raise ValueError(f"HypergradientLR needs beta >= 0 and 0 < min_factor <= 1 <= max_factor, got beta={beta}, "
                             f"min_factor={min_factor}, max_factor={max_factor}")
        if any(isinstance(g["lr"], Tensor) for g in optimizer.param_groups):
            raise ValueError("HypergradientLR: the optimizer's lr is already a tensor (is another adaptation or a "
                             "scheduler attached?)")
        self.optimizer, self.beta = optimizer, beta
        self.min_factor, self.max_factor = min_factor, max_factor
        self.initial = [float(g["lr"]) for g in optimizer.param_groups]
        n = len(self.initial)
        self._factor: list[Tensor | None] = [None] * n  #: per group: 0-d float32 tensor on its params' device
        self._update: list[list[Tensor] | None] = [None] * n  #: per group: its params' last update (then: before)
        optimizer.register_step_pre_hook(self._before_step)
        optimizer.register_step_post_hook(self._after_step)

    @staticmethod
    def _params(group: dict[str, Any]) -> list[Tensor]:
        return [p for p in group["params"] if p.grad is not None]

    def _before_step(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> tuple | None:
        """Adapt now, or, when ``step`` got a closure (Lightning always passes one), right after the closure has
        computed the gradients, before the optimizer uses them."""
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)  # args: (optimizer, closure?)
        if closure is None:
            self._adapt(optimizer)
            return None

        def adapted() -> Any:
            loss = closure()
            self._adapt(optimizer)
            return loss

        if "closure" in kwargs:
            return args, {**kwargs, "closure": adapted}
        return (args[0], adapted, *args[2:]), kwargs

    @torch.no_grad()
    def _adapt(self, optimizer: torch.optim.Optimizer) -> None:
        for i, group in enumerate(optimizer.param_groups[:len(self.initial)]):
            ps = self._params(group)
            if not ps:
                continue
            if self._factor[i] is None:
                self._factor[i] = torch.ones((), device=ps[0].device)
            upd = self._update[i]
            if upd is None or len(upd) != len(ps):  # first step (or other params): nothing to compare with yet
                self._update[i] = [p.detach().clone() for p in ps]  # the params before this step
            else:
                if self.beta:
                    cos = _cosine([p.grad for p in ps], upd)
                    self._factor[i] = (self._factor[i] * torch.exp(-self.beta * cos)).clamp(self.min_factor,
                                                                                           self.max_factor)
                torch._foreach_copy_(upd, ps)  # the params before this step, in the last update's buffers
            group["lr"] = self._factor[i] * self.initial[i]

    @torch.no_grad()
    def _after_step(self, optimizer: torch.optim.Optimizer, *_: Any) -> None:
        for i, group in enumerate(optimizer.param_groups[:len(self.initial)]):
            upd, ps = self._update[i], self._params(group)
            if upd is not None and len(upd) == len(ps):
                torch._foreach_sub_(upd, ps)  # before - after
                torch._foreach_neg_(upd)  # the update

    def factors(self) -> list[float]:
        """Each group's ``lr`` over its ``lr`` when the adaptation was attached (reads them to the host)."""
        return [1.0 if f is None else float(f) for f in self._factor]

    def state_dict(self) -> dict[str, Any]:
        """The factors and settings. The last update is not kept: after :meth:`load_state_dict` the first step
        runs at the loaded factor and the adaptation resumes from the step after it."""
        return {"beta": self.beta, "min_factor": self.min_factor, "max_factor": self.max_factor,
                "initial": list(self.initial), "factors": self.factors()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["factors"]) != len(self.initial):
            raise ValueError(f"HypergradientLR state has {len(state['factors'])} groups, the optimizer "
                             f"{len(self.initial)}")
        self.beta, self.min_factor, self.max_factor = state["beta"], state["min_factor"], state["max_factor"]
        self.initial = [float(x) for x in state["initial"]]
        for i, (group, f) in enumerate(zip(self.optimizer.param_groups, state["factors"])):
            ps = self._params(group) or list(group["params"])
            self._factor[i] = torch.tensor(float(f), device=ps[0].device if ps else None)
            self._update[i] = None
            group["lr"] = self._factor[i] * self.initial[i]


def _cosine(a: list[Tensor], b: list[Tensor]) -> Tensor:
    """The cosine between two lists of tensors, each list read as one flat vector (0 where either is 0): a 0-d
    float32 tensor on their device."""
    dot = torch.stack([(x * y).sum() for x, y in zip(a, b)]).sum().float()
    norms = torch.stack(torch._foreach_norm(a)).float().norm() * torch.stack(torch._foreach_norm(b)).float().norm()
    return torch.where(norms > 0, dot / norms.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
