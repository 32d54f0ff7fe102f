"""The paper's LSTM optimizer: preprocessing, the pure functional step, kinds."""

import math

import pytest
import torch

from l2l_torch.learned_optimizers import LSTMOptimizer, preprocess_gradients


@pytest.mark.parametrize("g", [0.0, 1e-30, -1e-30, 1e30, -1e30, 1.0, -3.5, 1e-5, -1e-4])
def test_preprocessing_edge_inputs(g):
    p = 10.0
    out = preprocess_gradients(torch.tensor([g]), p)[0]
    assert torch.isfinite(out).all()
    if abs(g) >= math.exp(-p):
        assert out[0].item() == pytest.approx(math.log(abs(g)) / p, rel=1e-5)
        assert out[1].item() == math.copysign(1.0, g)
    else:
        assert out[0].item() == -1.0
        assert out[1].item() == pytest.approx(g * math.exp(p), rel=1e-5, abs=1e-12)


def test_preprocessing_shape_and_bad_p():
    assert preprocess_gradients(torch.zeros(3, 4, 5)).shape == (3, 4, 5, 2)
    with pytest.raises(ValueError):
        preprocess_gradients(torch.zeros(2), p=0)


def test_preprocessing_gradient_is_finite():
    g = torch.tensor([0.0, 1e-30, 1e30, -2.0], dtype=torch.float64, requires_grad=True)
    preprocess_gradients(g).sum().backward()
    assert torch.isfinite(g.grad).all()


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
@pytest.mark.parametrize("pre", ["log_sign", "none"])
def test_step_is_pure_and_shaped(norm, pre):
    torch.manual_seed(0)
    lopt = LSTMOptimizer(hidden_size=8, preprocess=pre, normalization=norm)
    params = {"w": torch.randn(3, 4), "b": torch.randn(4)}
    grads = {"w": torch.randn(3, 4), "b": torch.randn(4)}
    before = {k: v.clone() for k, v in params.items()}
    state = lopt.init_state(params)
    new, state2 = lopt.step(params, grads, state)
    assert {k: v.shape for k, v in new.items()} == {k: v.shape for k, v in params.items()}
    for k in params:  # inputs untouched
        assert torch.equal(params[k], before[k])
    assert state2["hidden"]["all"][0][0].shape == (8, 16)  # (H, N): coordinate-minor
    assert not torch.equal(state2["hidden"]["all"][0][0], state["hidden"]["all"][0][0])


def test_output_scale_scales_update():
    torch.manual_seed(0)
    a = LSTMOptimizer(output_scale=0.1)
    b = LSTMOptimizer(output_scale=0.01)
    b.load_state_dict(a.state_dict())
    params, grads = {"w": torch.zeros(5)}, {"w": torch.randn(5)}
    ua = a.step(params, grads, a.init_state(params))[0]["w"]
    ub = b.step(params, grads, b.init_state(params))[0]["w"]
    torch.testing.assert_close(ua, 10 * ub)


def test_per_kind_groups_and_missing_kind_error():
    lopt = LSTMOptimizer(per_kind=True)
    params = {"conv.weight": torch.zeros(2, 1, 3, 3), "fc.weight": torch.zeros(3, 2)}
    state = lopt.init_state(params, {"conv.weight": "conv", "fc.weight": "dense"})
    assert state["groups"] == {"conv": ["conv.weight"], "dense": ["fc.weight"]}
    assert state["hidden"]["conv"][0][0].shape[1] == 18
    with pytest.raises(ValueError, match="only has networks"):
        lopt.init_state(params, {"conv.weight": "attention"})


def test_coord_state_roundtrip():
    lopt = LSTMOptimizer(hidden_size=5, num_layers=3)
    params = {"w": torch.randn(7)}
    state = lopt.step(params, {"w": torch.randn(7)}, lopt.init_state(params))[1]
    coords = lopt.coord_state(state)
    assert coords["all"].shape == (7, 3 * 2 * 5)
    back = lopt.state_from_coords(state["groups"], coords)
    for (h1, c1), (h2, c2) in zip(state["hidden"]["all"], back["hidden"]["all"]):
        assert torch.equal(h1, h2) and torch.equal(c1, c2)


