"""The fused engine's LSTM against the loop engine, torch.nn.LSTM and gradcheck."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _numerics import gradcheck_module
from rnnkit import LSTMCell, Recurrent
from rnnkit.engines import ENGINES, Unroll

D = torch.float64
T, B, IN, H, P = 6, 4, 3, 5, 3
LENGTHS = [T, 2, T - 1, 1]

VARIANTS = {
    "plain": {},
    "no_bias": {"bias": False},
    "peephole": {"peephole": True},
    "layer_norm": {"layer_norm": True},
    "proj": {"proj_size": P},
    "peephole+ln+proj": {"peephole": True, "layer_norm": True, "proj_size": P},
}

pytestmark = pytest.mark.skipif(
    ENGINES["fused"].unsupported(
        LSTMCell(IN, H, dtype=D), Unroll(torch.zeros(1, 1, IN, dtype=D), (None, None))
    )
    is not None,
    reason="the fused kernels cannot be built here",
)


def _cell(options, dtype=D, seed=0, hidden=H, inputs=IN):
    """A cell whose layer-norm gains and biases are perturbed away from ones and zeros."""
    torch.manual_seed(seed)
    cell = LSTMCell(inputs, hidden, dtype=dtype, **options)
    with torch.no_grad():
        for name, p in cell.named_parameters():
            if name.startswith("ln_"):
                p.add_(0.3 * torch.randn_like(p))
    return cell


def _run(cell, engine, x, state, lengths=None, reverse=False, state_dropout=0.0, seed=1):
    """Outputs, final state and the gradients of x, the initial state and every parameter."""
    layer = Recurrent(cell, reverse=reverse, engine=engine, state_dropout=state_dropout)
    layer.train()
    layer.zero_grad()
    x = x.detach().clone().requires_grad_()
    state = tuple(s.detach().clone().requires_grad_() for s in state)
    torch.manual_seed(seed)  # the same state-dropout mask for both engines
    y, (h, c) = layer(x, state, lengths=lengths)
    weights = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(2))
    loss = (weights * y).sum() + (h**2).sum() + c.sin().sum()
    loss.backward()
    grads = {"x": x.grad, "h0": state[0].grad, "c0": state[1].grad}
    grads |= {name: p.grad for name, p in layer.named_parameters()}
    return {"y": y, "h": h, "c": c} | grads


def _inputs(cell, dtype=D, batch=B, steps=T):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(steps, batch, cell.input_size, dtype=dtype, generator=gen)
    state = tuple(
        0.5 * torch.randn(batch, *shape, dtype=dtype, generator=gen)
        for shape in cell.state_shapes()
    )
    return x, state


def _assert_close(ours, ref, atol, rtol=0.0):
    assert ours.keys() == ref.keys()
    for name in ref:
        assert ours[name] is not None, name
        torch.testing.assert_close(ours[name], ref[name], atol=atol, rtol=rtol, msg=name)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("state_dropout", [0.0, 0.5])
def test_matches_loop_engine(variant, reverse, padded, state_dropout):
    cell = _cell(VARIANTS[variant])
    x, state = _inputs(cell)
    lengths = torch.tensor(LENGTHS) if padded else None
    args = (x, state, lengths, reverse, state_dropout)
    _assert_close(_run(cell, "fused", *args), _run(cell, "loop", *args), atol=1e-10)


@pytest.mark.parametrize("variant", ["no_bias", "peephole", "layer_norm", "peephole+ln+proj"])
def test_gradcheck_with_padding_and_state_dropout(variant):
    cell = _cell(VARIANTS[variant])
    layer = Recurrent(cell, engine="fused", state_dropout=0.3)
    x, state = _inputs(cell, batch=3, steps=4)
    lengths = torch.tensor([4, 1, 3])

    def run(module, x, *state):
        torch.manual_seed(0)  # one dropout mask for every evaluation
        return module(x, state, lengths=lengths)

    assert gradcheck_module(layer, run, x, *state)


def test_rows_split_over_threads_match_loop_engine():
    """A batch large enough that each step's rows run on several threads, whose
    partial sums (peephole and layer-norm parameters) must add up; with layer norm
    the recurrent weight's gradient is also added up over chunks of 3 steps."""
    cell = _cell(VARIANTS["peephole+ln+proj"], hidden=64, inputs=4)
    x, state = _inputs(cell, batch=160, steps=5)
    lengths = torch.randint(1, 6, (160,), generator=torch.Generator().manual_seed(4))
    args = (x, state, lengths, False, 0.5)
    _assert_close(_run(cell, "fused", *args), _run(cell, "loop", *args), atol=1e-10)


@pytest.mark.parametrize("variant", ["plain", "peephole+ln+proj"])
def test_float32_matches_loop_engine(variant):
    cell = _cell(VARIANTS[variant], dtype=torch.float32)
    x, state = _inputs(cell, dtype=torch.float32)
    args = (x, state, torch.tensor(LENGTHS), True, 0.5)
    _assert_close(_run(cell, "fused", *args), _run(cell, "loop", *args), atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("proj_size", [0, P])
def test_float32_matches_torch_lstm(proj_size):
    torch.manual_seed(0)
    theirs = nn.LSTM(IN, H, proj_size=proj_size)
    cell = LSTMCell(IN, H, proj_size=proj_size, forget_bias=0.0)
    with torch.no_grad():
        for name, p in cell.named_parameters():
            p.copy_(getattr(theirs, f"{name}_l0"))
    x, (h0, c0) = _inputs(cell, dtype=torch.float32, batch=8, steps=12)
    ours = _run(cell, "fused", x, (h0, c0))

    x = x.clone().requires_grad_()
    h0, c0 = h0.clone().requires_grad_(), c0.clone().requires_grad_()
    y, (h, c) = theirs(x, (h0[None], c0[None]))
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(2))
    ((weights * y).sum() + (h**2).sum() + c.sin().sum()).backward()
    ref = {"y": y, "h": h[0], "c": c[0], "x": x.grad, "h0": h0.grad, "c0": c0.grad}
    ref |= {
        f"cell.{name}": getattr(theirs, f"{name}_l0").grad for name, _ in cell.named_parameters()
    }
    _assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_unused_outputs_and_a_second_backward():
    """Only the final c feeds the loss (no gradient arrives for y and h), and a retained
    graph gives the same gradients twice: the backward leaves what it saved intact."""
    cell = _cell(VARIANTS["peephole+ln+proj"])
    x, state = _inputs(cell)
    layer = Recurrent(cell, engine="fused")
    grads = []
    for engine in ("fused", "loop"):
        layer.engine = engine
        leaf = x.clone().requires_grad_()
        _, (_, c) = layer(leaf, state, lengths=torch.tensor(LENGTHS))
        grads.append(torch.autograd.grad(c.sum(), [leaf, *cell.parameters()]))
    for ours, theirs in zip(*grads, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=0)

    layer.engine = "fused"

    leaf = x.clone().requires_grad_()
    y, _ = layer(leaf, state)
    first = torch.autograd.grad(y.sum(), leaf, retain_graph=True)[0]
    second = torch.autograd.grad(y.sum(), leaf)[0]
    assert torch.equal(first, second)
