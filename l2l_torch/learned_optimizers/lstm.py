"""The coordinatewise LSTM optimizer of Andrychowicz et al. (2016), with the study's options."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from l2l_torch.checkpoint import CheckpointError
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

    With the three sigmoid gates first, one ``sigmoid_`` covers rows ``[0, 3H)``; one tensor holds all the
    cell's weights, so the backward returns one gradient for them.
    """
    w = torch.cat([cell.weight_ih, cell.weight_hh, (cell.bias_ih + cell.bias_hh).unsqueeze(1)], dim=1)
    i, f, g, o = w.chunk(4, 0)
    return torch.cat([i, f, o, g], dim=0)


def _cell_grads(acts: Tensor, tc: Tensor, c: Tensor, dh: Tensor, dc: Tensor) -> tuple[Tensor, Tensor]:
    """Elementwise part of the LSTM cell's backward: gradients w.r.t. the gate pre-activations and ``c``.

    Args:
        acts: activated gates ``(4H, N)``, rows i, f, o (sigmoid) and g (tanh).
        tc: ``tanh(c')`` ``(H, N)``.
        c: the previous cell state ``(H, N)``.
        dh, dc: gradients arriving at ``h'`` and ``c'`` ``(H, N)``.

    Returns:
        ``(d, dc_prev)``: the gradient w.r.t. the gate pre-activations ``(4H, N)`` (rows i, f, o, g) and the
        gradient w.r.t. ``c`` ``(H, N)``. Pure arithmetic (no transcendental functions), so one compiled loop
        does it all in a single pass over memory (see :func:`_grads_kernel`). The four gate blocks are
        written as one ``stack`` of ``(4, H, N)``: compiled, that is a plain loop over the output, faster alone
        than a ``cat`` of row blocks copied into a buffer (0.42 against 0.61 ms at H = 20, N = 15910, 1 thread,
        inputs not in cache, on the 2-core development machine), a few per cent of a whole meta-training step
        (``research/tools/cell_grads_ab.py``, ``benchmarks/results/cell_grads_ab.txt``).
    """
    hs, n = c.shape
    i, f, o, g = acts.view(4, hs, n).unbind(0)
    dct = dh * o * (1 - tc * tc) + dc
    d = torch.stack([dct * g * i * (1 - i), dct * c * f * (1 - f), dh * tc * o * (1 - o), dct * i * (1 - g * g)])
    return d.view(4 * hs, n), dct * f


_KERNEL: dict[str, object] = {}


def _grads_kernel():
    """:func:`_cell_grads`, compiled with ``torch.compile`` once per process (dynamic shapes).

    Eager, its ~25 elementwise passes over ``(H, N)`` tensors are memory-bound and cost about as much as
    the cell's matrix products; compiled, they are one loop. ``L2L_COMPILE=0`` in the environment, or a
    failure to compile (e.g. no C++ compiler for inductor on CPU), falls back to eager with a warning.
    """
    fn = _KERNEL.get("grads")
    if fn is None:
        fn = _cell_grads
        if os.environ.get("L2L_COMPILE", "1") != "0":
            fn = torch.compile(_cell_grads, dynamic=True)
        _KERNEL["grads"] = fn
    return fn


def _call_grads(*args: Tensor) -> tuple[Tensor, Tensor]:
    fn = _grads_kernel()
    if fn is _cell_grads:
        return fn(*args)
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - any compiler failure: keep training, eagerly
        warnings.warn(f"torch.compile of the LSTM cell's backward failed ({type(err).__name__}: {err}); "
                      "using eager PyTorch (slower). Set L2L_COMPILE=0 to skip the attempt.", stacklevel=2)
        _KERNEL["grads"] = _cell_grads
        return _cell_grads(*args)


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


def _stack_inputs(x: Tensor, h: Tensor) -> Tensor:
    """``[x; h; 1]`` ``(F+H+1, N)`` in a scratch buffer (use it before the next call): with it, one ``mm``
    with the weights of :func:`_ifog_weights` gives the gate pre-activations, and one gives their gradient."""
    f_in, hs, n = x.shape[0], h.shape[0], h.shape[1]
    xh1 = _scratch("xh1", (f_in + hs + 1, n), h)
    xh1[:f_in] = x
    xh1[f_in:-1] = h
    xh1[-1] = 1.0
    return xh1


