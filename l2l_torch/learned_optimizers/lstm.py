"""The coordinatewise LSTM optimizer of Andrychowicz et al. (2016), with the study's options."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from l2l_torch.learned_optimizers.base import LearnedOptimizerBase, LOptState, group_by_kind, register

PREPROCESS_MODES = ("log_sign", "none")
NORMALIZATIONS = ("none", "batch", "layer")


def preprocess_gradients(grad: Tensor, p: float = 10.0, dim: int = -1) -> Tensor:
    """The paper's gradient preprocessing (Andrychowicz et al. 2016, Appendix A).

    Each coordinate ``g`` becomes two features::

        (log|g| / p, sgn g)   if |g| >= e^-p
        (-1,        e^p g)    otherwise

    Args:
        grad: gradients of any shape ``(*)``.
        p: controls how small a gradient is still resolved by the log branch (p > 0).
        dim: where the feature axis goes in the output (``0`` gives ``(2, *)``).

    Returns:
        Features of shape ``(*, 2)`` (default); finite for any finite input, including 0 and +-1e30.

    Example:
        >>> preprocess_gradients(torch.tensor([0.0, 1.0, -1e-30]))[..., 0]
        tensor([-1.,  0., -1.])
    """
    if p <= 0:
        raise ValueError(f"preprocessing p must be > 0, got {p}")
    absg = grad.abs()
    big = absg >= math.exp(-p)
    # clamp before log so the unused branch is finite and gradients through torch.where stay finite
    log_part = torch.where(big, torch.log(absg.clamp_min(math.exp(-p))) / p, torch.full_like(grad, -1.0))
    sign_part = torch.where(big, torch.sign(grad), grad * math.exp(p))
    return torch.stack([log_part, sign_part], dim=dim)


def lstm_cell_t(x: Tensor, h: Tensor, c: Tensor, cell: nn.LSTMCell) -> tuple[Tensor, Tensor]:
    """``nn.LSTMCell`` maths in a coordinate-minor layout: ``x`` (F, N), ``h``/``c`` (H, N) -> (H, N) each.

    With coordinates along the last axis, each gate is a contiguous row block of the ``(4H, N)`` gate
    matrix, so the elementwise gate maths runs on contiguous memory; ``nn.LSTMCell`` on ``(N, 4H)``
    works on strided column blocks, which is several times slower on CPUs for large ``N``. Same
    weights, same formula: results equal ``nn.LSTMCell`` up to float rounding (tested).
    """
    gates = torch.addmm((cell.bias_ih + cell.bias_hh).unsqueeze(1), cell.weight_ih, x)
    if not torch.is_grad_enabled():
        # deployment (no autograd graph): the same maths with in-place updates of fresh tensors,
        # which saves most of the allocations and memory traffic of a step
        gates.addmm_(cell.weight_hh, h)
        hs = h.shape[0]
        gates[: 2 * hs].sigmoid_()
        gates[2 * hs: 3 * hs].tanh_()
        gates[3 * hs:].sigmoid_()
        i, f, g, o = gates.chunk(4, 0)
        c_new = f.mul(c).addcmul_(i, g)
        return torch.tanh(c_new).mul_(o), c_new
    gates = torch.addmm(gates, cell.weight_hh, h)
    i, f, g, o = gates.chunk(4, 0)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


class CoordinatewiseLSTM(nn.Module):
    """A stack of LSTM cells applied to every coordinate at once, plus a linear head.

    The weights are ``nn.LSTMCell``/``nn.Linear`` modules (their usual ``state_dict``), computed in a
    coordinate-minor layout for speed (see :func:`lstm_cell_t`). Shapes: input ``(F, N)`` for ``N``
    coordinates and ``F`` features; each layer's hidden and cell state ``(H, N)``; output ``(N,)``.
    """

    def __init__(self, in_features: int, hidden_size: int, num_layers: int, normalization: str) -> None:
        super().__init__()
        self.cells = nn.ModuleList(
            nn.LSTMCell(in_features if i == 0 else hidden_size, hidden_size) for i in range(num_layers))
        if normalization == "batch":
            # statistics over coordinates of this step only: no running state, so the step stays pure
            self.norm: nn.Module = nn.BatchNorm1d(hidden_size, track_running_stats=False)
        elif normalization == "layer":
            self.norm = nn.LayerNorm(hidden_size)
        else:
            self.norm = nn.Identity()
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: Tensor, hidden: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        new_hidden = []
        for cell, (h, c) in zip(self.cells, hidden):
            h, c = lstm_cell_t(x, h, c, cell)
            new_hidden.append((h, c))
            x = h
        if not isinstance(self.norm, nn.Identity):
            x = self.norm(x.t()).t()  # both norms are defined on (N, H)
        return torch.addmm(self.head.bias.unsqueeze(1), self.head.weight, x).squeeze(0), new_hidden


@register("lstm")
class LSTMOptimizer(LearnedOptimizerBase):
    """Coordinatewise two-layer LSTM optimizer ("learning to learn by gradient descent by gradient descent").

    The LSTM's weights are shared by all coordinates; each coordinate has its own hidden and
    cell state. All coordinates (of one parameter kind) are processed in one batched call.

    Args:
        hidden_size: LSTM hidden units per layer (20 in the paper).
        num_layers: stacked LSTM layers (2 in the paper).
        preprocess: ``"log_sign"`` for the paper's ``(log|g|/p, sgn g)`` / ``(-1, e^p g)``
            preprocessing, or ``"none"`` to feed the raw gradient.
        preprocess_p: the ``p`` of the preprocessing (10 in the paper).
        output_scale: the update is ``output_scale * head(h)`` (the study used 0.1 ... 0.001).
        normalization: ``"none"``, ``"batch"`` (BatchNorm over coordinates, as in the study) or
            ``"layer"``, applied to the top LSTM output before the linear head.
        per_kind: one LSTM per parameter kind (``"conv"`` and ``"dense"``), as in the paper's
            CIFAR experiment and the study's 6.5.2; otherwise one LSTM for all params.

    Example:
        >>> lopt = LSTMOptimizer()
        >>> params = {"w": torch.zeros(3, 4)}
        >>> state = lopt.init_state(params)
        >>> new_params, state = lopt.step(params, {"w": torch.ones(3, 4)}, state)
        >>> new_params["w"].shape
        torch.Size([3, 4])
    """

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, preprocess: str = "log_sign",
                 preprocess_p: float = 10.0, output_scale: float = 0.1, normalization: str = "none",
                 per_kind: bool = False) -> None:
        if preprocess not in PREPROCESS_MODES:
            raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, got {preprocess!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if hidden_size < 1 or num_layers < 1:
            raise ValueError("hidden_size and num_layers must be >= 1")
        super().__init__(hidden_size=hidden_size, num_layers=num_layers, preprocess=preprocess,
                         preprocess_p=preprocess_p, output_scale=output_scale,
                         normalization=normalization, per_kind=per_kind)
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.preprocess, self.preprocess_p = preprocess, preprocess_p
        self.output_scale, self.per_kind = output_scale, per_kind
        in_features = 2 if preprocess == "log_sign" else 1
        kinds = ("conv", "dense") if per_kind else ("all",)
        self.nets = nn.ModuleDict({k: CoordinatewiseLSTM(in_features, hidden_size, num_layers, normalization)
                                   for k in kinds})

    def features(self, grad: Tensor) -> Tensor:
        """Input features ``(F, N)`` of flat gradients ``(N,)``."""
        if self.preprocess == "log_sign":
            return preprocess_gradients(grad, self.preprocess_p, dim=0)
        return grad.unsqueeze(0)

    def init_state(self, params: Mapping[str, Tensor], kinds: Mapping[str, str] | None = None) -> LOptState:
        groups = group_by_kind(list(params), kinds, self.per_kind, list(self.nets))
        hidden = {}
        for k, names in groups.items():
            n = sum(params[name].numel() for name in names)
            ref = params[names[0]]
            zeros = ref.new_zeros(self.hidden_size, n)
            hidden[k] = [(zeros, zeros) for _ in range(self.num_layers)]
        return {"groups": groups, "hidden": hidden}

    def step(self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor],
             state: LOptState) -> tuple[dict[str, Tensor], LOptState]:
        new_params: dict[str, Tensor] = {}
        new_hidden = {}
        for kind, names in state["groups"].items():
            flat_g = torch.cat([grads[n].reshape(-1) for n in names])
            out, new_hidden[kind] = self.nets[kind](self.features(flat_g), state["hidden"][kind])
            updates = (self.output_scale * out).split([params[n].numel() for n in names])
            for n, u in zip(names, updates):
                new_params[n] = params[n] + u.view_as(params[n])
        return new_params, {"groups": state["groups"], "hidden": new_hidden}

    def coord_state(self, state: LOptState) -> dict[str, Tensor]:
        # (N, L * 2 * H): layer-major, then (h, c); a transposed view of the (S, N) working layout
        return {k: torch.cat([t for hc in layers for t in hc], dim=0).t() for k, layers in state["hidden"].items()}

    def state_from_coords(self, groups: dict[str, list[str]], coords: Mapping[str, Tensor]) -> LOptState:
        hidden = {}
        for k in groups:
            parts = coords[k].t().contiguous().split(self.hidden_size, dim=0)
            hidden[k] = [(parts[2 * i], parts[2 * i + 1]) for i in range(self.num_layers)]
        return {"groups": groups, "hidden": hidden}

    def state_bytes_per_param(self) -> int:
        return 2 * self.num_layers * self.hidden_size * 4
