"""Jordan, leaky-integrator, clockwork and skip-through-time cells: numerics against
hand-written formulas, gradients, and option checking."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from rnnkit.cells.clockwork import ClockworkCell
from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.jordan import JordanCell
from rnnkit.cells.leaky import LeakyCell, timescale_alphas
from rnnkit.cells.skip import SkipCell

F64 = torch.float64
B, N_IN, H, N_OUT, T = 3, 4, 6, 2, 5


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=F64)


def random_state(cell, batch: int, seed: int = 1):
    """A non-zero initial state (float parts random, counters zero)."""
    g = gen(seed)
    return tuple(
        torch.randn(s.shape, generator=g, dtype=F64) if s.is_floating_point() else s
        for s in cell.init_state(batch, dtype=F64)
    )


def run(cell, xs, state):
    ys = []
    for x in xs:
        y, state = cell(x, state)
        ys.append(y)
    return torch.stack(ys), state


def gradcheck_cell(cell, xs, state):
    """gradcheck of a multi-step run w.r.t. the inputs, the float state and every
    parameter (passed in through functional_call)."""
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in cell.named_parameters()]
    xs = xs.detach().clone().requires_grad_()
    state = tuple(s.detach().clone().requires_grad_(s.is_floating_point()) for s in state)
    n, k = len(params), len(state)

    def fn(*args):
        ps, x_seq, st = args[:n], args[n], args[n + 1 : n + 1 + k]
        weights = dict(zip(names, ps, strict=True))
        ys = []
        for x in x_seq:
            y, st = functional_call(cell, weights, (x, st))
            ys.append(y)
        return (torch.stack(ys), *(s for s in st if s.is_floating_point()))

    assert torch.autograd.gradcheck(fn, (*params, xs, *state))


# --------------------------------------------------------------------------- Jordan

OUT_FNS = {
    "identity": lambda z: z,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softmax": lambda z: torch.exp(z) / torch.exp(z).sum(-1, keepdim=True),
}


def jordan_step(c, x, y_prev, out):
    h = torch.tanh(x @ c.weight_ih.T + c.bias_ih + y_prev @ c.weight_yh.T + c.bias_yh)
    return OUT_FNS[out](h @ c.weight_hy.T + c.bias_hy)


@pytest.mark.parametrize("out", ["identity", "tanh", "sigmoid", "softmax"])
def test_jordan_gradcheck(out):
    torch.manual_seed(0)
    cell = JordanCell(N_IN, H, N_OUT, output=out, dtype=F64)
    gradcheck_cell(cell, randn(T, B, N_IN), random_state(cell, B))


@pytest.mark.parametrize("out", ["identity", "tanh", "sigmoid", "softmax"])
def test_jordan_matches_hand_formula(out):
    torch.manual_seed(1)
    cell = JordanCell(N_IN, H, N_OUT, output=out, dtype=F64)
    xs = randn(T, B, N_IN)
    ys, (y_last,) = run(cell, xs, cell.init_state(B))
    with torch.no_grad():
        y = torch.zeros(B, N_OUT, dtype=F64)
        for t in range(T):
            y = jordan_step(cell, xs[t], y, out)
            torch.testing.assert_close(ys[t], y)
    torch.testing.assert_close(y_last, ys[-1])
    if out == "softmax":
        torch.testing.assert_close(ys.sum(-1), torch.ones(T, B, dtype=F64))


def test_jordan_teacher_force_replaces_previous_output():
    torch.manual_seed(2)
    cell = JordanCell(N_IN, H, N_OUT, dtype=F64)
    x0, x1 = randn(B, N_IN, seed=3), randn(B, N_IN, seed=4)
    y_true = randn(B, N_OUT, seed=5)
    with torch.no_grad():
        y0, state = cell(x0, cell.init_state(B))
        forced = cell.teacher_force(state, y_true)
        assert len(forced) == 1
        torch.testing.assert_close(forced[0], y_true)
        y1_forced, _ = cell(x1, forced)
        y1_free, _ = cell(x1, state)
        torch.testing.assert_close(y1_forced, jordan_step(cell, x1, y_true, "identity"))
        torch.testing.assert_close(y1_free, jordan_step(cell, x1, y0, "identity"))
    assert not torch.allclose(y1_forced, y1_free)


def test_jordan_teacher_force_bad_shape_raises():
    cell = JordanCell(N_IN, H, N_OUT, dtype=F64)
    state = cell.init_state(B)
    for bad in (
        torch.zeros(B, N_OUT + 1, dtype=F64),
        torch.zeros(B + 1, N_OUT, dtype=F64),
        torch.zeros(N_OUT, dtype=F64),
    ):
        with pytest.raises(ValueError, match="teacher_force"):
            cell.teacher_force(state, bad)


def test_jordan_structure_and_bad_options():
    cell = JordanCell(N_IN, H, N_OUT)
    assert cell.recurrent_weights == ("weight_yh",)
    shapes = {n: tuple(p.shape) for n, p in cell.named_parameters()}
    assert shapes == {
        "weight_ih": (H, N_IN),
        "weight_yh": (H, N_OUT),
        "weight_hy": (N_OUT, H),
        "bias_ih": (H,),
        "bias_yh": (H,),
        "bias_hy": (N_OUT,),
    }
    assert (cell.hidden_size, cell.output_size) == (H, N_OUT)
    with pytest.raises(ValueError, match="output"):
        JordanCell(N_IN, H, N_OUT, output="relu6")
    with pytest.raises(ValueError, match="output_size"):
        JordanCell(N_IN, H, 0)


# --------------------------------------------------------------------------- Leaky


def leaky_reference(c, xs, h, alpha):
    ys = []
    for x in xs:
        pre = x @ c.weight_ih.T + c.bias_ih + h @ c.weight_hh.T + c.bias_hh
        h = alpha * h + (1 - alpha) * torch.tanh(pre)
        ys.append(h)
    return torch.stack(ys)


@pytest.mark.parametrize("learn", [False, True])
def test_leaky_gradcheck(learn):
    torch.manual_seed(3)
    alpha = torch.linspace(0.1, 0.9, H, dtype=F64)
    cell = LeakyCell(N_IN, H, alpha=alpha, learn_alpha=learn, dtype=F64)
    assert ("alpha_logit" in dict(cell.named_parameters())) == learn
    gradcheck_cell(cell, randn(T, B, N_IN), random_state(cell, B))


def test_leaky_scalar_alpha_matches_hand_formula():
    torch.manual_seed(4)
    cell = LeakyCell(N_IN, H, alpha=0.3, dtype=F64)
    torch.testing.assert_close(cell.alpha_value, torch.full((H,), 0.3, dtype=F64))
    assert "alpha" in dict(cell.named_buffers())
    assert all(n != "alpha" for n, _ in cell.named_parameters())
    xs, h0 = randn(T, B, N_IN), randn(B, H, seed=7)
    ys, (h,) = run(cell, xs, (h0,))
    with torch.no_grad():
        torch.testing.assert_close(ys, leaky_reference(cell, xs, h0, 0.3))
    torch.testing.assert_close(h, ys[-1])


def test_leaky_per_unit_alpha():
    torch.manual_seed(5)
    alpha = [0.05, 0.2, 0.4, 0.6, 0.8, 0.95]
    cell = LeakyCell(N_IN, H, alpha=alpha, dtype=F64)
    a = torch.tensor(alpha, dtype=F64)
    torch.testing.assert_close(cell.alpha_value, a)
    xs, h0 = randn(T, B, N_IN), randn(B, H, seed=8)
    ys, _ = run(cell, xs, (h0,))
    with torch.no_grad():
        torch.testing.assert_close(ys, leaky_reference(cell, xs, h0, a))
        # per unit, not a shared scalar: the mean alpha gives different outputs
        assert not torch.allclose(ys, leaky_reference(cell, xs, h0, a.mean()))
    # one step: unit k moves exactly (1 - alpha_k) of the way towards f(pre)
    with torch.no_grad():
        x = xs[0]
        target = torch.tanh(
            x @ cell.weight_ih.T + cell.bias_ih + h0 @ cell.weight_hh.T + cell.bias_hh
        )
        h1, _ = cell(x, (h0,))
        torch.testing.assert_close((h1 - h0) / (target - h0), (1 - a).expand(B, H))


def test_leaky_learnable_alpha_stays_in_unit_interval():
    torch.manual_seed(6)
    cell = LeakyCell(N_IN, H, alpha=0.5, learn_alpha=True, dtype=F64)
    torch.testing.assert_close(cell.alpha_value, torch.full((H,), 0.5, dtype=F64))
    assert not hasattr(cell, "alpha")
    # lr=5 moves the logits by ~20: a raw alpha parameter would leave (0, 1) at once.
    # (Much larger steps push |logit| past ~37, where sigmoid rounds to exactly 0 or 1
    # in float64.)
    opt = torch.optim.SGD(cell.parameters(), lr=5.0)
    xs = randn(T, B, N_IN)
    start = cell.alpha_value.detach().clone()
    logit0 = cell.alpha_logit.detach().clone()
    for step in range(5):
        opt.zero_grad()
        ys, _ = run(cell, xs, cell.init_state(B))
        loss = (ys - 1.0).pow(2).sum()
        loss.backward()
        if step == 0:
            assert cell.alpha_logit.grad is not None
            assert cell.alpha_logit.grad.abs().sum() > 0
        opt.step()
    a = cell.alpha_value.detach()
    assert bool(((a > 0) & (a < 1)).all()), a
    assert not torch.allclose(a, start)
    assert (cell.alpha_logit.detach() - logit0).abs().max() > 10
    torch.testing.assert_close(a, torch.sigmoid(cell.alpha_logit.detach()))


def test_timescale_alphas():
    alphas = timescale_alphas(10, (2, 4, 8))
    expected = torch.tensor([0.5] * 4 + [0.75] * 3 + [0.875] * 3)
    torch.testing.assert_close(alphas, expected)
    torch.testing.assert_close(timescale_alphas(4, [1.25]), torch.full((4,), 0.2))
    torch.testing.assert_close(
        timescale_alphas(5, (2, 10, 4, 5)), torch.tensor([0.5, 0.5, 0.9, 0.75, 0.8])
    )
    cell = LeakyCell(N_IN, 10, alpha=alphas, dtype=F64)
    torch.testing.assert_close(cell.alpha_value, expected.to(F64))
    for bad in ((), (1, 4), (0.5,), (2,) * 11):
        with pytest.raises(ValueError):
            timescale_alphas(10, bad)


@pytest.mark.parametrize(
    "alpha",
    [
        0.0,
        1.0,
        1.5,
        -0.1,
        float("nan"),
        [0.5] * (H - 1),
        [0.5] * (H + 1),
        [[0.5] * H],
        [0.5] * (H - 1) + [1.0],
    ],
)
@pytest.mark.parametrize("learn", [False, True])
def test_leaky_bad_alpha_raises(alpha, learn):
    with pytest.raises(ValueError, match="alpha"):
        LeakyCell(N_IN, H, alpha=alpha, learn_alpha=learn)


def test_leaky_reset_keeps_alpha():
    cell = LeakyCell(N_IN, H, alpha=0.7, learn_alpha=True, dtype=F64)
    before = cell.weight_hh.detach().clone()
    cell.reset_parameters()
    assert not torch.equal(before, cell.weight_hh)
    torch.testing.assert_close(cell.alpha_value, torch.full((H,), 0.7, dtype=F64))


# --------------------------------------------------------------------------- Clockwork

PERIODS = (1, 2, 4)


def test_clockwork_gradcheck():
    torch.manual_seed(7)
    cell = ClockworkCell(N_IN, H, periods=PERIODS, dtype=F64)
    gradcheck_cell(cell, randn(T, B, N_IN), random_state(cell, B))


def test_clockwork_groups_tick_on_their_period():
    torch.manual_seed(8)
    cell = ClockworkCell(N_IN, H, periods=PERIODS, dtype=F64)
    xs = randn(8, B, N_IN)
    h_prev, t = random_state(cell, B)
    with torch.no_grad():
        for step in range(8):
            h, (h_next, t_next) = cell(xs[step], (h_prev, t))
            assert torch.equal(t_next, torch.full((B,), step + 1))
            assert t_next.dtype == torch.long
            torch.testing.assert_close(h, h_next)
            for g, period in enumerate(PERIODS):
                new, old = h[:, 2 * g : 2 * g + 2], h_prev[:, 2 * g : 2 * g + 2]
                if step % period == 0:
                    assert not torch.isclose(new, old).any(), (step, g)
                else:
                    assert torch.equal(new, old), (step, g)
            h_prev, t = h_next, t_next


def test_clockwork_counter_is_per_sequence():
    torch.manual_seed(9)
    cell = ClockworkCell(N_IN, H, periods=PERIODS, dtype=F64)
    x, h0 = randn(2, N_IN), randn(2, H, seed=3)
    with torch.no_grad():
        h, _ = cell(x, (h0, torch.tensor([0, 1])))
        both, _ = cell(x, (h0, torch.tensor([0, 0])))
    torch.testing.assert_close(h[0], both[0])
    assert torch.equal(h[1, 2:], h0[1, 2:])  # t=1: only the period-1 group ticks
    torch.testing.assert_close(h[1, :2], both[1, :2])


def test_clockwork_mask_structure():
    torch.manual_seed(10)
    cell = ClockworkCell(N_IN, H, periods=PERIODS, dtype=F64)
    w = cell.weight_hh * cell.weight_hh_mask
    size = H // len(PERIODS)
    for i in range(len(PERIODS)):
        for j in range(len(PERIODS)):
            rows, cols = slice(i * size, (i + 1) * size), slice(j * size, (j + 1) * size)
            if PERIODS[j] >= PERIODS[i]:  # slower (or same) group j feeds group i
                assert (cell.weight_hh_mask[rows, cols] == 1).all()
                assert (w[rows, cols] != 0).all()
            else:  # faster group j never feeds group i
                assert (cell.weight_hh_mask[rows, cols] == 0).all()
                assert (w[rows, cols] == 0).all()
                assert (cell.weight_hh[rows, cols] == 0).all()  # zeroed at init
    # the masked entries get no gradient
    y, _ = cell(randn(B, N_IN), random_state(cell, B))
    y.sum().backward()
    assert (cell.weight_hh.grad[cell.weight_hh_mask == 0] == 0).all()
    assert (cell.weight_hh.grad[cell.weight_hh_mask == 1] != 0).any()


def test_clockwork_matches_hand_reference():
    torch.manual_seed(11)
    periods = (1, 3, 5)
    cell = ClockworkCell(N_IN, 9, periods=periods, dtype=F64)
    xs = randn(12, B, N_IN)
    ys, _ = run(cell, xs, cell.init_state(B))
    with torch.no_grad():
        w_ih, w_hh = cell.weight_ih, cell.weight_hh
        h = torch.zeros(B, 9, dtype=F64)
        for t in range(12):
            new = h.clone()
            for i, period in enumerate(periods):
                if t % period:
                    continue
                rows = slice(3 * i, 3 * i + 3)
                pre = xs[t] @ w_ih[rows].T + cell.bias_ih[rows] + cell.bias_hh[rows]
                for j in range(i, len(periods)):  # only slower groups (and itself)
                    cols = slice(3 * j, 3 * j + 3)
                    pre = pre + h[:, cols] @ w_hh[rows, cols].T
                new[:, rows] = torch.tanh(pre)
            h = new
            torch.testing.assert_close(ys[t], h)


def test_clockwork_default_periods_and_bad_options():
    cell = ClockworkCell(N_IN, 8)
    assert cell.periods == (1, 2, 4, 8)
    assert ClockworkCell(N_IN, 6, num_groups=3).periods == (1, 2, 4)
    with pytest.raises(ValueError, match="divisible"):
        ClockworkCell(N_IN, 6)
    with pytest.raises(ValueError, match="divisible"):
        ClockworkCell(N_IN, 7, periods=(1, 2))
    for bad in ((2, 1), (1, 1, 2), (0, 1), (1, 2.5), ()):
        with pytest.raises(ValueError, match="periods"):
            ClockworkCell(N_IN, 6, periods=bad)


# --------------------------------------------------------------------------- Skip


def elman_step(c, x, h):
    return torch.tanh(x @ c.weight_ih.T + c.bias_ih + h @ c.weight_hh.T + c.bias_hh)


@pytest.mark.parametrize("delay", [1, 3])
def test_skip_gradcheck(delay):
    torch.manual_seed(12)
    cell = SkipCell.build(ElmanCell, N_IN, H, delay, dtype=F64)
    gradcheck_cell(cell, randn(T, B, N_IN), random_state(cell, B))


@pytest.mark.parametrize("delay", [1, 2, 3])
def test_skip_matches_hand_loop(delay):
    torch.manual_seed(13)
    cell = SkipCell.build(ElmanCell, N_IN, H, delay, dtype=F64)
    assert (cell.input_size, cell.cell.input_size, cell.output_size) == (N_IN, N_IN + H, H)
    steps = 7
    xs = randn(steps, B, N_IN)
    ys, (h_last, history) = run(cell, xs, cell.init_state(B))
    with torch.no_grad():
        outs, h = [], torch.zeros(B, H, dtype=F64)
        for t in range(steps):
            y_skip = outs[t - delay] if t >= delay else torch.zeros(B, H, dtype=F64)
            h = elman_step(cell.cell, torch.cat([xs[t], y_skip], -1), h)
            outs.append(h)
        torch.testing.assert_close(ys, torch.stack(outs))
        torch.testing.assert_close(history, torch.stack(outs[-delay:], 1))
        torch.testing.assert_close(h_last, outs[-1])


def test_skip_depends_on_delayed_output():
    """Feeding a different y_{t-d} (history[:, 0]) changes the step exactly as the
    skip weights predict, and the other history slots are not read."""
    torch.manual_seed(14)
    d = 3
    cell = SkipCell.build(ElmanCell, N_IN, H, d, dtype=F64)
    x, h = randn(B, N_IN), randn(B, H, seed=2)
    hist = randn(B, d, H, seed=3)
    hist2 = hist.clone()
    hist2[:, 1:] = randn(B, d - 1, H, seed=4)
    with torch.no_grad():
        y, (_, new_hist) = cell(x, (h, hist))
        y2, _ = cell(x, (h, hist2))
        torch.testing.assert_close(y, y2)  # only history[:, 0] is read
        torch.testing.assert_close(y, elman_step(cell.cell, torch.cat([x, hist[:, 0]], -1), h))
        torch.testing.assert_close(new_hist, torch.cat([hist[:, 1:], y[:, None]], 1))


def test_skip_wraps_jordan_and_clockwork():
    torch.manual_seed(15)
    jordan = SkipCell.build(JordanCell, N_IN, H, 2, output_size=N_OUT, dtype=F64)
    assert (jordan.input_size, jordan.cell.input_size, jordan.output_size) == (
        N_IN,
        N_IN + N_OUT,
        N_OUT,
    )
    assert jordan.recurrent_weights == ("cell.weight_yh",)
    assert jordan.get_parameter(jordan.recurrent_weights[0]) is jordan.cell.weight_yh
    clock = SkipCell(ClockworkCell(N_IN + H, H, periods=(1, 2), dtype=F64), delay=2)
    state = clock.init_state(B, dtype=F64)
    assert [s.dtype for s in state] == [F64, torch.long, F64]
    y, (_, t, hist) = clock(randn(B, N_IN), state)
    assert torch.equal(t, torch.ones(B, dtype=torch.long))
    torch.testing.assert_close(hist[:, 1], y)


def test_skip_bad_options_raise():
    with pytest.raises(ValueError, match="input_size = n_x"):
        SkipCell(ElmanCell(H, H), 1)
    with pytest.raises(ValueError, match="input_size = n_x"):
        SkipCell(ElmanCell(N_IN, H), 1)
    with pytest.raises(ValueError, match="delay"):
        SkipCell(ElmanCell(N_IN + H, H), 0)
    with pytest.raises(TypeError):
        SkipCell(torch.nn.Linear(3, 3), 1)


# --------------------------------------------------------------------------- init_state


@pytest.mark.parametrize(
    ("make", "shapes", "dtypes"),
    [
        (lambda: JordanCell(N_IN, H, N_OUT), [(B, N_OUT)], [F64]),
        (lambda: LeakyCell(N_IN, H), [(B, H)], [F64]),
        (lambda: LeakyCell(N_IN, H, learn_alpha=True), [(B, H)], [F64]),
        (lambda: ClockworkCell(N_IN, H, periods=PERIODS), [(B, H), (B,)], [F64, torch.long]),
        (lambda: SkipCell.build(ElmanCell, N_IN, H, 3), [(B, H), (B, 3, H)], [F64, F64]),
        (
            lambda: SkipCell(ClockworkCell(N_IN + H, H, periods=PERIODS), 2),
            [(B, H), (B,), (B, 2, H)],
            [F64, torch.long, F64],
        ),
    ],
)
def test_init_state(make, shapes, dtypes):
    cell = make()
    state = cell.init_state(B, dtype=F64)
    assert isinstance(state, tuple)
    assert [tuple(s.shape) for s in state] == shapes
    assert [s.dtype for s in state] == dtypes
    assert all(torch.count_nonzero(s) == 0 for s in state)
    # the default follows the parameters' dtype, counters stay long
    default = cell.init_state(B)
    assert [s.dtype for s in default] == [
        torch.long if dt == torch.long else torch.float32 for dt in dtypes
    ]
