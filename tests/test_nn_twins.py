"""rnnkit.nn.RNN / LSTM / GRU against their torch.nn twins with copied weights."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnkit.nn

D = torch.float64
IN, H, P, T = 3, 4, 2, 5
LENGTHS_UNSORTED = [3, 5, 1, 4]  # B = 4, deliberately not sorted
LENGTHS_SORTED = [5, 4, 4, 2]

# kind -> (rnnkit class, torch class, constructor keywords)
KINDS = {
    "rnn_tanh": (rnnkit.nn.RNN, nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnnkit.nn.RNN, nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (rnnkit.nn.LSTM, nn.LSTM, {}),
    "lstm_proj": (rnnkit.nn.LSTM, nn.LSTM, {"proj_size": P}),
    "gru": (rnnkit.nn.GRU, nn.GRU, {}),
}
MODES = ("plain", "hx", "unbatched", "packed_unsorted", "packed_sorted")


def _cases():
    """kind x engine x num_layers x bidirectional x input mode; ``bias`` and
    ``batch_first`` vary with (num_layers, bidirectional) so that every (kind, engine,
    mode) sees all four of their combinations."""
    cases = []
    for kind, engine, mode, layers, bidir in itertools.product(
        KINDS, ("loop", "native"), MODES, (1, 2, 3), (False, True)
    ):
        bias = (layers + bidir) % 2 == 1
        batch_first = layers >= 2
        case_id = (
            f"{kind}-{engine}-{mode}-L{layers}-{'bi' if bidir else 'uni'}"
            f"-{'bias' if bias else 'nobias'}-{'bf' if batch_first else 'tf'}"
        )
        cases.append(pytest.param(kind, engine, mode, layers, bidir, bias, batch_first, id=case_id))
    return cases


def _pair(kind, dtype=D, engine="auto", **kw):
    """A torch module and its rnnkit twin loaded from its state dict."""
    ours_cls, theirs_cls, base = KINDS[kind]
    kw = {**base, **kw}
    torch.manual_seed(0)
    theirs = theirs_cls(IN, H, dtype=dtype, **kw)
    ours = ours_cls(IN, H, dtype=dtype, engine=engine, **kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    ours.load_state_dict(theirs.state_dict(), strict=True)
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    return ours, theirs


def _hx(theirs, batch, gen, dtype=D):
    """A random initial state in torch's layout; None for batch None means unbatched."""
    directions = 2 if theirs.bidirectional else 1
    lead = (
        (theirs.num_layers * directions,)
        if batch is None
        else (theirs.num_layers * directions, batch)
    )
    out = theirs.proj_size or theirs.hidden_size
    h0 = 0.5 * torch.randn(*lead, out, dtype=dtype, generator=gen)
    if isinstance(theirs, nn.LSTM):
        return (h0, 0.5 * torch.randn(*lead, theirs.hidden_size, dtype=dtype, generator=gen))
    return h0


def _as_tuple(h):
    return h if isinstance(h, tuple) else (h,)


def _run(module, make_input, hx, seed=7):
    """Forward, then the gradients of a random functional of the outputs and final states
    w.r.t. the input, the initial state and every parameter."""
    module.zero_grad()
    x, leaf = make_input()
    h0 = None
    if hx is not None:
        h0 = tuple(h.clone().requires_grad_() for h in _as_tuple(hx))
        h0_arg = h0 if len(h0) == 2 else h0[0]
    out, h_n = module(x) if hx is None else module(x, h0_arg)
    y = out.data if isinstance(out, PackedSequence) else out
    gen = torch.Generator().manual_seed(seed)
    loss = (y * torch.randn(y.shape, dtype=y.dtype, generator=gen)).sum()
    for h in _as_tuple(h_n):
        loss = loss + (h * torch.randn(h.shape, dtype=h.dtype, generator=gen)).sum()
    loss.backward()
    grads = [leaf.grad, *([] if h0 is None else [h.grad for h in h0])]
    grads += [p.grad for _, p in module.named_parameters()]
    return out, _as_tuple(h_n), grads


def _compare(ours, theirs, make_input, hx, atol):
    out_a, hn_a, g_a = _run(ours, make_input, hx)
    out_b, hn_b, g_b = _run(theirs, make_input, hx)
    close = {"rtol": 0, "atol": atol}
    assert type(out_a) is type(out_b)
    if isinstance(out_b, PackedSequence):
        assert torch.equal(out_a.batch_sizes, out_b.batch_sizes)
        for attr in ("sorted_indices", "unsorted_indices"):
            a, b = getattr(out_a, attr), getattr(out_b, attr)
            assert (a is None and b is None) or torch.equal(a, b), attr
        torch.testing.assert_close(out_a.data, out_b.data, **close)
    else:
        torch.testing.assert_close(out_a, out_b, **close)
    assert len(hn_a) == len(hn_b)
    for a, b in zip(hn_a, hn_b, strict=True):
        torch.testing.assert_close(a, b, **close)
    assert len(g_a) == len(g_b)
    for i, (a, b) in enumerate(zip(g_a, g_b, strict=True)):
        assert a is not None and b is not None, i
        torch.testing.assert_close(a, b, **close)


