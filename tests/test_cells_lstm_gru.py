"""LSTMCell and GRUCell: gradients, agreement with torch.nn, and hand-written references."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell

IN, H, B, P = 3, 4, 2, 2
STEPS = 5
D = torch.float64


def _rand_state(cell, gen, scale=0.5):
    return tuple(
        scale * torch.randn(B, *shape, dtype=D, generator=gen) for shape in cell.state_shapes()
    )


def _gradcheck_cell(cell, steps=2):
    """gradcheck of ``steps`` chained steps w.r.t. inputs, initial state and every parameter."""
    gen = torch.Generator().manual_seed(1)
    xs = torch.randn(steps, B, cell.input_size, dtype=D, generator=gen)
    state = _rand_state(cell, gen)
    names = [n for n, _ in cell.named_parameters()]
    # Perturb the parameters so ones/zeros inits (layer norm) do not hide a wrong gradient.
    params = [
        (p.detach() + 0.1 * torch.randn(p.shape, dtype=D, generator=gen)).requires_grad_()
        for _, p in cell.named_parameters()
    ]
    n_state = len(state)

    def run(xs, *rest):
        st, ps = rest[:n_state], rest[n_state:]
        pdict = dict(zip(names, ps, strict=True))
        ys = []
        for t in range(xs.shape[0]):
            y, st = functional_call(cell, pdict, (xs[t], st))
            ys.append(y)
        return (torch.stack(ys), *st)

    inputs = (xs.requires_grad_(), *(s.requires_grad_() for s in state), *params)
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


LSTM_CONFIGS = {
    "plain": {"forget_bias": 0.0},
    "forget_bias": {"forget_bias": 1.5},
    "peephole": {"peephole": True},
    "layer_norm": {"layer_norm": True},
    "proj": {"proj_size": P},
    "peephole+ln+proj": {"peephole": True, "layer_norm": True, "proj_size": P},
    "no_bias": {"bias": False},
    "no_bias+ln+peephole": {"bias": False, "layer_norm": True, "peephole": True},
}


@pytest.mark.parametrize("kw", LSTM_CONFIGS.values(), ids=LSTM_CONFIGS.keys())
def test_lstm_gradcheck(kw):
    torch.manual_seed(0)
    cell = LSTMCell(IN, H, dtype=D, **kw)
    expected = {"weight_ih", "weight_hh"}
    if kw.get("bias", True):
        expected |= {"bias_ih", "bias_hh"}
    if kw.get("proj_size"):
        expected |= {"weight_hr"}
    if kw.get("peephole"):
        expected |= {"weight_ci", "weight_cf", "weight_co"}
    if kw.get("layer_norm"):
        expected |= {"ln_ih_weight", "ln_hh_weight", "ln_c_weight", "ln_c_bias"}
    assert {n for n, _ in cell.named_parameters()} == expected
    _gradcheck_cell(cell)


GRU_CONFIGS = {
    "after": {"reset": "after"},
    "before": {"reset": "before"},
    "after_no_bias": {"reset": "after", "bias": False},
    "before_no_bias": {"reset": "before", "bias": False},
}


@pytest.mark.parametrize("kw", GRU_CONFIGS.values(), ids=GRU_CONFIGS.keys())
def test_gru_gradcheck(kw):
    torch.manual_seed(0)
    _gradcheck_cell(GRUCell(IN, H, dtype=D, **kw))


# ---------------------------------------------------------------- agreement with torch.nn


def _unroll(step, xs, state):
    ys = []
    for t in range(xs.shape[0]):
        y, state = step(xs[t], state)
        ys.append(y)
    return torch.stack(ys), state


def _compare_unrolled(ours, step_ours, theirs, step_theirs, n_state, name_map):
    """Run both for STEPS steps from the same inputs and state; outputs, final states and
    the gradients of a random functional w.r.t. inputs, state and every parameter of
    ``ours`` (``name_map``: our name -> their name) must agree to 1e-10."""
    gen = torch.Generator().manual_seed(3)
    xs = torch.randn(STEPS, B, IN, dtype=D, generator=gen)
    state = _rand_state(ours, gen)
    assert len(state) == n_state
    results = []
    for module, step in ((ours, step_ours), (theirs, step_theirs)):
        module.zero_grad()
        xs_ = xs.clone().requires_grad_()
        st0 = tuple(s.clone().requires_grad_() for s in state)
        ys, st = _unroll(step, xs_, st0)
        wgen = torch.Generator().manual_seed(4)
        loss = (ys * torch.randn(ys.shape, dtype=D, generator=wgen)).sum()
        for s in st:
            loss = loss + (s * torch.randn(s.shape, dtype=D, generator=wgen)).sum()
        loss.backward()
        results.append((ys.detach(), [s.detach() for s in st], [xs_.grad, *(s.grad for s in st0)]))
    (ys_a, st_a, g_a), (ys_b, st_b, g_b) = results
    close = {"rtol": 0, "atol": 1e-10}
    torch.testing.assert_close(ys_a, ys_b, **close)
    for a, b in zip([*st_a, *g_a], [*st_b, *g_b], strict=True):
        torch.testing.assert_close(a, b, **close)
    assert set(name_map) == {n for n, _ in ours.named_parameters()}
    for ours_name, theirs_name in name_map.items():
        ga = ours.get_parameter(ours_name).grad
        gb = theirs.get_parameter(theirs_name).grad
        assert ga.abs().max() > 1e-6, ours_name  # the gradient really flows
        torch.testing.assert_close(ga, gb, **close)
    return ys_a


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("forget_bias", [0.0, 1.0])
def test_lstm_matches_torch_lstmcell(bias, forget_bias):
    torch.manual_seed(0)
    theirs = nn.LSTMCell(IN, H, bias=bias, dtype=D)
    ours = LSTMCell(IN, H, bias=bias, forget_bias=forget_bias, dtype=D)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    names = {n: n for n, _ in ours.named_parameters()}

    def step_theirs(x, state):
        h, c = theirs(x, state)
        return h, (h, c)

    ys = _compare_unrolled(ours, ours, theirs, step_theirs, 2, names)
    assert ys.abs().max() > 1e-3  # a live computation, not all zeros


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_proj_matches_torch_lstm(bias):
    torch.manual_seed(0)
    theirs = nn.LSTM(IN, H, bias=bias, proj_size=P, dtype=D)
    ours = LSTMCell(IN, H, bias=bias, proj_size=P, dtype=D)
    assert ours.output_size == P
    assert ours.state_shapes() == ((P,), (H,))
    ours.load_state_dict(
        {k.removesuffix("_l0"): v for k, v in theirs.state_dict().items()}, strict=True
    )
    names = {n: n + "_l0" for n, _ in ours.named_parameters()}

    def step_theirs(x, state):
        h, c = state
        y, (h, c) = theirs(x.unsqueeze(0), (h.unsqueeze(0), c.unsqueeze(0)))  # seq len 1
        return y[0], (h[0], c[0])

    ys = _compare_unrolled(ours, ours, theirs, step_theirs, 2, names)
    assert ys.shape == (STEPS, B, P)


@pytest.mark.parametrize("bias", [True, False])
def test_gru_matches_torch_grucell(bias):
    torch.manual_seed(0)
    theirs = nn.GRUCell(IN, H, bias=bias, dtype=D)
    ours = GRUCell(IN, H, bias=bias, reset="after", dtype=D)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    names = {n: n for n, _ in ours.named_parameters()}

    def step_theirs(x, state):
        h = theirs(x, state[0])
        return h, (h,)

    ys = _compare_unrolled(ours, ours, theirs, step_theirs, 1, names)
    assert ys.abs().max() > 1e-3


def test_seeded_init_equals_torch():
    for ours_cls, theirs_cls, kw in (
        (LSTMCell, nn.LSTMCell, {"forget_bias": 0.0}),
        (GRUCell, nn.GRUCell, {}),
    ):
        torch.manual_seed(7)
        theirs = theirs_cls(IN, H, dtype=D)
        torch.manual_seed(7)
        ours = ours_cls(IN, H, dtype=D, **kw)
        for name, p in theirs.named_parameters():
            assert torch.equal(ours.get_parameter(name), p), name
        bound = H**-0.5
        assert all(p.abs().max() <= bound for p in ours.parameters())


# ---------------------------------------------------------------- hand-written references


def _sig(v):
    return 1.0 / (1.0 + torch.exp(-v))


def _ln(v, gain, bias=None, eps=1e-5):
    mu = v.mean(dim=-1, keepdim=True)
    var = ((v - mu) ** 2).mean(dim=-1, keepdim=True)
    out = (v - mu) / torch.sqrt(var + eps) * gain
    return out if bias is None else out + bias


def _lstm_reference_step(p, x, h_prev, c_prev, *, peephole, layer_norm, proj):
    """One LSTM step written gate by gate from the papers, sharing nothing with the cell."""
    sl = {k: slice(j * H, (j + 1) * H) for j, k in enumerate("ifgo")}
    if layer_norm:
        ax = _ln(x @ p["weight_ih"].T, p["ln_ih_weight"])
        ah = _ln(h_prev @ p["weight_hh"].T, p["ln_hh_weight"])
    else:
        ax = x @ p["weight_ih"].T
        ah = h_prev @ p["weight_hh"].T
    pre = {}
    for k in "ifgo":
        pre[k] = ax[:, sl[k]] + ah[:, sl[k]]
        if "bias_ih" in p:
            pre[k] = pre[k] + p["bias_ih"][sl[k]] + p["bias_hh"][sl[k]]
    if peephole:
        i_gate = _sig(pre["i"] + p["weight_ci"] * c_prev)
        f_gate = _sig(pre["f"] + p["weight_cf"] * c_prev)
    else:
        i_gate, f_gate = _sig(pre["i"]), _sig(pre["f"])
    g = torch.tanh(pre["g"])
    c = f_gate * c_prev + i_gate * g
    o_gate = _sig(pre["o"] + p["weight_co"] * c) if peephole else _sig(pre["o"])
    c_seen = _ln(c, p["ln_c_weight"], p["ln_c_bias"]) if layer_norm else c
    h = o_gate * torch.tanh(c_seen)
    if proj:
        h = h @ p["weight_hr"].T
    return h, c


LSTM_REF_CONFIGS = {
    "plain": {},
    "peephole": {"peephole": True},
    "layer_norm": {"layer_norm": True},
    "peephole+ln": {"peephole": True, "layer_norm": True},
    "peephole+ln+proj": {"peephole": True, "layer_norm": True, "proj_size": P},
    "peephole+ln+no_bias": {"peephole": True, "layer_norm": True, "bias": False},
}


@pytest.mark.parametrize("kw", LSTM_REF_CONFIGS.values(), ids=LSTM_REF_CONFIGS.keys())
def test_lstm_matches_hand_written_reference(kw):
    torch.manual_seed(0)
    cell = LSTMCell(IN, H, dtype=D, **kw)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():  # move the layer-norm gains/biases off their ones/zeros init
        for p in cell.parameters():
            p.add_(0.3 * torch.randn(p.shape, dtype=D, generator=gen))
    p = {n: t.detach() for n, t in cell.named_parameters()}
    xs = torch.randn(STEPS, B, IN, dtype=D, generator=gen)
    state = _rand_state(cell, gen)
    ref_state = state
    with torch.no_grad():
        for t in range(STEPS):
            y, state = cell(xs[t], state)
            h_ref, c_ref = _lstm_reference_step(
                p,
                xs[t],
                *ref_state,
                peephole=kw.get("peephole", False),
                layer_norm=kw.get("layer_norm", False),
                proj=kw.get("proj_size", 0),
            )
            ref_state = (h_ref, c_ref)
            torch.testing.assert_close(y, h_ref, rtol=0, atol=1e-12)
            torch.testing.assert_close(state[0], h_ref, rtol=0, atol=1e-12)
            torch.testing.assert_close(state[1], c_ref, rtol=0, atol=1e-12)
    assert y.abs().max() > 1e-3


def test_lstm_layer_norm_carries_unnormalised_cell_state():
    torch.manual_seed(0)
    cell = LSTMCell(IN, H, layer_norm=True, dtype=D)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(B, IN, dtype=D, generator=gen)
    h0, c0 = _rand_state(cell, gen, scale=3.0)
    with torch.no_grad():
        _, (_, c) = cell(x, (h0, c0))
    # With unit gain and zero bias LN_c(c) has zero mean per row; the carried c does not.
    assert c.mean(dim=1).abs().max() > 1e-3
    assert cell.ln_eps == 1e-5


def _gru_cho_reference_step(p, x, h_prev):
    """Cho et al. (2014): the reset gate scales h_prev before the candidate's product."""
    r_, z_, n_ = (slice(j * H, (j + 1) * H) for j in range(3))
    W_ir, W_iz, W_in = p["weight_ih"][r_], p["weight_ih"][z_], p["weight_ih"][n_]
    W_hr, W_hz, W_hn = p["weight_hh"][r_], p["weight_hh"][z_], p["weight_hh"][n_]
    if "bias_ih" in p:
        b_ir, b_iz, b_in = p["bias_ih"][r_], p["bias_ih"][z_], p["bias_ih"][n_]
        b_hr, b_hz, b_hn = p["bias_hh"][r_], p["bias_hh"][z_], p["bias_hh"][n_]
    else:
        b_ir = b_iz = b_in = b_hr = b_hz = b_hn = torch.zeros(H, dtype=D)
    r = _sig(x @ W_ir.T + b_ir + h_prev @ W_hr.T + b_hr)
    z = _sig(x @ W_iz.T + b_iz + h_prev @ W_hz.T + b_hz)
    n = torch.tanh(x @ W_in.T + b_in + (r * h_prev) @ W_hn.T + b_hn)
    return (1 - z) * n + z * h_prev