def _tanh(t: Tensor, out: Tensor | None = None) -> Tensor:
    """``torch.tanh(t, out=out)``, computed on CPUs as ``2 sigmoid(2 t) - 1`` (``out=t``: in place).

    ATen's vectorised CPU ``tanh`` costs several times its ``sigmoid`` per element: on the 2-core development
    machine, over a ``(20, 15910)`` tensor (the standard benchmark's cell state), 569 us for ``tanh`` against 169 us
    for the identity's four passes at 2 threads (1049 vs 262 us at 1 thread; ``research/tools/tanh_identity.py``), and
    the LSTM cell takes two tanh per layer and step. The identity is exact up to rounding: at most 1.8e-7 absolute
    error in float32 (``tanh``'s own is 3e-8), inside the float tolerance of the parity tests with ``nn.LSTMCell``; near 0 the relative error grows
    (``tanh(1e-8)`` comes out as 0). Other devices use ``torch.tanh`` itself.
    """
    if t.device.type != "cpu":
        return torch.tanh(t) if out is None else torch.tanh(t, out=out)
    if out is None and torch.is_grad_enabled():  # in-place passes would break autograd (the plain cell)
        return torch.sigmoid(t * 2.0) * 2.0 - 1.0
    return (torch.mul(t, 2.0) if out is None else torch.mul(t, 2.0, out=out)).sigmoid_().mul_(2.0).sub_(1.0)


def _activated_gates(w: Tensor, x: Tensor, h: Tensor, out: Tensor | None = None) -> Tensor:
    """Activated gates ``(4H, N)``, rows i, f, o (sigmoid) then g (tanh), in ``out`` or a fresh tensor."""
    acts = torch.mm(w, _stack_inputs(x, h), out=out)
    hs = h.shape[0]
    if acts.device.type == "cpu":  # tanh as 2 sigmoid(2 g) - 1 (see _tanh): one sigmoid_ covers all four gates
        g = acts[3 * hs:]
        g.mul_(2.0)
        acts.sigmoid_()
        g.mul_(2.0).sub_(1.0)
    else:
        acts[: 3 * hs].sigmoid_()
        acts[3 * hs:].tanh_()
    return acts


class _FusedLSTMCell(torch.autograd.Function):
    """One LSTM cell over ``N`` coordinates with a hand-written backward (the meta-training hot path).

    forward(w ``(4H, F+H+1)`` from :func:`_ifog_weights`, x ``(F, N)``, h ``(H, N)``, c ``(H, N)``,
    recompute) -> (h' ``(H, N)``, c' ``(H, N)``). Same formula as ``nn.LSTMCell``; equal to it up to
    float rounding (tested, and gradchecked in float64).

    By default the activated gates and ``tanh(c')`` are saved (``5H x N`` floats per call), so the backward
    is one compiled elementwise pass (:func:`_grads_kernel`) and the three matrix products the gradients
    need. With ``recompute`` only tensors that exist anyway are saved (inputs and ``c'``) and the backward
    recomputes the gates (one more ``mm`` and the activations): about 3x less memory held for the
    meta-backward, about 10 % slower (``benchmarks/memory.py``, ``benchmarks/meta_throughput.py``).
    """

    @staticmethod
    def forward(ctx, w: Tensor, x: Tensor, h: Tensor, c: Tensor, recompute: bool = False) -> tuple[Tensor, Tensor]:
        acts = _activated_gates(w, x, h)
        i, f, o, g = acts.chunk(4, 0)
        c_new = f.mul(c).addcmul_(i, g)
        tc = _tanh(c_new)
        ctx.recompute = recompute
        ctx.save_for_backward(w, x, h, c, c_new if recompute else acts, None if recompute else tc)
        return (tc.mul_(o) if recompute else tc.mul(o)), c_new  # tc is saved unless recompute

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dh: Tensor | None, dc: Tensor | None):
        w, x, h, c, saved, tc = ctx.saved_tensors
        if ctx.recompute:  # temporaries in scratch buffers: fresh ones would cost page faults each step
            acts = _activated_gates(w, x, h, out=_scratch("acts", (w.shape[0], c.shape[1]), c))
            tc = _tanh(saved, out=_scratch("tc", tuple(c.shape), c))
        else:
            acts = saved
        dh = torch.zeros_like(c) if dh is None else dh.contiguous()
        dc = torch.zeros_like(c) if dc is None else dc.contiguous()
        d, dc_prev = _call_grads(acts, tc, c, dh, dc)
        f_in = x.shape[0]
        # d @ [x; h; 1]^T computed as ([x; h; 1] @ d^T)^T: the same products, but MKL runs this long-K shape up to
        # 1.6x faster (measured at N = 15910 on the development machine); the transposed view is a valid gradient
        dw = torch.mm(_stack_inputs(x, h), d.t()).t() if ctx.needs_input_grad[0] else None
        dx = torch.mm(w[:, :f_in].t(), d) if ctx.needs_input_grad[1] else None
        dh_prev = torch.mm(w[:, f_in:-1].t(), d) if ctx.needs_input_grad[2] else None
        return dw, dx, dh_prev, dc_prev if ctx.needs_input_grad[3] else None, None


