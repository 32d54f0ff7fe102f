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


def _ifog_weights(cell: nn.LSTMCell) -> Tensor:
    """``[W_ih | W_hh | b_ih + b_hh]`` as one ``(4H, F + H + 1)`` matrix, gate rows reordered to i, f, o, g.

    With the three sigmoid gates first, one ``sigmoid_`` covers rows ``[0, 3H)``; with the bias as a
    last column (multiplying a row of ones), one ``mm`` gives the pre-activations and, in the backward,
    one ``mm`` gives the gradients of all three weight tensors.
    """
    w = torch.cat([cell.weight_ih, cell.weight_hh, (cell.bias_ih + cell.bias_hh).unsqueeze(1)], dim=1)
    i, f, g, o = w.chunk(4, 0)
    return torch.cat([i, f, o, g], dim=0)


#: scratch buffers of the fused cell, reused across steps: a fresh multi-MB tensor per step costs its
#: first-touch page faults, which on small CPU machines cost more than the maths written into it
_SCRATCH: dict[tuple, Tensor] = {}


def _scratch(role: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """A reusable buffer of ``shape`` (contents undefined) for temporaries that never leave a call."""
    key = (role, like.dtype, like.device)
    n = math.prod(shape)
    buf = _SCRATCH.get(key)
    if buf is None or buf.numel() < n:
        buf = _SCRATCH[key] = like.new_empty(n)
    return buf[:n].view(shape)


def _ifog_gates(w: Tensor, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Activated gates ``(4H, N)`` (rows i, f, o, g) and the stacked inputs ``[x; h; 1]`` ``(F+H+1, N)``.

    Both live in scratch buffers: use them before the next call.
    """
    f_in, hs, n = x.shape[0], h.shape[0], h.shape[1]
    xh1 = _scratch("xh1", (f_in + hs + 1, n), h)
    xh1[:f_in] = x
    xh1[f_in:-1] = h
    xh1[-1] = 1.0
    gates = torch.mm(w, xh1, out=_scratch("gates", (4 * hs, n), h))
    gates[: 3 * hs].sigmoid_()
    gates[3 * hs:].tanh_()
    return gates, xh1


class _FusedLSTMCell(torch.autograd.Function):
    """One LSTM cell over ``N`` coordinates with a hand-written backward (the meta-training hot path).

    forward(w ``(4H, F+H+1)`` from :func:`_ifog_weights`, x ``(F, N)``, h ``(H, N)``, c ``(H, N)``)
    -> (h' ``(H, N)``, c' ``(H, N)``). Only the inputs and ``c'`` are saved (tensors that exist anyway):
    the gates are recomputed in the backward (one small ``mm``) instead of keeping ``4H x N``
    activations per step alive for the whole truncation, and temporaries live in reused scratch
    buffers instead of the ~20 fresh intermediates that autograd keeps for the decomposed cell.
    Same formula as ``nn.LSTMCell``.
    """

    @staticmethod
    def forward(ctx, w: Tensor, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        gates, _ = _ifog_gates(w, x, h)
        i, f, o, g = gates.chunk(4, 0)
        c_new = f.mul(c).addcmul_(i, g)
        h_new = torch.tanh(c_new).mul_(o)
        ctx.save_for_backward(w, x, h, c, c_new)
        return h_new, c_new

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dh: Tensor | None, dc: Tensor | None):
        w, x, h, c, c_new = ctx.saved_tensors
        gates, xh1 = _ifog_gates(w, x, h)
        hs = c.shape[0]
        i, f, o, g = gates.chunk(4, 0)
        if dh is None:
            dh = torch.zeros_like(c)
        tc = torch.tanh(c_new, out=_scratch("tc", tuple(c.shape), c))
        # dL/dc through h' = o * tanh(c'), plus the gradient arriving at c' directly
        dct = tc.square().neg_().add_(1).mul_(o).mul_(dh)
        if dc is not None:
            dct.add_(dc)
        d = _scratch("d", tuple(gates.shape), c)  # gradient w.r.t. the gate pre-activations, rows i, f, o, g
        d_i, d_f, d_o, d_g = d.chunk(4, 0)
        torch.mul(dct, g, out=d_i)
        torch.mul(dct, c, out=d_f)
        torch.mul(dh, tc, out=d_o)
        torch.mul(dct, i, out=d_g)
        dc_prev = dct.mul_(f) if ctx.needs_input_grad[3] else None  # the last use of dct and f
        # the gates are scratch and no longer needed: turn them into the activations' derivatives in place
        d_g.mul_(g.square_().neg_().add_(1))
        s = gates[: 3 * hs]
        d[: 3 * hs].mul_(s).mul_(s.neg_().add_(1))
        dw = torch.mm(d, xh1.t()) if ctx.needs_input_grad[0] else None
        dx = torch.mm(w[:, : x.shape[0]].t(), d) if ctx.needs_input_grad[1] else None
        dh_prev = torch.mm(w[:, x.shape[0]: -1].t(), d) if ctx.needs_input_grad[2] else None
        return dw, dx, dh_prev, dc_prev


def lstm_cell_t(x: Tensor, h: Tensor, c: Tensor, cell: nn.LSTMCell) -> tuple[Tensor, Tensor]:
    """``nn.LSTMCell`` maths in a coordinate-minor layout: ``x`` (F, N), ``h``/``c`` (H, N) -> (H, N) each.

    With coordinates along the last axis, each gate is a contiguous row block of the ``(4H, N)`` gate
    matrix, so the elementwise gate maths runs on contiguous memory; ``nn.LSTMCell`` on ``(N, 4H)``
    works on strided column blocks, which is several times slower on CPUs for large ``N``. Same
    weights, same formula: results equal ``nn.LSTMCell`` up to float rounding (tested). With autograd
    on, the cell is one :class:`_FusedLSTMCell` (hand-written backward, gates recomputed there).
    """
    if torch.is_grad_enabled():
        return _FusedLSTMCell.apply(_ifog_weights(cell), x, h, c)
    # deployment (no autograd graph): in-place updates of fresh tensors save most of the allocations
    # and memory traffic of a step
    gates = torch.addmm((cell.bias_ih + cell.bias_hh).unsqueeze(1), cell.weight_ih, x)
    gates.addmm_(cell.weight_hh, h)
    hs = h.shape[0]
    gates[: 2 * hs].sigmoid_()
    gates[2 * hs: 3 * hs].tanh_()
    gates[3 * hs:].sigmoid_()
    i, f, g, o = gates.chunk(4, 0)
    c_new = f.mul(c).addcmul_(i, g)
    return torch.tanh(c_new).mul_(o), c_new


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
        init_from: start from the weights of this learned-optimizer file (same architecture; a
            single-LSTM file warm-starts both LSTMs of a ``per_kind`` one, see
            :meth:`~l2l_torch.learned_optimizers.base.LearnedOptimizerBase.warm_start`). Not part of
            :meth:`config`: a checkpoint of the result stands on its own.

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
                 per_kind: bool = False, init_from: str | None = None) -> None:
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
        self.normalization = normalization
        in_features = 2 if preprocess == "log_sign" else 1
        kinds = ("conv", "dense") if per_kind else ("all",)
        self.nets = nn.ModuleDict({k: CoordinatewiseLSTM(in_features, hidden_size, num_layers, normalization)
                                   for k in kinds})
        if init_from:
            self.warm_start(init_from)

    @property
    def tasks_batchable(self) -> bool:
        # coordinatewise, except batch normalisation, whose statistics are over all coordinates
        return self.normalization != "batch"

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
