"""Recurrent, Bidirectional, Stacked and the regularisers, against hand-written loops."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from rnnkit.cells import ElmanCell, GRUCell, JordanCell, LSTMCell, SkipCell
from rnnkit.engines import Unroll, select_engine
from rnnkit.layers import Bidirectional, Recurrent, Stacked

D = torch.float64
EXACT = {"rtol": 0, "atol": 1e-12}
CLOSE = {"rtol": 0, "atol": 1e-10}


def make_cell(kind: str, input_size: int, hidden_size: int, **kw):
    if kind.startswith("elman"):
        return ElmanCell(input_size, hidden_size, dtype=D, **kw)
    if kind.startswith("lstm"):
        return LSTMCell(input_size, hidden_size, dtype=D, **kw)
    return GRUCell(input_size, hidden_size, dtype=D, **kw)


def rand_state(cell, batch: int, gen: torch.Generator):
    return tuple(
        0.5 * torch.randn(batch, *shape, dtype=D, generator=gen) for shape in cell.state_shapes()
    )


def hand_loop(cell, x, state, reverse=False):
    """The cell stepped over x (T, B, I) by hand; outputs stay at their own time index."""
    T = x.shape[0]
    ys = [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        y, state = cell(x[t], state)
        ys[t] = y
    return torch.stack(ys), state


def functional(y, final, seed=11):
    """A random scalar of the outputs and the final state (fixed by ``seed``)."""
    gen = torch.Generator().manual_seed(seed)
    loss = (y * torch.randn(y.shape, dtype=y.dtype, generator=gen)).sum()
    for s in final:
        loss = loss + (s * torch.randn(s.shape, dtype=s.dtype, generator=gen)).sum()
    return loss


def assert_all_close(a, b, tol=EXACT):
    a, b = list(a), list(b)
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b, strict=True)):
        assert u is not None and v is not None, i
        torch.testing.assert_close(u, v, **tol)


# ------------------------------------------------------------- Recurrent vs a hand loop

CELLS = {
    "elman": {},
    "elman_relu": {"nonlinearity": "relu"},
    "lstm": {"forget_bias": 0.0},
    "lstm_proj": {"proj_size": 2},
    "gru": {},
}


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("engine", ["loop", "native", "fused"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize(
    ("batch_first", "given_state"), [(False, False), (False, True), (True, True)]
)
def test_recurrent_matches_hand_loop(kind, engine, reverse, batch_first, given_state):
    torch.manual_seed(0)
    T, B, N_IN, H = 5, 3, 3, 4
    cell = make_cell(kind, N_IN, H, **CELLS[kind])
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, N_IN, dtype=D, generator=gen, requires_grad=True)
    state = rand_state(cell, B, gen) if given_state else cell.init_state(B)
    state = tuple(s.requires_grad_() for s in state)
    layer = Recurrent(cell, reverse=reverse, batch_first=batch_first, engine=engine)
    x_in = x.transpose(0, 1) if batch_first else x
    y, final = layer(x_in, state if given_state else None)
    y = y.transpose(0, 1) if batch_first else y
    y_ref, final_ref = hand_loop(cell, x, state, reverse)
    assert_all_close([y, *final], [y_ref, *final_ref])

    wrt = [x, *state, *cell.parameters()] if given_state else [x, *cell.parameters()]
    grads = torch.autograd.grad(functional(y, final), wrt)
    grads_ref = torch.autograd.grad(functional(y_ref, final_ref), wrt)
    assert_all_close(grads, grads_ref)
    assert all(g.abs().max() > 0 for g in grads)


# ------------------------------------------------------- lengths vs sequences run alone


@pytest.mark.fused
@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 4),
    T=st.integers(1, 7),
    N_IN=st.integers(1, 4),
    H=st.integers(1, 4),
    reverse=st.booleans(),
    engine=st.sampled_from(["loop", "native", "fused"]),
    kind=st.sampled_from(["elman", "lstm", "gru"]),
    given_state=st.booleans(),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_lengths_match_sequences_alone(
    B, T, N_IN, H, reverse, engine, kind, given_state, seed, data
):
    lengths = data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B), label="lengths")
    torch.manual_seed(seed)
    cell = make_cell(kind, N_IN, H)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, N_IN, dtype=D, generator=gen)
    state = rand_state(cell, B, gen) if given_state else cell.init_state(B)
    layer = Recurrent(cell, reverse=reverse, engine=engine)
    with torch.no_grad():
        y, final = layer(x, state if given_state else None, lengths=torch.tensor(lengths))
        for b, n in enumerate(lengths):
            alone = tuple(s[b : b + 1] for s in state)
            y_b, final_b = layer(x[:n, b : b + 1], alone)
            torch.testing.assert_close(y[:n, b : b + 1], y_b, **EXACT)
            assert torch.all(y[n:, b] == 0)
            assert_all_close([s[b : b + 1] for s in final], final_b)


# ----------------------------------------------------------- loop and native engines

NATIVE_CONFIGS = {
    "elman_tanh": {},
    "elman_relu": {"nonlinearity": "relu"},
    "elman_relu_identity": {"nonlinearity": "relu", "init": "identity"},
    "elman_nobias": {"bias": False},
    "lstm": {"forget_bias": 0.0},
    "lstm_forget_bias": {"forget_bias": 1.0},
    "lstm_nobias": {"bias": False},
    "lstm_proj": {"proj_size": 2},
    "lstm_proj_nobias": {"proj_size": 2, "bias": False},
    "gru": {"reset": "after"},
    "gru_nobias": {"bias": False},
}


@pytest.mark.parametrize("config", list(NATIVE_CONFIGS))
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_loop_native_and_fused_agree(config, with_lengths, reverse):
    torch.manual_seed(0)
    T, B, N_IN, H = 6, 4, 3, 4
    cell = make_cell(config, N_IN, H, **NATIVE_CONFIGS[config])
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(T, B, N_IN, dtype=D, generator=gen, requires_grad=True)
    state = tuple(s.requires_grad_() for s in rand_state(cell, B, gen))
    lengths = torch.tensor([4, 6, 1, 3]) if with_lengths else None
    unroll = Unroll(x, state, lengths, reverse)
    assert select_engine("native", cell, unroll).name == "native"
    wrt = [x, *state, *cell.parameters()]
    results = []
    for engine in ("loop", "native", "fused"):
        y, final = Recurrent(cell, reverse=reverse, engine=engine)(x, state, lengths)
        grads = torch.autograd.grad(functional(y, final), wrt)
        results.append([y, *final, *grads])
    assert_all_close(results[0], results[1], CLOSE)
    assert_all_close(results[0], results[2], CLOSE)
    if with_lengths:
        for y in (results[1][0], results[2][0]):
            assert torch.all(y[1:, 2] == 0) and torch.all(y[4:, 0] == 0)


UNSUPPORTED = {
    "lstm_peephole": (lambda: LSTMCell(3, 4, peephole=True, dtype=D), "LSTMCell"),
    "lstm_layer_norm": (lambda: LSTMCell(3, 4, layer_norm=True, dtype=D), "LSTMCell"),
    "gru_reset_before": (lambda: GRUCell(3, 4, reset="before", dtype=D), "GRUCell"),
    "elman_sigmoid": (lambda: ElmanCell(3, 4, nonlinearity="sigmoid", dtype=D), "ElmanCell"),
}


@pytest.mark.fused
@pytest.mark.parametrize("config", list(UNSUPPORTED))
def test_native_refuses_unsupported_cells(config):
    make, name = UNSUPPORTED[config]
    torch.manual_seed(0)
    cell = make()
    x = torch.randn(4, 2, 3, dtype=D)
    with pytest.raises(
        ValueError,
        match=rf"engine='native' cannot run this configuration: torch has no kernel for {name}\(",
    ):
        Recurrent(cell, engine="native")(x)
    unroll = Unroll(x, cell.init_state(2))
    assert select_engine("auto", cell, unroll).name == "fused"
    # auto runs the fused engine: bit-identical results
    y_auto, f_auto = Recurrent(cell)(x)
    y_fused, f_fused = Recurrent(cell, engine="fused")(x)
    assert torch.equal(y_auto, y_fused)
    assert all(torch.equal(a, b) for a, b in zip(f_auto, f_fused, strict=True))


def test_native_refuses_state_dropout_and_teacher():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 3, dtype=D)
    layer = Recurrent(ElmanCell(3, 4, dtype=D), engine="native", state_dropout=0.5)
    layer.eval()(x)  # no state mask in eval: fine
    with pytest.raises(ValueError, match=r"recurrent \(state\) dropout needs a per-step mask"):
        layer.train()(x)
    cell = ElmanCell(3, 4, dtype=D)
    unroll = Unroll(x, cell.init_state(2), teacher=torch.zeros(4, 2, 4, dtype=D))
    with pytest.raises(ValueError, match="teacher forcing is not available in torch's kernels"):
        select_engine("native", cell, unroll)


@pytest.mark.fused
def test_auto_picks_the_fastest_engine_that_applies():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 3, dtype=D)
    expected = [
        (LSTMCell(3, 4, dtype=D), "native"),  # a small batch: torch's LSTM kernel
        (ElmanCell(3, 4, dtype=D), "fused"),
        (GRUCell(3, 4, dtype=D), "fused"),
        (GRUCell(3, 4, reset="before", dtype=D), "fused"),
        (LSTMCell(3, 4, peephole=True, dtype=D), "fused"),
        (JordanCell(3, 4, 2, dtype=D), "loop"),
    ]
    for cell, name in expected:
        assert select_engine("auto", cell, Unroll(x, cell.init_state(2))).name == name
        y_auto, _ = Recurrent(cell)(x)
        y_named, _ = Recurrent(cell, engine=name)(x)
        assert torch.equal(y_auto, y_named)
    lstm = LSTMCell(3, 4, dtype=D)
    small = Unroll(x[:, :1], lstm.init_state(1))  # one sequence: torch's LSTM kernel
    assert select_engine("auto", lstm, small).name == "native"
    big = torch.zeros(4, 16, 3, dtype=D)
    assert select_engine("auto", lstm, Unroll(big, lstm.init_state(16))).name == "fused"
    half = LSTMCell(3, 4, dtype=torch.bfloat16)  # fused takes float32 and float64
    assert select_engine("auto", half, Unroll(x.bfloat16(), half.init_state(2))).name == "native"


def test_auto_runs_a_single_step_through_the_loop():
    cell = LSTMCell(3, 4, dtype=D)
    one_step = Unroll(torch.randn(1, 2, 3, dtype=D), cell.init_state(2))
    assert select_engine("auto", cell, one_step).name == "loop"
    assert select_engine("native", cell, one_step).name == "native"  # still on request


# --------------------------------------------------------------------- Bidirectional


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("merge", ["concat", "sum", "mean", "mul"])
def test_bidirectional_matches_two_directions(kind, merge):
    torch.manual_seed(0)
    T, B, N_IN, H = 5, 3, 3, 4
    f, b = make_cell(kind, N_IN, H), make_cell(kind, N_IN, H)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(B, T, N_IN, dtype=D, generator=gen, requires_grad=True)
    states = (rand_state(f, B, gen), rand_state(b, B, gen))
    lengths = torch.tensor([5, 2, 4])
    layer = Bidirectional(f, b, merge=merge, batch_first=True)
    y, (final_f, final_b) = layer(x, states, lengths)
    y_f, ref_f = Recurrent(f, batch_first=True)(x, states[0], lengths)
    y_b, ref_b = Recurrent(b, reverse=True, batch_first=True)(x, states[1], lengths)
    expected = {
        "concat": torch.cat([y_f, y_b], dim=-1),
        "sum": y_f + y_b,
        "mean": (y_f + y_b) / 2,
        "mul": y_f * y_b,
    }[merge]
    assert y.shape == expected.shape
    assert_all_close([y, *final_f, *final_b], [expected, *ref_f, *ref_b])
    assert torch.all(y[1, 2:] == 0) and torch.all(y[2, 4:] == 0)
    # the reverse direction really starts at each sequence's last real step
    y_b1, _ = Recurrent(b, reverse=True, batch_first=True)(
        x[1:2, :2], tuple(s[1:2] for s in states[1])
    )
    torch.testing.assert_close(y_b[1:2, :2], y_b1, **EXACT)
    assert layer.output_size == (2 * H if merge == "concat" else H)


def test_bidirectional_default_state_and_bwd_copy():
    torch.manual_seed(0)
    cell = ElmanCell(3, 4, dtype=D)
    layer = Bidirectional(Recurrent(cell))
    bwd = layer.bwd.cell
    assert bwd is not cell and layer.bwd.reverse
    assert not torch.equal(bwd.weight_hh, cell.weight_hh)  # re-initialised copy
    x = torch.randn(4, 2, 3, dtype=D)
    y, (final_f, final_b) = layer(x)
    y_f, ref_f = hand_loop(cell, x, cell.init_state(2))
    y_b, ref_b = hand_loop(bwd, x, bwd.init_state(2), reverse=True)
    assert_all_close([y, *final_f, *final_b], [torch.cat([y_f, y_b], -1), *ref_f, *ref_b])
    # the backward direction's final state is its state after step 0
    torch.testing.assert_close(final_b[0], y_b[0], **EXACT)


# --------------------------------------------------------------------------- Stacked


def _stack_layers():
    torch.manual_seed(0)
    return [
        Recurrent(ElmanCell(3, 4, dtype=D)),
        Bidirectional(LSTMCell(4, 3, dtype=D), LSTMCell(4, 3, dtype=D)),
        Recurrent(GRUCell(6, 2, dtype=D), reverse=True),
    ]


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("given_state", [False, True], ids=["zeros", "state"])
def test_stacked_matches_layers_by_hand(with_lengths, given_state):
    layers = _stack_layers()
    stack = Stacked(layers, batch_first=True)
    T, B = 5, 3
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(B, T, 3, dtype=D, generator=gen, requires_grad=True)
    lengths = torch.tensor([2, 5, 3]) if with_lengths else None
    state = None
    if given_state:
        state = (
            rand_state(layers[0].cell, B, gen),
            (rand_state(layers[1].fwd.cell, B, gen), rand_state(layers[1].bwd.cell, B, gen)),
            rand_state(layers[2].cell, B, gen),
        )
    y, finals = stack(x, state, lengths)
    h = x.transpose(0, 1)
    expected_finals = []
    for k, layer in enumerate(layers):
        h, final = layer(h, None if state is None else state[k], lengths)
        expected_finals.append(final)
    h = h.transpose(0, 1)
    assert len(finals) == 3
    flat = [y, *finals[0], *finals[1][0], *finals[1][1], *finals[2]]
    flat_ref = [h, *expected_finals[0], *expected_finals[1][0], *expected_finals[1][1]]
    flat_ref += list(expected_finals[2])
    assert_all_close(flat, flat_ref)
    params = list(stack.parameters())
    assert len(params) == 4 + 8 + 4
    grads = torch.autograd.grad(functional(y, finals[2]), [x, *params])
    grads_ref = torch.autograd.grad(functional(h, expected_finals[2]), [x, *params])
    assert_all_close(grads, grads_ref)


def _spy(layer, captured):
    """Record the time-major input each call of ``layer.run`` gets."""
    run = layer.run

    def spy(x, *args):
        captured.append(x)
        return run(x, *args)

    layer.run = spy


@pytest.mark.parametrize("variational", [False, True], ids=["per_step", "variational"])
def test_stacked_dropout_only_between_layers_in_training(variational):
    torch.manual_seed(0)
    layers = [Recurrent(ElmanCell(3, 5, dtype=D)), Recurrent(ElmanCell(5, 4, dtype=D))]
    plain = Stacked(layers)
    stack = Stacked(layers, dropout=0.5, variational=variational)
    x = torch.randn(6, 3, 3, dtype=D, generator=torch.Generator().manual_seed(5))
    y_plain, f_plain = plain(x)
    y_eval, f_eval = stack.eval()(x)
    assert torch.equal(y_eval, y_plain)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(f_eval, f_plain, strict=True))

    y_first, _ = layers[0](x)
    stack.train()
    captured = [[], []]
    for layer, seen in zip(layers, captured, strict=True):
        _spy(layer, seen)
    torch.manual_seed(1)
    y, finals = stack(x)
    assert not torch.allclose(y, y_eval)
    # the first layer reads the raw input and its state is untouched by dropout
    assert torch.equal(captured[0][0], x)
    assert torch.equal(finals[0][0], f_eval[0][0])
    # the second layer reads the first's outputs, each either dropped or scaled by 2
    ratio = captured[1][0] / y_first
    twos = (ratio - 2).abs() < 1e-12
    zeros = ratio == 0
    assert torch.all(twos | zeros) and zeros.any() and twos.any()
    same_every_step = bool(torch.all(zeros == zeros[0]))
    assert same_every_step == variational
    # nothing is dropped after the last layer
    del layers[1].run
    y_last, _ = layers[1](captured[1][0])
    assert torch.equal(y, y_last)


def test_stacked_single_layer_has_no_dropout():
    torch.manual_seed(0)
    layer = Recurrent(LSTMCell(3, 4, dtype=D))
    x = torch.randn(5, 2, 3, dtype=D)
    y, (final,) = Stacked([layer], dropout=0.5).train()(x)
    y_ref, final_ref = layer(x)
    assert torch.equal(y, y_ref)
    assert all(torch.equal(a, b) for a, b in zip(final, final_ref, strict=True))


def test_stacked_size_mismatch():
    with pytest.raises(ValueError, match="layer 1 reads 5 features but layer 0 outputs 4"):
        Stacked([ElmanCell(3, 4), ElmanCell(5, 2)])
    with pytest.raises(ValueError, match="layer 1 reads 4 features but layer 0 outputs 8"):
        Stacked([Bidirectional(ElmanCell(3, 4)), ElmanCell(4, 2)])


# ---------------------------------------------------------------------- regularisers


def test_output_dropout_is_variational():
    torch.manual_seed(0)
    layer = Recurrent(GRUCell(3, 6, dtype=D), output_dropout=0.5)
    x = torch.randn(7, 4, 3, dtype=D)
    lengths = torch.tensor([7, 3, 5, 7])
    y_eval, f_eval = layer.eval()(x, lengths=lengths)
    torch.manual_seed(1)
    y, final = layer.train()(x, lengths=lengths)
    assert_all_close(final, f_eval)  # output dropout leaves the recurrence alone
    mask = y[0] / y_eval[0]  # (B, H): 0 or 2 per sequence and feature
    dropped = mask == 0
    assert torch.all(dropped | ((mask - 2).abs() < 1e-12)) and dropped.any() and not dropped.all()
    torch.testing.assert_close(y, y_eval * torch.where(dropped, 0.0, 2.0), **EXACT)
    assert torch.all(y[:, dropped] == 0)  # a dropped feature is zero at every step


@pytest.mark.parametrize("engine", ["loop", "native", "fused"])
def test_input_dropout_is_variational(engine):
    torch.manual_seed(0)
    layer = Recurrent(LSTMCell(4, 3, dtype=D), input_dropout=0.5, engine=engine)
    x = torch.randn(6, 3, 4, dtype=D, requires_grad=True)
    torch.manual_seed(2)
    y, final = layer.train()(x)
    (grad,) = torch.autograd.grad(functional(y, final), [x])
    dropped = grad[0] == 0  # (B, I)
    assert dropped.any() and not dropped.all()
    assert torch.all((grad == 0) == dropped[None])  # the same features at every step
    mask = torch.where(dropped, 0.0, 2.0).to(D)
    y_ref, final_ref = layer.eval()(x * mask[None])
    assert_all_close([y, *final], [y_ref, *final_ref])


def test_state_dropout():
    torch.manual_seed(0)
    B, H = 2, 3
    cell = ElmanCell(3, H, dtype=D)
    layer = Recurrent(cell, state_dropout=0.5)
    x = torch.randn(5, B, 3, dtype=D)
    y_plain, f_plain = Recurrent(cell)(x)
    y_eval, f_eval = layer.eval()(x)
    assert torch.equal(y_eval, y_plain) and torch.equal(f_eval[0], f_plain[0])
    torch.manual_seed(3)
    y, final = layer.train()(x)
    assert not torch.allclose(y, y_eval)
    # exactly one per-sequence mask, the same at every step, explains the outputs
    matches = []
    for bits in itertools.product((0.0, 2.0), repeat=B * H):
        mask = torch.tensor(bits, dtype=D).view(B, H)
        h, ys = cell.init_state(B)[0], []
        for t in range(x.shape[0]):
            h, _ = cell(x[t], (h * mask,))
            ys.append(h)
        if torch.allclose(torch.stack(ys), y, rtol=0, atol=1e-12):
            matches.append(mask)
            torch.testing.assert_close(final[0], h, **EXACT)  # final state is undropped
    assert len(matches) == 1


@pytest.mark.parametrize("engine", ["loop", "native", "fused"])
@pytest.mark.parametrize("kind", ["elman", "lstm"])
def test_dropconnect(kind, engine):
    torch.manual_seed(0)
    cell = make_cell(kind, 3, 3)
    layer = Recurrent(cell, dropconnect=0.5, engine=engine)
    weight = cell.weight_hh
    before = weight.detach().clone()
    x = torch.randn(5, 2, 3, dtype=D)
    y_eval, _ = layer.eval()(x)
    torch.manual_seed(4)
    y, final = layer.train()(x)
    assert cell.weight_hh is weight and cell._parameters["weight_hh"] is weight
    assert torch.equal(weight, before)  # not mutated
    assert not torch.allclose(y, y_eval)
    functional(y, final).backward()
    grad = weight.grad
    dropped = grad == 0
    assert dropped.any() and not dropped.all()  # gradients reach the kept weights only
    # the outputs are those of the cell with the masked weight
    masked = weight.detach() * torch.where(dropped, 0.0, 2.0).to(D)
    params = {**dict(cell.named_parameters()), "weight_hh": masked}
    state, ys = cell.init_state(2), []
    for t in range(x.shape[0]):
        out, state = functional_call(cell, params, (x[t], state))
        ys.append(out)
    assert_all_close([y, *final], [torch.stack(ys), *state])


@pytest.mark.parametrize("engine", ["loop", "native", "fused"])
@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
def test_learn_init(kind, engine):
    torch.manual_seed(0)
    cell = make_cell(kind, 3, 4)
    layer = Recurrent(cell, learn_init=True, engine=engine)
    assert [tuple(p.shape) for p in layer.init_params] == [(1, *s) for s in cell.state_shapes()]
    with torch.no_grad():
        for p in layer.init_params:
            p.normal_()
    B = 3
    x = torch.randn(6, B, 3, dtype=D)
    y, final = layer(x)
    loss = functional(y, final)
    loss.backward()
    # the learned state, repeated over the batch, is the initial state
    state = tuple(
        p.detach().expand(B, *p.shape[1:]).clone().requires_grad_() for p in layer.init_params
    )
    y_ref, final_ref = Recurrent(cell, engine=engine)(x, state)
    assert_all_close([y, *final], [y_ref, *final_ref])
    grads = torch.autograd.grad(functional(y_ref, final_ref), state)
    for p, g in zip(layer.init_params, grads, strict=True):
        assert p.grad is not None and p.grad.abs().max() > 0
        torch.testing.assert_close(p.grad, g.sum(0, keepdim=True), **EXACT)
    with torch.no_grad():
        layer.init_params[0].add_(0.5)
    y_changed, _ = layer(x)
    assert (y_changed - y).abs().max() > 1e-3


# ------------------------------------------------------------------ teacher forcing


@pytest.mark.parametrize("engine", ["auto", "loop"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_teacher_forcing_jordan(engine, reverse):
    torch.manual_seed(0)
    T, B = 5, 3
    cell = JordanCell(3, 4, 2, dtype=D)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(T, B, 3, dtype=D, generator=gen, requires_grad=True)
    targets = torch.randn(T, B, 2, dtype=D, generator=gen)
    state0 = rand_state(cell, B, gen)
    layer = Recurrent(cell, reverse=reverse, engine=engine)
    y, final = layer(x, state0, teacher=targets)
    # by hand: each step after the first is fed the previous step's target as y_{t-1}
    order = list(reversed(range(T))) if reverse else list(range(T))
    state, ys = state0, [None] * T
    for i, t in enumerate(order):
        if i > 0:
            state = (targets[order[i - 1]],)
        ys[t], state = cell(x[t], state)
    y_ref = torch.stack(ys)
    assert_all_close([y, *final], [y_ref, *state])
    wrt = [x, *cell.parameters()]
    assert_all_close(
        torch.autograd.grad(functional(y, final), wrt),
        torch.autograd.grad(functional(y_ref, state), wrt),
    )
    # without teacher the model's own outputs are fed back: different results
    y_free, _ = layer(x, state0)
    assert (y_free - y).abs().max() > 1e-6


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_teacher_forcing_with_lengths(reverse):
    torch.manual_seed(0)
    T, B = 5, 3
    cell = JordanCell(3, 4, 2, dtype=D)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(T, B, 3, dtype=D, generator=gen)
    targets = torch.randn(T, B, 2, dtype=D, generator=gen)
    lengths = [5, 2, 3]
    layer = Recurrent(cell, reverse=reverse)
    y, (final,) = layer(x, teacher=targets, lengths=torch.tensor(lengths))
    for b, n in enumerate(lengths):
        y_b, (final_b,) = layer(x[:n, b : b + 1], teacher=targets[:n, b : b + 1])
        torch.testing.assert_close(y[:n, b : b + 1], y_b, **EXACT)
        assert torch.all(y[n:, b] == 0)
        torch.testing.assert_close(final[b : b + 1], final_b, **EXACT)


# ---------------------------------------------------------------------------- errors


def _elman():
    return ElmanCell(3, 4, dtype=D)


X = torch.zeros(5, 2, 3, dtype=D)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: Recurrent(_elman())(torch.zeros(5, 3, dtype=D)),
            r"expected input of shape \(T, B, I\) with I=3, got \(5, 3\)",
        ),
        (
            lambda: Recurrent(_elman(), batch_first=True)(torch.zeros(2, 5, 4, dtype=D)),
            r"expected input of shape \(B, T, I\) with I=3, got \(2, 5, 4\)",
        ),
        (
            lambda: Recurrent(_elman())(torch.zeros(5, 2, 3, dtype=torch.long)),
            "expected a floating-point input, got dtype torch.int64",
        ),
        (
            lambda: Recurrent(_elman())(X, lengths=torch.tensor([0, 5])),
            "every length must be between 1 and the sequence length 5, got lengths from 0 to 5",
        ),
        (
            lambda: Recurrent(_elman())(X, lengths=torch.tensor([6, 2])),
            "every length must be between 1 and the sequence length 5, got lengths from 2 to 6",
        ),
        (
            lambda: Recurrent(_elman())(X, lengths=torch.tensor([5, 2, 1])),
            r"expected one length per sequence \(shape \(2,\)\), got shape \(3,\)",
        ),
        (
            lambda: Recurrent(_elman())(X, lengths=torch.tensor([5.0, 2.0])),
            "lengths must be integers, got dtype torch.float32",
        ),
        (
            lambda: Recurrent(_elman())(X, state=(torch.zeros(3, 4, dtype=D),)),
            r"expected initial state tensor 0 of shape \(2, 4\), got \(3, 4\)",
        ),
        (
            lambda: Recurrent(_elman())(X, teacher=torch.zeros(5, 2, 4, dtype=D)),
            "no engine can run this configuration: ElmanCell has no output feedback",
        ),
        (
            lambda: Recurrent(_elman(), engine="fast"),
            "engine='fast' is not known; expected one of 'auto', 'loop', 'native'",
        ),
        (lambda: Bidirectional(_elman(), merge="max"), "merge='max' is not supported"),
        (
            lambda: Bidirectional(_elman(), ElmanCell(3, 5), merge="sum"),
            "merge='sum' needs both directions to have the same output size",
        ),
        (
            lambda: Bidirectional(_elman())(X, lengths=[0, 1]),
            "every length must be between 1 and the sequence length 5",
        ),
        (
            lambda: Stacked([_elman()])(X, lengths=[1]),
            r"expected one length per sequence \(shape \(2,\)\)",
        ),
        (
            lambda: Stacked([_elman(), ElmanCell(4, 2)], dropout=1.0),
            r"dropout must be a probability in \[0, 1\), got 1.0",
        ),
        (
            lambda: Recurrent(_elman(), input_dropout=1.0),
            r"input_dropout must be a probability in \[0, 1\), got 1.0",
        ),
        (
            lambda: Recurrent(_elman(), state_dropout=-0.1),
            r"state_dropout must be a probability in \[0, 1\), got -0.1",
        ),
        (
            lambda: Recurrent(_elman(), dropconnect=1.0),
            r"dropconnect must be a probability in \[0, 1\), got 1.0",
        ),
        (
            lambda: Stacked([_elman(), ElmanCell(4, 2)])(X, state=(None,)),
            "expected the Stacked state as a tuple of 2 states",
        ),
        (
            lambda: Bidirectional(_elman())(X, state=(torch.zeros(2, 4, dtype=D),)),
            r"expected the Bidirectional state as a pair \(fwd_state, bwd_state\)",
        ),
    ],
    ids=[
        "input_dim",
        "feature_size",
        "int_input",
        "length_zero",
        "length_too_long",
        "lengths_count",
        "float_lengths",
        "state_shape",
        "teacher_without_feedback",
        "unknown_engine",
        "unknown_merge",
        "merge_sizes",
        "bidirectional_lengths",
        "stacked_lengths",
        "stacked_dropout_one",
        "input_dropout_one",
        "state_dropout_negative",
        "dropconnect_one",
        "stacked_state_count",
        "bidirectional_state_pair",
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_default_backward_layer_is_a_fresh_copy_with_the_same_options():
    torch.manual_seed(0)
    fwd = Recurrent(SkipCell.build(ElmanCell, 3, 4, 2), engine="loop", output_dropout=0.25)
    layer = Bidirectional(fwd)
    bwd = layer.bwd
    assert bwd.reverse and bwd.engine == "loop" and bwd.output_dropout == 0.25
    assert type(bwd.cell) is SkipCell and bwd.cell.delay == 2
    # re-initialised, including the cell wrapped inside the skip connection
    assert not torch.equal(bwd.cell.cell.weight_hh, fwd.cell.cell.weight_hh)


def test_dropconnect_under_functional_call_masks_the_substituted_weight():
    torch.manual_seed(0)
    layer = Recurrent(ElmanCell(3, 4, dtype=D), dropconnect=0.5).train()
    x = torch.randn(5, 2, 3, dtype=D)
    weights = {name: p.detach().clone().requires_grad_() for name, p in layer.named_parameters()}
    y, _ = torch.func.functional_call(layer, weights, (x,))
    (grad,) = torch.autograd.grad(y.sum(), weights["cell.weight_hh"])
    dropped = grad == 0
    # about half the recurrent weights are dropped, and only those get no gradient
    assert 0.2 < dropped.double().mean() < 0.8