#: the cell :func:`lstm_cell_t` runs outside ``torch.func`` transforms: ``None`` chooses by device (:func:`cell_backend`);
#: ``"fused"`` or ``"torch"`` forces one (the tests compare the two on a CPU)
FORCE_CELL: str | None = None
CELL_BACKENDS = ("fused", "torch")


def cell_backend(device: torch.device) -> str:
    """The LSTM cell used on ``device``: ``"fused"`` (:class:`_FusedLSTMCell`, hand-written for CPUs, where it
    measured 2x the plain ``nn.LSTMCell``) on CPUs, ``"torch"`` (:func:`_lstm_cell_torch`, torch's fused cell: on CUDA
    two matrix products and one elementwise kernel, forward and backward) elsewhere, where the hand-written cell's
    many small kernels made a step slower than the plain ``nn.LSTMCell`` (0.65x on an H200,
    ``research/experiments/cuda_check``). :data:`FORCE_CELL` overrides the choice."""
    if FORCE_CELL is not None:
        if FORCE_CELL not in CELL_BACKENDS:
            raise ValueError(f"FORCE_CELL must be one of {CELL_BACKENDS} or None, got {FORCE_CELL!r}")
        return FORCE_CELL
    return "fused" if device.type == "cpu" else "torch"


def _lstm_cell_torch(x: Tensor, h: Tensor, c: Tensor, cell: nn.LSTMCell) -> tuple[Tensor, Tensor]:
    """The cell of :func:`lstm_cell_t` by ``torch._VF.lstm_cell`` (what ``nn.LSTMCell`` calls) on the transposed
    views: ``x`` ``(F, N)``, ``h``, ``c`` ``(H, N)`` -> ``(h', c')``, each ``(H, N)`` (transposed views of torch's
    contiguous ``(N, H)`` outputs, so the next step's ``h.t()`` and ``c.t()`` are contiguous again)."""
    h_new, c_new = torch._VF.lstm_cell(x.t(), (h.t().contiguous(), c.t().contiguous()), cell.weight_ih,
                                       cell.weight_hh, cell.bias_ih, cell.bias_hh)
    return h_new.t(), c_new.t()


def lstm_cell_t(x: Tensor, h: Tensor, c: Tensor, cell: nn.LSTMCell,
                recompute: bool = False) -> tuple[Tensor, Tensor]:
    """``nn.LSTMCell`` maths in a coordinate-minor layout: ``x`` (F, N), ``h``/``c`` (H, N) -> (H, N) each.

    With coordinates along the last axis, each gate is a contiguous row block of the ``(4H, N)`` gate
    matrix, so the elementwise gate maths runs on contiguous memory; ``nn.LSTMCell`` on ``(N, 4H)``
    works on strided column blocks, which is several times slower on CPUs for large ``N``. Same
    weights, same formula: results equal ``nn.LSTMCell`` up to float rounding (tested). With autograd
    on, the cell is one :class:`_FusedLSTMCell` (hand-written backward; ``recompute`` trades speed for
    memory there). Under a ``torch.func`` transform (e.g. ``vmap`` over perturbed weights, as in
    :mod:`l2l_torch.vmap_unroll`), which neither the fused cell nor the scratch buffers support, it computes the
    same operations out of place (:func:`_lstm_cell_plain`). Off CPUs it runs torch's own fused cell instead
    (:func:`cell_backend`; ``recompute`` has no effect there).
    """
    if any(torch._C._functorch.is_functorch_wrapped_tensor(t) for t in (x, h, c, cell.weight_ih)):
        return _lstm_cell_plain(_ifog_weights(cell), x, h, c)
    if cell_backend(x.device) == "torch":
        return _lstm_cell_torch(x, h, c, cell)
    if torch.is_grad_enabled():
        return _FusedLSTMCell.apply(_ifog_weights(cell), x, h, c, recompute)
    # deployment (no autograd graph): the gates never leave this call, so they live in a scratch buffer (a fresh
    # (4H, N) tensor per step costs its page faults), computed by the same single product as in meta-training
    w = _ifog_weights(cell)
    acts = _activated_gates(w, x, h, out=_scratch("gates", (w.shape[0], h.shape[1]), h))
    i, f, o, g = acts.chunk(4, 0)
    c_new = f.mul(c).addcmul_(i, g)
    return _tanh(c_new).mul_(o), c_new


