"""ElmanCell: gradients, torch.nn.RNNCell with copied weights, initialisations."""

from __future__ import annotations

import pytest
import torch

from _numerics import gradcheck_module
from rnnkit.cells import ElmanCell

D = torch.float64
B, N_IN, H = 3, 4, 5


def unroll(cell, xs, state):
    ys = []
    for x in xs:
        y, state = cell(x, state)
        ys.append(y)
    return torch.stack(ys), state


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("init", ["uniform", "orthogonal", "identity"])
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(nonlinearity, init, bias):
    torch.manual_seed(0)
    cell = ElmanCell(N_IN, H, nonlinearity, bias=bias, init=init, dtype=D)
    with torch.no_grad():  # move off the identity/zero start so relu kinks are not hit
        for p in cell.parameters():
            p.add_(0.1 * torch.randn_like(p))
    xs, h0 = torch.randn(4, B, N_IN, dtype=D), torch.randn(B, H, dtype=D)
    assert gradcheck_module(cell, lambda c, xs, h: unroll(c, xs, (h,)), xs, h0)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch_rnncell(nonlinearity, bias):
    torch.manual_seed(1)
    ref = torch.nn.RNNCell(N_IN, H, bias=bias, nonlinearity=nonlinearity, dtype=D)
    cell = ElmanCell(N_IN, H, nonlinearity, bias=bias, dtype=D)
    cell.load_state_dict(ref.state_dict(), strict=True)
    xs = torch.randn(6, B, N_IN, dtype=D, requires_grad=True)
    h = h_ref = torch.randn(B, H, dtype=D)
    ys, ys_ref = [], []
    for x in xs:
        y, (h,) = cell(x, (h,))
        h_ref = ref(x, h_ref)
        ys.append(y)
        ys_ref.append(h_ref)
    ys, ys_ref = torch.stack(ys), torch.stack(ys_ref)
    assert torch.allclose(ys, ys_ref, atol=1e-12, rtol=0)
    w = torch.randn_like(ys)
    grads = torch.autograd.grad((ys * w).sum(), [xs, *cell.parameters()])
    grads_ref = torch.autograd.grad((ys_ref * w).sum(), [xs, *ref.parameters()])
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert torch.allclose(g, g_ref, atol=1e-12, rtol=0)


def test_same_seed_same_weights_as_torch():
    torch.manual_seed(7)
    ref = torch.nn.RNNCell(N_IN, H)
    torch.manual_seed(7)
    cell = ElmanCell(N_IN, H)
    for (name, p), (name_ref, p_ref) in zip(
        cell.named_parameters(), ref.named_parameters(), strict=True
    ):
        assert name == name_ref and torch.equal(p, p_ref)


def test_orthogonal_init():
    W = ElmanCell(N_IN, H, init="orthogonal", dtype=D).weight_hh
    assert torch.allclose(W.T @ W, torch.eye(H, dtype=D), atol=1e-12)


def test_irnn_init_is_identity_with_zero_bias():
    cell = ElmanCell(N_IN, H, nonlinearity="relu", init="identity")
    assert torch.equal(cell.weight_hh, torch.eye(H))
    assert torch.equal(cell.bias_ih, torch.zeros(H)) and torch.equal(cell.bias_hh, torch.zeros(H))
    # With zero input weights an IRNN carries a positive state unchanged.
    with torch.no_grad():
        cell.weight_ih.zero_()
    h = torch.rand(2, H)
    y, _ = cell(torch.randn(2, N_IN), (h,))
    assert torch.equal(y, h)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nonlinearity": "gelu"}, "nonlinearity='gelu'.*expected one of"),
        ({"init": "xavier"}, "init='xavier'.*expected one of"),
        ({"hidden_size": 0}, "hidden_size must be a positive integer"),
    ],
)
def test_bad_options(kwargs, message):
    args = {"input_size": N_IN, "hidden_size": H, **kwargs}
    with pytest.raises(ValueError, match=message):
        ElmanCell(**args)