@pytest.mark.parametrize("bias", [True, False])
def test_gru_reset_before_matches_cho(bias):
    torch.manual_seed(0)
    cell = GRUCell(IN, H, bias=bias, reset="before", dtype=D)
    after = GRUCell(IN, H, bias=bias, reset="after", dtype=D)
    after.load_state_dict(cell.state_dict(), strict=True)
    p = {n: t.detach() for n, t in cell.named_parameters()}
    gen = torch.Generator().manual_seed(8)
    xs = torch.randn(STEPS, B, IN, dtype=D, generator=gen)
    (h,) = (h_ref,) = _rand_state(cell, gen, scale=1.0)
    h_after = h
    max_gap = 0.0
    with torch.no_grad():
        for t in range(STEPS):
            y, (h,) = cell(xs[t], (h,))
            h_ref = _gru_cho_reference_step(p, xs[t], h_ref)
            torch.testing.assert_close(y, h_ref, rtol=0, atol=1e-12)
            torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-12)
            h_after, _ = after(xs[t], (h_after,))
            max_gap = max(max_gap, (h_after - h).abs().max().item())
    # The two placements are genuinely different functions of the same weights.
    assert max_gap > 1e-4


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("forget_bias", [1.0, 2.5, -0.75])
def test_forget_bias_is_added_to_forget_slice(forget_bias):
    torch.manual_seed(11)
    shifted = LSTMCell(IN, H, forget_bias=forget_bias, dtype=D)
    torch.manual_seed(11)
    base = LSTMCell(IN, H, forget_bias=0.0, dtype=D)
    f = slice(H, 2 * H)
    assert torch.equal(shifted.bias_ih[f], base.bias_ih[f] + forget_bias)
    torch.testing.assert_close(
        shifted.bias_ih[f] - base.bias_ih[f],
        torch.full((H,), forget_bias, dtype=D),
        rtol=0,
        atol=1e-15,
    )
    # Everything else is untouched, bit for bit.
    assert torch.equal(shifted.bias_ih[:H], base.bias_ih[:H])
    assert torch.equal(shifted.bias_ih[2 * H :], base.bias_ih[2 * H :])
    for name in ("weight_ih", "weight_hh", "bias_hh"):
        assert torch.equal(shifted.get_parameter(name), base.get_parameter(name))