def _lstm_cell_plain(w: Tensor, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The cell of :func:`lstm_cell_t` in out-of-place operations only (no scratch buffers, no custom autograd
    function), for ``torch.func`` transforms: ``w`` ``(4H, F+H+1)`` from :func:`_ifog_weights`, ``x`` ``(F, N)``,
    ``h``, ``c`` ``(H, N)`` -> ``(h', c')``, each ``(H, N)``. The same operations as the other paths (the gates
    from one product with ``[x; h; 1]``, ``tanh`` by :func:`_tanh`), so the same values up to the rounding of the
    matrix product."""
    hs = h.shape[0]
    acts = torch.mm(w, torch.cat([x, h, torch.ones_like(h[:1])]))
    i, f, o = acts[: 3 * hs].sigmoid().chunk(3, 0)
    g = _tanh(acts[3 * hs:])
    c_new = f.mul(c).addcmul(i, g)
    return _tanh(c_new).mul(o), c_new


class CoordinatewiseLSTM(nn.Module):
    """A stack of LSTM cells applied to every coordinate at once, plus a linear head.

    The weights are ``nn.LSTMCell``/``nn.Linear`` modules (their usual ``state_dict``), computed in a
    coordinate-minor layout for speed (see :func:`lstm_cell_t`). Shapes: input ``(F, N)`` for ``N``
    coordinates and ``F`` features; each layer's hidden and cell state ``(H, N)``; output ``(N,)``.
    ``recompute``: see :class:`_FusedLSTMCell` (meta-training memory; no effect on the numbers).
    """

    def __init__(self, in_features: int, hidden_size: int, num_layers: int, normalization: str,
                 recompute: bool = False) -> None:
        super().__init__()
        self.recompute = recompute
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
            h, c = lstm_cell_t(x, h, c, cell, self.recompute)
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
        recompute_gates: in meta-training, keep only the LSTM's inputs and cell states for the
            meta-backward and recompute the gates there: about 3x less memory per unrolled step, about 10 %
            slower; same numbers (``benchmarks/memory.py``, ``benchmarks/meta_throughput.py``). Not part of :meth:`config`.

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
                 per_kind: bool = False, init_from: str | None = None, recompute_gates: bool = False) -> None:
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
        self.nets = nn.ModuleDict({k: CoordinatewiseLSTM(in_features, hidden_size, num_layers, normalization,
                                                         recompute_gates) for k in kinds})
        if init_from:
            self.warm_start(init_from)

    def _warm_start_weights(self, other: LearnedOptimizerBase, path: str) -> dict[str, Tensor]:
        """As the base class, and the stored LSTM may also differ in ``output_scale``: its heads are multiplied by
        ``other.output_scale / self.output_scale``, so that the warm start makes exactly the stored optimizer's
        updates (e.g. an LSTM meta-trained on MLPs at 0.1 as the start of one for the STN at 0.01)."""
        theirs = other.config()
        if theirs.get("output_scale") == self.output_scale:
            return super()._warm_start_weights(other, path)
        same = {k: v for k, v in self.config().items() if k not in ("per_kind", "output_scale")}
        if same != {k: v for k, v in theirs.items() if k not in ("per_kind", "output_scale")}:
            raise CheckpointError(f"init_from={path}: its architecture {theirs} differs from {self.config()}")
        ratio = theirs["output_scale"] / self.output_scale
        return {k: v * ratio if k.rsplit(".", 2)[-2:-1] == ["head"] else v for k, v in other.state_dict().items()}

    vmap_safe = True  # lstm_cell_t takes its plain-tensor path under torch.func transforms

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