def test_bad_options():
    with pytest.raises(ValueError):
        LSTMOptimizer(preprocess="bogus")
    with pytest.raises(ValueError):
        LSTMOptimizer(normalization="group")


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_fast_layout_matches_plain_lstmcell(norm, on_device):
    """The coordinate-minor fast path computes exactly nn.LSTMCell + head, over several steps."""
    torch.manual_seed(0)
    lopt = LSTMOptimizer(hidden_size=6, num_layers=2, normalization=norm).double()
    net = lopt.nets["all"]
    n = 37
    params = {"w": torch.randn(n, dtype=torch.float64)}
    state = lopt.init_state(params)
    hc = [(torch.zeros(n, 6, dtype=torch.float64),) * 2 for _ in range(2)]
    for _ in range(3):
        g = torch.randn(n, dtype=torch.float64)
        new, state = lopt.step(params, {"w": g}, state)
        x = preprocess_gradients(g)  # (N, 2): the plain nn.LSTMCell path
        for i, cell in enumerate(net.cells):
            hc[i] = cell(x, hc[i])
            x = hc[i][0]
        ref = params["w"] + lopt.output_scale * net.head(net.norm(x)).squeeze(-1)
        torch.testing.assert_close(new["w"], ref)
        torch.testing.assert_close(state["hidden"]["all"][1][0], hc[1][0].t())
        params = new


def test_no_grad_fast_path_matches_autograd_path(on_device):
    """Deployment runs the cell with in-place ops under no_grad; it must compute the same step."""
    torch.manual_seed(0)
    lopt = LSTMOptimizer(hidden_size=7)
    params = {"w": torch.randn(50)}
    state = lopt.init_state(params)
    for _ in range(3):
        g = {"w": torch.randn(50)}
        with torch.no_grad():
            fast, fast_state = lopt.step(params, g, state)
        slow, state = lopt.step(params, g, state)
        torch.testing.assert_close(fast["w"], slow["w"].detach())
        for (h1, c1), (h2, c2) in zip(fast_state["hidden"]["all"], state["hidden"]["all"]):
            torch.testing.assert_close(h1, h2.detach())
            torch.testing.assert_close(c1, c2.detach())
        params = {"w": slow["w"].detach()}
        state = {"groups": state["groups"], "hidden": {"all": [(h.detach(), c.detach()) for h, c in state["hidden"]["all"]]}}


def test_fast_layout_meta_gradient_matches_plain_lstmcell(on_device):
    """The speed brief parity: the meta-gradient through a 4-step unroll equals the plain nn.LSTMCell path's."""
    torch.manual_seed(0)
    lopt = LSTMOptimizer(hidden_size=5).double()
    net = lopt.nets["all"]
    target = torch.randn(30, dtype=torch.float64)

    def loss_fn(w):
        return ((w - target) ** 2).sum()

    def run(fast: bool):
        lopt.zero_grad()
        w = torch.zeros(30, dtype=torch.float64, requires_grad=True)
        state = lopt.init_state({"w": w})
        hc = [(torch.zeros(30, 5, dtype=torch.float64),) * 2 for _ in range(2)]
        meta = 0
        for _ in range(4):
            g = torch.autograd.grad(loss_fn(w), w, retain_graph=True)[0].detach()
            if fast:
                new, state = lopt.step({"w": w}, {"w": g}, state)
                w = new["w"]
            else:
                x = preprocess_gradients(g)
                for i, cell in enumerate(net.cells):
                    hc[i] = cell(x, hc[i])
                    x = hc[i][0]
                w = w + lopt.output_scale * net.head(x).squeeze(-1)
            meta = meta + loss_fn(w)
        meta.backward()
        return [p.grad.clone() for p in lopt.parameters()]

    for a, b in zip(run(True), run(False)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("recompute", [False, True])
def test_fused_cell_gradcheck(recompute, on_device):
    """The hand-written backward of the meta-training LSTM cell equals finite differences (float64),
    both when it saves the gates and when it recomputes them."""
    from l2l_torch.learned_optimizers.lstm import _FusedLSTMCell

    torch.manual_seed(0)
    w = torch.randn(12, 2 + 3 + 1, dtype=torch.float64, requires_grad=True)  # H=3, F=2
    x, h, c = (torch.randn(k, 7, dtype=torch.float64, requires_grad=True) for k in (2, 3, 3))
    assert torch.autograd.gradcheck(lambda *a: _FusedLSTMCell.apply(*a, recompute), (w, x, h, c))


def test_compiled_cell_grads_match_eager(on_device):
    """The torch.compile'd elementwise backward gives the eager formula's numbers (float32 rounding)."""
    from l2l_torch.learned_optimizers.lstm import _call_grads, _cell_grads

    torch.manual_seed(0)
    acts = torch.rand(4 * 5, 300)
    tc, c, dh, dc = torch.rand(5, 300) * 2 - 1, torch.randn(5, 300), torch.randn(5, 300), torch.randn(5, 300)
    torch.testing.assert_close(_call_grads(acts, tc, c, dh, dc), _cell_grads(acts, tc, c, dh, dc))


def test_compile_failure_falls_back_to_eager(monkeypatch):
    """A failing compiler (e.g. no C++ toolchain) warns once and meta-training goes on eagerly."""
    from l2l_torch.learned_optimizers import lstm

    def broken(*args):
        raise RuntimeError("no compiler")

    monkeypatch.setitem(lstm._KERNEL, "grads", broken)
    lopt = LSTMOptimizer()
    w = torch.zeros(6, requires_grad=True)
    state = lopt.init_state({"w": w})
    new, _ = lopt.step({"w": w}, {"w": torch.ones(6)}, state)
    with pytest.warns(UserWarning, match="torch.compile of the LSTM cell"):
        new["w"].sum().backward()
    assert lstm._KERNEL["grads"] is lstm._cell_grads
    assert all(p.grad is not None for p in lopt.parameters())


def test_recompute_gates_same_meta_gradient(on_device):
    """recompute_gates changes memory, not numbers: same meta-gradient as the default (float64)."""
    torch.manual_seed(0)
    a = LSTMOptimizer().double()
    b = LSTMOptimizer(recompute_gates=True).double()
    b.load_state_dict(a.state_dict())
    target = torch.randn(40, dtype=torch.float64)
    for lopt in (a, b):
        w = torch.zeros(40, dtype=torch.float64, requires_grad=True)
        state = lopt.init_state({"w": w})
        meta = 0
        for _ in range(3):
            g = torch.autograd.grad(((w - target) ** 2).sum(), w)[0]
            new, state = lopt.step({"w": w}, {"w": g}, state)
            w = new["w"]
            meta = meta + ((w - target) ** 2).sum()
        meta.backward()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad)