def _input_maker(mode, batch_first, dtype=D):
    """(make_input, batch) for an input mode; make_input returns (module input, grad leaf)."""
    gen = torch.Generator().manual_seed(1)
    if mode == "unbatched":
        x = torch.randn(T, IN, dtype=dtype, generator=gen)

        def make():
            leaf = x.clone().requires_grad_()
            return leaf, leaf

        return make, None
    if mode.startswith("packed"):
        lengths = LENGTHS_UNSORTED if mode == "packed_unsorted" else LENGTHS_SORTED
        x = torch.randn(T, len(lengths), IN, dtype=dtype, generator=gen)

        def make():
            leaf = x.clone().requires_grad_()
            packed = pack_padded_sequence(
                leaf, torch.tensor(lengths), enforce_sorted=mode == "packed_sorted"
            )
            return packed, leaf

        return make, len(lengths)
    B = 2
    x = torch.randn(B, T, IN, dtype=dtype, generator=gen)
    x = x if batch_first else x.transpose(0, 1).contiguous()

    def make():
        leaf = x.clone().requires_grad_()
        return leaf, leaf

    return make, B


@pytest.mark.parametrize(
    ("kind", "engine", "mode", "num_layers", "bidirectional", "bias", "batch_first"), _cases()
)
def test_matches_torch(kind, engine, mode, num_layers, bidirectional, bias, batch_first):
    ours, theirs = _pair(
        kind,
        engine=engine,
        num_layers=num_layers,
        bidirectional=bidirectional,
        bias=bias,
        batch_first=batch_first,
    )
    make_input, batch = _input_maker(mode, batch_first)
    hx = None
    if mode in ("hx", "unbatched", "packed_unsorted"):
        hx = _hx(theirs, batch, torch.Generator().manual_seed(2))
    _compare(ours, theirs, make_input, hx, atol=1e-10)


@pytest.mark.parametrize("kind", list(KINDS))
def test_float32(kind):
    ours, theirs = _pair(kind, dtype=torch.float32, num_layers=2, bidirectional=True)
    make_input, batch = _input_maker("packed_unsorted", False, dtype=torch.float32)
    hx = _hx(theirs, batch, torch.Generator().manual_seed(2), dtype=torch.float32)
    _compare(ours, theirs, make_input, hx, atol=1e-5)


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
@pytest.mark.parametrize("engine", ["loop", "native"])
def test_dropout_in_eval_matches_torch(kind, engine):
    ours, theirs = _pair(kind, engine=engine, num_layers=3, dropout=0.5, bidirectional=True)
    ours.eval()
    theirs.eval()
    make_input, _ = _input_maker("plain", False)
    _compare(ours, theirs, make_input, None, atol=1e-10)


@pytest.mark.parametrize("engine", ["auto", "loop"])
def test_regularizing_extras_are_off_in_eval(engine):
    """Variational, state dropout and DropConnect act in training only: eval() is torch."""
    torch.manual_seed(0)
    theirs = nn.LSTM(IN, H, num_layers=2, dropout=0.3, bidirectional=True, dtype=D)
    ours = rnnkit.nn.LSTM(
        IN,
        H,
        num_layers=2,
        dropout=0.3,
        bidirectional=True,
        dtype=D,
        engine=engine,
        variational_dropout=True,
        state_dropout=0.3,
        dropconnect=0.3,
    )
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval()
    theirs.eval()
    make_input, batch = _input_maker("packed_unsorted", False)
    hx = _hx(theirs, batch, torch.Generator().manual_seed(2))
    _compare(ours, theirs, make_input, hx, atol=1e-10)
    ours.train()
    x = make_input()[0]
    torch.manual_seed(1)
    y_train, _ = ours(x, hx)
    y_eval, _ = theirs(x, hx)
    assert (y_train.data - y_eval.data).abs().max() > 1e-3


def test_rnn_positional_nonlinearity():
    torch.manual_seed(0)
    theirs = nn.RNN(IN, H, 2, "relu", dtype=D)
    ours = rnnkit.nn.RNN(IN, H, 2, "relu", dtype=D)
    assert ours.nonlinearity == "relu"
    ours.load_state_dict(theirs.state_dict(), strict=True)
    make_input, _ = _input_maker("plain", False)
    _compare(ours, theirs, make_input, None, atol=1e-10)


@pytest.mark.parametrize("kind", list(KINDS))
def test_to_float64_after_construction(kind):
    ours_cls, theirs_cls, base = KINDS[kind]
    torch.manual_seed(0)
    theirs = theirs_cls(IN, H, num_layers=2, bidirectional=True, dtype=D, **base)
    ours = ours_cls(IN, H, num_layers=2, bidirectional=True, **base)  # float32
    ours = ours.to(torch.float64)
    assert all(p.dtype == D for p in ours.parameters())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    make_input, _ = _input_maker("plain", False)
    _compare(ours, theirs, make_input, None, atol=1e-10)