def test_forget_bias_default_and_without_bias():
    torch.manual_seed(12)
    default = LSTMCell(IN, H, dtype=D)
    torch.manual_seed(12)
    base = LSTMCell(IN, H, forget_bias=0.0, dtype=D)
    assert torch.equal(default.bias_ih[H : 2 * H], base.bias_ih[H : 2 * H] + 1.0)
    # bias=False: nothing to shift, and the weights are drawn identically.
    torch.manual_seed(12)
    a = LSTMCell(IN, H, bias=False, forget_bias=3.0, dtype=D)
    torch.manual_seed(12)
    b = LSTMCell(IN, H, bias=False, forget_bias=0.0, dtype=D)
    assert a.bias_ih is None and torch.equal(a.weight_ih, b.weight_ih)


def test_layer_norm_init():
    cell = LSTMCell(IN, H, layer_norm=True, dtype=D)
    assert torch.equal(cell.ln_ih_weight, torch.ones(4 * H, dtype=D))
    assert torch.equal(cell.ln_hh_weight, torch.ones(4 * H, dtype=D))
    assert torch.equal(cell.ln_c_weight, torch.ones(H, dtype=D))
    assert torch.equal(cell.ln_c_bias, torch.zeros(H, dtype=D))


def test_extra_repr():
    assert repr(LSTMCell(IN, H)) == "LSTMCell(3, 4)"
    full = LSTMCell(IN, H, bias=False, forget_bias=0.0, peephole=True, layer_norm=True, proj_size=2)
    assert repr(full) == (
        "LSTMCell(3, 4, bias=False, forget_bias=0.0, peephole=True, layer_norm=True, proj_size=2)"
    )
    assert repr(GRUCell(IN, H)) == "GRUCell(3, 4)"
    assert repr(GRUCell(IN, H, bias=False, reset="before")) == (
        "GRUCell(3, 4, bias=False, reset='before')"
    )


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: LSTMCell(IN, H, proj_size=H), r"proj_size must be smaller than hidden_size"),
        (lambda: LSTMCell(IN, H, proj_size=H + 1), r"proj_size=5 with hidden_size=4"),
        (lambda: LSTMCell(IN, H, proj_size=-1), r"proj_size must be a non-negative integer"),
        (lambda: LSTMCell(IN, H, proj_size=1.5), r"proj_size must be a non-negative integer"),
        (lambda: LSTMCell(IN, H, forget_bias="1"), r"forget_bias must be a finite real number"),
        (
            lambda: LSTMCell(IN, H, forget_bias=float("nan")),
            r"forget_bias must be a finite real number",
        ),
        (lambda: LSTMCell(IN, 0), r"hidden_size must be a positive integer, got 0"),
        (lambda: LSTMCell(0, H), r"input_size must be a positive integer, got 0"),
        (lambda: GRUCell(IN, 0), r"hidden_size must be a positive integer, got 0"),
        (
            lambda: GRUCell(IN, H, reset="middle"),
            r"reset='middle' is not supported; expected one of 'after', 'before'",
        ),
    ],
)
def test_bad_options_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()