def _unroll_with_cell(backend: str, monkeypatch, dtype: torch.dtype, no_grad: bool = False):
    """Updates, final LSTM state and meta-gradient of a 4-step unroll with the LSTM cell forced to ``backend``."""
    from l2l_torch.learned_optimizers import lstm

    monkeypatch.setattr(lstm, "FORCE_CELL", backend)
    torch.manual_seed(0)
    lopt = LSTMOptimizer(hidden_size=6, output_scale=0.5).to(dtype)
    target = torch.randn(50, dtype=dtype)
    w = torch.zeros(50, dtype=dtype, requires_grad=not no_grad)
    state = lopt.init_state({"w": w})
    meta, ws = 0, []
    with torch.set_grad_enabled(not no_grad):
        for _ in range(4):
            g = 2 * (w.detach() - target)
            new, state = lopt.step({"w": w}, {"w": g}, state)
            w = new["w"]
            ws.append(w.detach())
            meta = meta + ((w - target) ** 2).sum()
    grads = [] if no_grad else torch.autograd.grad(meta, list(lopt.parameters()))
    return ws, [t.detach() for hc in state["hidden"]["all"] for t in hc], grads


@pytest.mark.parametrize("no_grad", [False, True], ids=["meta_training", "deployment"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_cell_matches_fused_cell(dtype, no_grad, monkeypatch):
    """The cell CUDA runs (torch's own, ``torch._VF.lstm_cell``) and the hand-written CPU cell give the same
    updates, states and meta-gradient; both forced on the CPU."""
    from l2l_torch.learned_optimizers import lstm

    fused = _unroll_with_cell("fused", monkeypatch, dtype, no_grad)
    calls = []
    original = lstm._lstm_cell_torch
    monkeypatch.setattr(lstm, "_lstm_cell_torch", lambda *a: calls.append(1) or original(*a))
    ours = _unroll_with_cell("torch", monkeypatch, dtype, no_grad)
    assert len(calls) == 8  # 2 layers x 4 steps
    tol = {} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    for a, b in zip(ours, fused, strict=True):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, **tol)
    assert float(fused[0][-1].abs().max()) > 0.1  # the optimizer moved


def test_cell_backend_by_device(monkeypatch):
    from l2l_torch.learned_optimizers import lstm

    assert lstm.cell_backend(torch.device("cpu")) == "fused"
    assert lstm.cell_backend(torch.device("cuda")) == "torch"
    monkeypatch.setattr(lstm, "FORCE_CELL", "torch")
    assert lstm.cell_backend(torch.device("cpu")) == "torch"
    monkeypatch.setattr(lstm, "FORCE_CELL", "cudnn")
    with pytest.raises(ValueError, match="FORCE_CELL"):
        lstm.cell_backend(torch.device("cpu"))
