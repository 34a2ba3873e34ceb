"""rnnkit.diagnostics.gradient_flow: gradient norms through time, Jacobians, spectra, verdicts."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from rnnkit.cells import (
    ClockworkCell,
    ElmanCell,
    GRUCell,
    JordanCell,
    LeakyCell,
    LSTMCell,
    SkipCell,
)
from rnnkit.diagnostics import gradient_flow, recurrent_spectrum
from rnnkit.layers import Bidirectional, Recurrent, Stacked
from rnnkit.models import LanguageModel, LMConfig

pytestmark = pytest.mark.usefixtures("one_thread")
F = nn.functional
EPS = 1e-6  # central differences in float64


def _scaled_elman(norm: float, nonlinearity="tanh", hidden=16, init="orthogonal", seed=0):
    torch.manual_seed(seed)
    cell = ElmanCell(3, hidden, nonlinearity, init=init)
    with torch.no_grad():
        cell.weight_hh.mul_(norm / torch.linalg.matrix_norm(cell.weight_hh.double(), 2).float())
    return cell


# ---- finite differences ---------------------------------------------------------------


def _stack_losses(cells, x, loss_at, layer, k, delta):
    """Per-step losses of stacked ``cells`` with ``delta`` added to layer ``layer``'s state
    after step ``k`` (the recurrence then runs on from the perturbed state)."""
    T, B = x.shape[:2]
    for index, cell in enumerate(cells):
        state = cell.init_state(B, dtype=torch.float64)
        ys = []
        for i in range(T):
            y, state = cell(x[i], state)
            if index == layer and i == k:
                state = tuple(s + d for s, d in zip(state, delta, strict=True))
                y = state[0]
            ys.append(y)
        x = torch.stack(ys)  # (T, B, O)
    return torch.stack([loss_at(x, t) for t in range(T)])  # (T,)


def _fd_grad_norms(cells, x, loss_at, layer):
    """``‖∂L_t/∂s_k‖`` (T, T) by central differences over every state entry."""
    T, B = x.shape[:2]
    shapes = [(B, *shape) for shape in cells[layer].state_shapes()]
    sq = torch.zeros(T, T, dtype=torch.float64)  # [t, k]
    with torch.no_grad():
        for k in range(T):
            for part, shape in enumerate(shapes):
                for flat in range(int(np.prod(shape))):
                    deltas = []
                    for sign in (1.0, -1.0):
                        delta = [torch.zeros(s, dtype=torch.float64) for s in shapes]
                        delta[part].view(-1)[flat] = sign * EPS
                        deltas.append(_stack_losses(cells, x, loss_at, layer, k, delta))
                    sq[:, k] += ((deltas[0] - deltas[1]) / (2 * EPS)) ** 2
    norms = sq.sqrt().numpy()
    norms[np.triu_indices(T, 1)] = np.nan
    return norms


def _max_rel_error(got, want):
    keep = np.isfinite(want)
    assert np.array_equal(keep, np.isfinite(got))
    return float(np.max(np.abs(got[keep] - want[keep]) / np.abs(want[keep])))


def test_elman_grad_norms_match_finite_differences():
    torch.manual_seed(1)
    cell = ElmanCell(3, 4)
    x, y = torch.randn(6, 2, 3), torch.randn(6, 2, 4)
    flow = gradient_flow(cell, x, y)  # default: per-step mean squared error
    ref = copy.deepcopy(cell).double()

    def mse(out, t):
        return F.mse_loss(out[t], y[t].double())

    want = _fd_grad_norms([ref], x.double(), mse, 0)
    assert flow.grad_norms.shape == (6, 6)
    assert _max_rel_error(flow.grad_norms, want) < 1e-6
    np.testing.assert_array_equal(flow.last_row, flow.grad_norms[-1])
    assert flow.loss == "mean squared error"


@pytest.mark.parametrize("layer", [0, 1])
def test_lstm_language_model_grad_norms_match_finite_differences(layer):
    torch.manual_seed(2)
    lm = LanguageModel(
        LMConfig(
            vocab_size=7, cell="lstm", hidden_size=3, num_layers=2, embedding_size=4, dropout=0
        )
    )
    tokens, targets = torch.randint(0, 7, (5, 2)), torch.randint(0, 7, (5, 2))
    flow = gradient_flow(lm, tokens, targets, layer=layer)  # default: cross-entropy
    ref = copy.deepcopy(lm).double()
    cells = [rec.cell for rec in ref.rnn.layers]

    def cross_entropy(out, t):
        return F.cross_entropy(ref.head(out[t]), targets[t])

    want = _fd_grad_norms(cells, ref.embed(tokens), cross_entropy, layer)
    assert _max_rel_error(flow.grad_norms, want) < 1e-6
    assert flow.state_size == 6 and flow.loss == "cross-entropy"  # (h, c) of 3 units each


def test_custom_loss_and_last_row_only_agree_with_all_pairs():
    cell = _scaled_elman(0.9, hidden=5)
    x = torch.randn(30, 3, 3)

    def second_unit(out, target, t):
        assert target is None
        return (out[:, 1] ** 2).mean() * (t + 1)

    full = gradient_flow(cell, x, loss=second_unit, pairs="all")
    last = gradient_flow(cell, x, loss=second_unit, pairs="last")
    assert last.grad_norms is None and full.loss.startswith("custom")
    np.testing.assert_allclose(last.last_row, full.grad_norms[-1], rtol=1e-12)
    # pairs="auto" keeps every pair only up to T=200.
    assert gradient_flow(cell, torch.randn(201, 1, 3), pairs="auto").grad_norms is None


# ---- Jacobians and spectra ------------------------------------------------------------


def _trajectory(cell, x):
    """States entering each step of sequence 0, from an independent run of the cell."""
    state = cell.init_state(1, dtype=torch.float64)
    states = []
    for t in range(x.shape[0]):
        states.append(state)
        _, state = cell(x[t, :1], state)
    return states


@pytest.mark.parametrize(
    "make",
    [
        lambda: ElmanCell(3, 5, "tanh"),
        lambda: LSTMCell(3, 4, peephole=True, layer_norm=True),
        lambda: GRUCell(3, 4, reset="before"),
    ],
    ids=["elman", "lstm-peephole-ln", "gru-before"],
)
def test_jacobian_norms_match_autograd_functional_jacobian(make):
    torch.manual_seed(3)
    cell = make()
    x = torch.randn(7, 2, 3)
    flow = gradient_flow(cell, x)
    ref = copy.deepcopy(cell).double()
    xd = x.double()
    states = _trajectory(ref, xd)
    sizes = [s.shape[1] for s in states[0]]
    for j in range(6):  # J_j = ∂s_{j+1}/∂s_j
        flat = torch.cat(states[j + 1], 1)[0]

        def step(s, j=j):
            parts = torch.split(s[None], sizes, 1)
            _, new = ref(xd[j + 1, :1], tuple(parts))
            return torch.cat(new, 1)[0]

        jac = torch.autograd.functional.jacobian(step, flat)
        want = torch.linalg.matrix_norm(jac, ord=2).item()
        assert flow.jacobian_norms[j] == pytest.approx(want, rel=1e-10)


def test_spectrum_matches_numpy_and_bounds_elman_jacobians():
    torch.manual_seed(4)
    for nonlinearity, gamma in (("tanh", 1.0), ("sigmoid", 0.25), ("relu", 1.0)):
        cell = ElmanCell(3, 12, nonlinearity)
        with torch.no_grad():
            cell.weight_hh.mul_(6.0)  # large enough to saturate and to explode
        w = cell.weight_hh.detach().double().numpy()
        flow = gradient_flow(cell, 2 * torch.randn(25, 2, 3))
        assert flow.spectral_radius == pytest.approx(np.abs(np.linalg.eigvals(w)).max(), rel=1e-12)
        assert flow.max_singular_value == pytest.approx(np.linalg.norm(w, 2), rel=1e-12)
        assert flow.gamma == gamma
        assert flow.bound == pytest.approx(np.linalg.norm(w, 2) * gamma, rel=1e-12)
        assert np.all(flow.jacobian_norms <= flow.bound * (1 + 1e-12))
        if nonlinearity == "tanh":  # saturation keeps the norms well below the bound
            assert flow.jacobian_norms.mean() < 0.9 * flow.bound


# ---- the literature's contrast --------------------------------------------------------


def test_vanishing_exploding_and_lstm_memory_contrast():
    torch.manual_seed(0)
    T = 40
    x = torch.randn(T, 4, 3)
    # tanh with ‖W_hh‖ = 0.5: ‖∂L_T/∂s_k‖ ≤ ‖∂L_T/∂s_T‖ 0.5^(T-k), decaying geometrically.
    tanh = gradient_flow(_scaled_elman(0.5), x)
    assert tanh.verdict == "vanishing"
    assert tanh.max_singular_value == pytest.approx(0.5) and tanh.bound == pytest.approx(0.5)
    assert 0.3 < tanh.decay_rate <= 0.5
    assert tanh.factor < 1e-10
    lags = tanh.lags
    assert np.all(tanh.last_row <= tanh.last_row[-1] * 0.5**lags * (1 + 1e-9))

    # relu with W_hh = 3 I and positive drive: every unit active, J = 3 I at every step.
    relu = ElmanCell(3, 16, "relu", init="identity")
    with torch.no_grad():
        relu.weight_hh.mul_(3.0)
        relu.bias_ih.fill_(0.5)
    boom = gradient_flow(relu, x[:20].abs())
    assert boom.spectral_radius == pytest.approx(3.0) and boom.verdict == "exploding"
    assert boom.decay_rate == pytest.approx(3.0, rel=1e-9)
    assert boom.factor == pytest.approx(3.0**18, rel=1e-6)
    np.testing.assert_allclose(boom.jacobian_norms, 3.0, rtol=1e-12)

    # LSTM with forget bias 5: the cell path f ≈ σ(5) = 0.993 carries gradient unchanged.
    torch.manual_seed(0)
    lstm = gradient_flow(LSTMCell(3, 16, forget_bias=5.0), x)
    assert lstm.verdict == "healthy"
    assert 0.9 < lstm.decay_rate < 1.1 and 0.1 < lstm.factor < 10
    assert np.isnan(lstm.bound) and "gated" in lstm.reasons["gamma"]


# ---- every cell, layer and option -----------------------------------------------------

CELLS = {
    "elman-tanh": lambda: ElmanCell(3, 6, "tanh"),
    "elman-relu": lambda: ElmanCell(3, 6, "relu"),
    "elman-sigmoid": lambda: ElmanCell(3, 6, "sigmoid"),
    "irnn": lambda: ElmanCell(3, 6, "relu", init="identity"),
    "lstm": lambda: LSTMCell(3, 6),
    "lstm-peephole": lambda: LSTMCell(3, 6, peephole=True),
    "lstm-layer-norm": lambda: LSTMCell(3, 6, layer_norm=True),
    "lstm-proj": lambda: LSTMCell(3, 6, proj_size=2),
    "gru": lambda: GRUCell(3, 6),
    "gru-before": lambda: GRUCell(3, 6, reset="before"),
    "leaky": lambda: LeakyCell(3, 6, alpha=0.8),
    "leaky-learned": lambda: LeakyCell(3, 6, alpha=[0.5, 0.9] * 3, learn_alpha=True),
    "jordan": lambda: JordanCell(3, 6, 2),
    "clockwork": lambda: ClockworkCell(3, 6, num_groups=3),
    "skip-elman": lambda: SkipCell.build(ElmanCell, 3, 6, delay=3),
    "skip-lstm": lambda: SkipCell.build(LSTMCell, 3, 6, delay=2),
}


@pytest.mark.parametrize("name", list(CELLS))
def test_every_cell_kind_runs(name, tmp_path):
    torch.manual_seed(5)
    cell = CELLS[name]()
    flow = gradient_flow(cell, torch.randn(12, 2, 3), lengths=torch.tensor([12, 9]))
    assert np.all(np.isfinite(flow.last_row)) and flow.last_row[-1] > 0
    assert flow.verdict in ("vanishing", "exploding", "healthy")
    finite = np.isfinite(flow.jacobian_norms)
    assert finite.all() and np.all(flow.jacobian_norms[finite] > 0)
    if np.isfinite(flow.bound):  # Elman, leaky, clockwork
        assert np.all(flow.jacobian_norms <= flow.bound * (1 + 1e-12))
    else:
        assert flow.reasons["bound"]
    if name == "jordan":
        assert np.isnan(flow.max_singular_value)
        assert "weight_yh" in flow.reasons["max_singular_value"]
    if name.startswith(("lstm", "gru")):
        assert np.isnan(flow.spectral_radius) and "not square" in flow.reasons["spectral_radius"]
    # Floating state entries per sequence: (h, c), the skip history (d, O), Jordan's y.
    sizes = {"lstm-proj": 2 + 6, "skip-elman": 6 + 3 * 6, "skip-lstm": 12 + 2 * 6, "jordan": 2}
    if name.startswith("lstm") and name not in sizes:
        sizes[name] = 12
    assert flow.state_size == sizes.get(name, 6)


def test_leaky_bound_and_clockwork_bound_values():
    cell = LeakyCell(3, 4, alpha=[0.2, 0.5, 0.7, 0.9])
    spec = recurrent_spectrum(cell)
    lam1 = np.linalg.norm(cell.weight_hh.detach().double().numpy(), 2)
    assert spec.bound == pytest.approx(0.9 + 0.8 * lam1, rel=1e-6)
    clock = ClockworkCell(3, 4, periods=[1, 2])
    spec = recurrent_spectrum(clock)
    masked = (clock.weight_hh * clock.weight_hh_mask).detach().double().numpy()
    assert spec.max_singular_value == pytest.approx(np.linalg.norm(masked, 2), rel=1e-6)
    assert spec.bound == pytest.approx(np.sqrt(1 + spec.max_singular_value**2), rel=1e-12)


def test_padding_splits_into_the_two_sequences():
    """With L_t = sum of outputs, a padded batch's squared norms are the two sequences' sums."""
    torch.manual_seed(6)
    cell = ElmanCell(3, 4)
    x = torch.randn(6, 2, 3)
    both = gradient_flow(cell, x, lengths=torch.tensor([6, 4]))
    a = gradient_flow(cell, x[:, :1])
    b = gradient_flow(cell, x[:4, 1:])
    want = a.grad_norms.copy()
    want[:4, :4] = np.sqrt(a.grad_norms[:4, :4] ** 2 + b.grad_norms**2)
    np.testing.assert_allclose(both.grad_norms, want, rtol=1e-12)
    # Sequence 1's Jacobians stop at its length; sequence 0's match the unpadded run.
    seq1 = gradient_flow(cell, x, lengths=torch.tensor([6, 4]), batch_index=1)
    np.testing.assert_allclose(seq1.jacobian_norms[:3], b.jacobian_norms, rtol=1e-12)
    assert np.isnan(seq1.jacobian_norms[3:]).all() and "length" in seq1.reasons["jacobian_norms"]
    np.testing.assert_allclose(both.jacobian_norms, a.jacobian_norms, rtol=1e-12)


def test_bidirectional_backward_half_and_stacked_layers():
    torch.manual_seed(7)
    fwd, bwd = ElmanCell(3, 4), ElmanCell(3, 4)
    x = torch.randn(8, 2, 3)
    bi = Bidirectional(fwd, bwd)
    back = gradient_flow(bi, x, direction="backward")
    alone = gradient_flow(Recurrent(bwd, reverse=True), x)
    np.testing.assert_array_equal(back.times, np.arange(7, -1, -1))
    np.testing.assert_allclose(back.grad_norms, alone.grad_norms, rtol=1e-12)
    front = gradient_flow(bi, x)
    np.testing.assert_allclose(front.last_row, gradient_flow(fwd, x).last_row, rtol=1e-12)
    # Stacked: the second layer, fed the first one's outputs.
    stack = Stacked([ElmanCell(3, 4), ElmanCell(4, 5)])
    top = gradient_flow(stack, x, layer=-1)
    assert top.layer == 1 and top.state_size == 5
    with torch.no_grad():  # the first layer's outputs in float64, on the loop engine
        first = Recurrent(copy.deepcopy(stack.layers[0].cell).double(), engine="loop")
        y0, _ = first(x.double())
    second = gradient_flow(stack.layers[1], y0)
    np.testing.assert_allclose(top.last_row, second.last_row, rtol=1e-12)


def test_batch_first_layer_takes_batch_first_inputs():
    torch.manual_seed(8)
    cell = GRUCell(3, 4)
    x, y = torch.randn(7, 2, 3), torch.randn(7, 2, 4)
    a = gradient_flow(Recurrent(cell), x, y)
    b = gradient_flow(Recurrent(cell, batch_first=True), x.transpose(0, 1), y.transpose(0, 1))
    np.testing.assert_allclose(a.grad_norms, b.grad_norms, rtol=1e-12)


def test_summary_and_plots(tmp_path):
    from matplotlib.image import imread

    flow = gradient_flow(_scaled_elman(0.5), torch.randn(20, 2, 3))
    text = flow.summary()
    assert "verdict: vanishing" in text and f"{flow.decay_rate:.4g}" in text
    flow.plot(tmp_path / "flow.png")
    flow.heatmap(tmp_path / "heat.png")
    assert imread(tmp_path / "flow.png").shape[:2] == (450, 2000)  # 4 panels: W_rec square
    assert imread(tmp_path / "heat.png").shape[:2] == (550, 650)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.png", "heat.png"]  # no temp
    last = gradient_flow(_scaled_elman(0.5), torch.randn(20, 2, 3), pairs="last")
    with pytest.raises(ValueError, match="pairs='all'"):
        last.heatmap(tmp_path / "no.png")
    jordan = gradient_flow(JordanCell(3, 4, 2), torch.randn(6, 1, 3))
    jordan.plot(tmp_path / "jordan.png")  # 3 panels: the spectrum's says why it is empty
    assert imread(tmp_path / "jordan.png").shape[:2] == (450, 1500)
    assert flow.to_dict()["verdict"] == "vanishing"


# ---- mistakes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "args", "kwargs", "match"),
    [
        (ElmanCell(3, 4), (torch.randn(5, 2, 2),), {}, r"shape \(T, B, I\) with I=3"),
        (ElmanCell(3, 4), (torch.randn(5, 3),), {}, r"shape \(T, B, I\)"),
        (ElmanCell(3, 4), (torch.randn(5, 2, 3), torch.randn(4, 2, 4)), {}, "one target per step"),
        (ElmanCell(3, 4), (torch.randn(5, 2, 3), torch.randn(5, 2, 3)), {}, "must match"),
        (nn.Linear(3, 4), (torch.randn(5, 2, 3),), {}, "no recurrent part"),
        (ElmanCell(3, 4), (torch.randn(1, 2, 3),), {}, "at least 2 steps"),
        (ElmanCell(3, 4), (torch.randn(5, 2, 3),), {"pairs": "some"}, "pairs='some'"),
        (ElmanCell(3, 4), (torch.randn(5, 2, 3),), {"layer": 2}, "out of range"),
        (ElmanCell(3, 4), (torch.randn(5, 2, 3),), {"direction": "backward"}, "Bidirectional"),
        (ElmanCell(3, 4), (torch.randn(5, 2, 3),), {"lengths": [5, 6]}, "between 1"),
        (ElmanCell(3, 4), (torch.randn(5, 2, 3),), {"loss": lambda o, y, t: o}, "scalar"),
        (ElmanCell(3, 4), (torch.randint(0, 3, (5, 2)),), {}, "expected inputs as floats"),
    ],
)
def test_mistakes_raise_one_line_value_errors(model, args, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        gradient_flow(model, *args, **kwargs)
    assert "\n" not in str(info.value)


def test_language_model_token_checks():
    lm = LanguageModel(LMConfig(vocab_size=5, hidden_size=3, num_layers=1, dropout=0))
    with pytest.raises(ValueError, match=r"0\.\.4"):
        gradient_flow(lm, torch.full((4, 2), 9))
    with pytest.raises(ValueError, match="target ids"):
        gradient_flow(lm, torch.zeros(4, 2, dtype=torch.long), torch.full((4, 2), 5))
    flow = gradient_flow(lm, torch.zeros(4, 2, dtype=torch.long))  # no targets: sum of logits
    assert flow.loss.startswith("sum") and np.all(flow.last_row > 0)
