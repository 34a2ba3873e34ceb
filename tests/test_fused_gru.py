"""The fused GRU against the loop engine (float64) and torch.nn.GRU (float32)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from _numerics import gradcheck_module
from rnnkit import GRUCell, Recurrent
from rnnkit.engines.fused import build

D = torch.float64
T, B, N_IN, H = 6, 4, 3, 5
PADDED = [T, 2, T - 1, 1]

reason = build.load()
pytestmark = pytest.mark.skipif(reason is not None, reason=f"fused engine: {reason}")


def _run(engine, reset, bias, reverse, lengths, dropout):
    """Outputs, final state and the gradients of x, h0 and every parameter."""
    torch.manual_seed(0)
    cell = GRUCell(N_IN, H, bias=bias, reset=reset, dtype=D)
    layer = Recurrent(cell, reverse=reverse, engine=engine, state_dropout=dropout).train()
    x = torch.randn(T, B, N_IN, dtype=D, requires_grad=True)
    h0 = torch.randn(B, H, dtype=D, requires_grad=True)
    w = torch.randn(T, B, H, dtype=D)
    torch.manual_seed(1)  # the same dropout mask for both engines
    y, (h,) = layer(x, (h0,), lengths=lengths)
    # Weighted outputs plus a non-linear function of the final state, so every output
    # and the state carry distinct gradients.
    loss = (w * y).sum() + (h.sin() ** 2).sum()
    grads = torch.autograd.grad(loss, [x, h0, *layer.parameters()])
    return [y, h, *grads]


@pytest.mark.parametrize("reset", ["after", "before"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, PADDED], ids=["full", "padded"])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_fused_gru_matches_loop(reset, bias, reverse, lengths, dropout):
    lengths = None if lengths is None else torch.tensor(lengths)
    args = (reset, bias, reverse, lengths, dropout)
    expected = _run("loop", *args)
    got = _run("fused", *args)
    params = [f"d{n}" for n, _ in GRUCell(1, 1, bias=bias).named_parameters()]
    names = ["y", "h", "dx", "dh0", *params]
    for name, a, b in zip(names, got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")
    if lengths is not None:  # steps past each sequence's end emit exact zeros
        for row, n in enumerate(PADDED):
            assert not got[0][n:, row].any()


@pytest.mark.parametrize("reset", ["after", "before"])
def test_fused_gru_matches_loop_on_a_batch_split_over_threads(reset):
    # Enough rows x units that for_rows hands the element-wise passes to several tasks.
    T_, B_, H_ = 3, 80, 256
    lengths = torch.randint(1, T_ + 1, (B_,))
    results = []
    for engine in ("loop", "fused"):
        torch.manual_seed(0)
        layer = Recurrent(GRUCell(2, H_, reset=reset, dtype=D), engine=engine)
        layer.state_dropout = 0.3
        x = torch.randn(T_, B_, 2, dtype=D, requires_grad=True)
        h0 = torch.randn(B_, H_, dtype=D, requires_grad=True)
        torch.manual_seed(1)
        y, (h,) = layer(x, (h0,), lengths=lengths)
        loss = (y * torch.linspace(-1, 1, H_, dtype=D)).sum() + (h**3).sum()
        results.append([y, h, *torch.autograd.grad(loss, [x, h0, *layer.parameters()])])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("reset", ["after", "before"])
def test_fused_gru_gradcheck_with_dropout_and_no_bias(reset):
    torch.manual_seed(0)
    layer = Recurrent(GRUCell(2, 3, bias=False, reset=reset, dtype=D), engine="fused")
    layer.state_dropout = 0.4
    layer.train()
    x = torch.randn(4, 3, 2, dtype=D)
    h0 = torch.randn(3, 3, dtype=D)
    lengths = torch.tensor([4, 1, 3])

    def run(module, x, h0):
        torch.manual_seed(2)  # one dropout mask for every evaluation
        return module(x, (h0,), lengths=lengths)

    assert gradcheck_module(layer, run, x, h0)


@pytest.mark.parametrize("padded", [False, True])
def test_fused_gru_matches_torch_gru_float32(padded):
    T_, B_, I_, H_ = 7, 5, 4, 6
    lengths = torch.tensor([7, 3, 5, 1, 6]) if padded else None
    torch.manual_seed(0)
    theirs = torch.nn.GRU(I_, H_)
    cell = GRUCell(I_, H_)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(theirs, name + "_l0"))
    ours = Recurrent(cell, engine="fused")
    x = torch.randn(T_, B_, I_)
    h0 = torch.randn(B_, H_)
    w = torch.randn(T_, B_, H_)

    x1, h1 = x.clone().requires_grad_(), h0.clone().requires_grad_()
    y1, (hT1,) = ours(x1, (h1,), lengths=lengths)
    loss1 = (w * y1).sum() + (hT1**2).sum()
    g1 = torch.autograd.grad(loss1, [x1, h1, *cell.parameters()])

    x2, h2 = x.clone().requires_grad_(), h0.clone().requires_grad_()
    if padded:
        packed = pack_padded_sequence(x2, lengths, enforce_sorted=False)
        out, hT2 = theirs(packed, h2[None])
        y2, _ = pad_packed_sequence(out, total_length=T_)
    else:
        y2, hT2 = theirs(x2, h2[None])
    loss2 = (w * y2).sum() + (hT2[0] ** 2).sum()
    g2 = torch.autograd.grad(loss2, [x2, h2, *theirs.parameters()])

    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hT1, hT2[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