def test_train_eval_switch_reaches_cells():
    """Dropout between layers acts in train() and stops in eval(), like torch."""
    ours, theirs = _pair("lstm", num_layers=2, dropout=0.5)
    x = torch.randn(T, 2, IN, dtype=D, generator=torch.Generator().manual_seed(5))
    ours.train()
    torch.manual_seed(3)
    y_train, _ = ours(x)
    ours.eval()
    y_eval, _ = ours(x)
    y_ref, _ = theirs.eval()(x)
    torch.testing.assert_close(y_eval, y_ref, rtol=0, atol=1e-10)
    assert (y_train - y_eval).abs().max() > 1e-3


# ---------------------------------------------------------------------------- errors


def test_wrong_input_feature_size():
    ours, _ = _pair("lstm")
    with pytest.raises(
        ValueError, match=r"expected 3 input features, got input of shape \(5, 2, 4\)"
    ):
        ours(torch.zeros(T, 2, IN + 1, dtype=D))


def test_wrong_input_dim():
    ours, _ = _pair("gru")
    with pytest.raises(
        ValueError, match=r"expected input of shape \(T, B, 3\) or \(T, 3\) unbatched"
    ):
        ours(torch.zeros(1, T, 2, IN, dtype=D))


@pytest.mark.parametrize(
    ("kind", "hx", "match"),
    [
        (
            "rnn_tanh",
            torch.zeros(1, 3, H, dtype=D),
            r"expected h_0 of shape \(1, 2, 4\), got \(1, 3, 4\)",
        ),
        (
            "gru",
            torch.zeros(2, 2, H, dtype=D),
            r"expected h_0 of shape \(1, 2, 4\), got \(2, 2, 4\)",
        ),
        (
            "lstm",
            (torch.zeros(1, 2, H, dtype=D), torch.zeros(1, 2, H + 1, dtype=D)),
            r"expected c_0 of shape \(1, 2, 4\), got \(1, 2, 5\)",
        ),
        (
            "lstm_proj",
            (torch.zeros(1, 2, H, dtype=D), torch.zeros(1, 2, H, dtype=D)),
            r"expected h_0 of shape \(1, 2, 2\), got \(1, 2, 4\)",
        ),
        ("lstm", torch.zeros(1, 2, H, dtype=D), r"expected hx as a tuple \(h_0, c_0\) for LSTM"),
        (
            "gru",
            (torch.zeros(1, 2, H, dtype=D), torch.zeros(1, 2, H, dtype=D)),
            "expected hx as one tensor h_0 for GRU, got tuple",
        ),
    ],
)
def test_wrong_h0_shape(kind, hx, match):
    ours, _ = _pair(kind)
    with pytest.raises(ValueError, match=match):
        ours(torch.zeros(T, 2, IN, dtype=D), hx)


def test_unknown_extra_option():
    with pytest.raises(ValueError, match=r"LSTM got unknown option\(s\) peepholes"):
        rnnkit.nn.LSTM(3, 4, peepholes=True)
    with pytest.raises(ValueError, match=r"GRU got unknown option\(s\) peephole"):
        rnnkit.nn.GRU(3, 4, peephole=True)


def test_proj_size_on_gru():
    with pytest.raises(ValueError, match="proj_size is only supported by LSTM"):
        rnnkit.nn.GRU(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="proj_size is only supported by LSTM"):
        rnnkit.nn.RNN(3, 4, proj_size=2)


# ---------------------------------------------------------------------------- extras


@pytest.mark.fused
def test_peephole_under_auto_matches_the_loop():
    torch.manual_seed(0)
    auto = rnnkit.nn.LSTM(IN, H, num_layers=2, bidirectional=True, dtype=D, peephole=True)
    loop = rnnkit.nn.LSTM(
        IN, H, num_layers=2, bidirectional=True, dtype=D, peephole=True, engine="loop"
    )
    assert "weight_ci_l0" in dict(auto.named_parameters())
    loop.load_state_dict(auto.state_dict(), strict=True)
    make_input, batch = _input_maker("packed_unsorted", False)
    hx = _hx(
        nn.LSTM(IN, H, num_layers=2, bidirectional=True), batch, torch.Generator().manual_seed(2)
    )
    _compare(auto, loop, make_input, hx, atol=1e-12)  # auto runs it through fused
    # the native engine refuses the peephole cell outright
    native = rnnkit.nn.LSTM(IN, H, dtype=D, peephole=True, engine="native")
    with pytest.raises(ValueError, match="engine='native' cannot run this configuration"):
        native(torch.zeros(T, 2, IN, dtype=D))


def test_forget_bias():
    torch.manual_seed(0)
    plain = rnnkit.nn.LSTM(IN, H, num_layers=2, dtype=D)
    torch.manual_seed(0)
    biased = rnnkit.nn.LSTM(IN, H, num_layers=2, dtype=D, forget_bias=1.0)
    for name, p in plain.named_parameters():
        q = biased.get_parameter(name)
        if name.startswith("bias_ih"):
            expected = p.detach().clone()
            expected[H : 2 * H] += 1.0
            torch.testing.assert_close(q, expected, rtol=0, atol=1e-15)
            assert not torch.equal(q[H : 2 * H], p[H : 2 * H])
        else:
            assert torch.equal(q, p), name
