"""The Forecaster: config checks, direct and closed-loop forecasts, Gaussian NLL, intervals."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
import torch

from rnnkit.data.windows import Scaler, make_windows
from rnnkit.models.forecaster import Forecaster, ForecasterConfig, gaussian_nll

pytestmark = pytest.mark.usefixtures("one_thread")


def model(seed=0, **settings) -> Forecaster:
    torch.manual_seed(seed)
    settings = {"n_inputs": 1, "n_targets": 1, "window": 6, "hidden_size": 8, **settings}
    return Forecaster(ForecasterConfig(**settings)).eval()


# ------------------------------------------------------------------------- config


def test_config_checks():
    with pytest.raises(ValueError, match="use direct mode with covariates"):
        ForecasterConfig(n_inputs=3, n_targets=1, mode="autoregressive")
    with pytest.raises(ValueError, match=r"n_targets \(2\) exceeds n_inputs \(1\)"):
        ForecasterConfig(n_inputs=1, n_targets=2)
    with pytest.raises(ValueError, match="mode must be 'direct' or 'autoregressive'"):
        ForecasterConfig(mode="recursive")
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        ForecasterConfig(horizon=0)
    with pytest.raises(ValueError, match="layer_norm is available for cell='lstm' only"):
        ForecasterConfig(cell="gru", layer_norm=True)
    cfg = ForecasterConfig(n_inputs=2, n_targets=1, window=12, horizon=3, probabilistic=True)
    assert ForecasterConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown forecaster setting"):
        ForecasterConfig.from_dict({"horizn": 3})


# ------------------------------------------------------------------------- direct


def test_direct_forward_is_last_state_through_the_head():
    m = model(n_inputs=2, n_targets=1, horizon=4)
    x = torch.randn(5, 6, 2)
    mean, var = m(x)
    assert var is None and mean.shape == (5, 4, 1)
    y, _ = m.rnn.run(x.transpose(0, 1), None, None)  # (L, B, H)
    by_hand = y[-1] @ m.head.weight.T + m.head.bias  # (B, horizon)
    torch.testing.assert_close(mean[:, :, 0], by_hand)
    f, _ = m.forecast(x, 2)
    torch.testing.assert_close(f, mean[:, :2])
    with pytest.raises(ValueError, match="forecasts at most its horizon"):
        m.forecast(x, 5)


def test_direct_probabilistic_variance_is_softplus():
    m = model(horizon=3, probabilistic=True)
    x = torch.randn(4, 6, 1)
    mean, var = m(x)
    y, _ = m.rnn.run(x.transpose(0, 1), None, None)
    raw = m.head(y[-1])  # (B, 2 * horizon): means, then raw variances
    torch.testing.assert_close(mean[:, :, 0], raw[:, :3])
    torch.testing.assert_close(var[:, :, 0], torch.nn.functional.softplus(raw[:, 3:]) + 1e-6)


# ----------------------------------------------------------------- autoregressive


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_closed_loop_equals_stepping_by_hand(cell):
    m = model(cell=cell, mode="autoregressive", horizon=3, n_inputs=2, n_targets=2)
    x = torch.randn(3, 6, 2)
    f, _ = m.forecast(x, 7)
    # By hand: the whole sequence so far, from the zero state, and its last one-step forecast.
    seq = x
    for step in range(7):
        mean, _ = m(seq)  # (B, T, K): one step ahead at every step
        torch.testing.assert_close(f[:, step], mean[:, -1], rtol=1e-5, atol=1e-6)
        seq = torch.cat([seq, mean[:, -1:]], dim=1)


def test_closed_loop_with_window_norm_uses_the_window_statistics():
    m = model(mode="autoregressive", window_norm=True)
    x = 3.0 + 2.0 * torch.randn(2, 6, 1)
    f, _ = m.forecast(x, 4)
    mu = x.mean(dim=1, keepdim=True)
    sd = (x.var(dim=1, unbiased=False, keepdim=True) + 1e-2).sqrt()
    seq = (x - mu) / sd
    for step in range(4):
        y, _ = m.rnn.run(seq.transpose(0, 1), None, None)
        nxt = m.head(y[-1])  # (B, 1) normalised
        torch.testing.assert_close(f[:, step], nxt * sd[:, 0] + mu[:, 0], rtol=1e-5, atol=1e-6)
        seq = torch.cat([seq, nxt[:, None]], dim=1)


def test_sample_paths_feed_back_their_draws():
    m = model(mode="autoregressive", probabilistic=True)
    x = torch.randn(2, 6, 1)
    paths = m.sample_paths(x, 4, n_paths=3, seed=7)  # (P, B, steps, K)
    assert torch.equal(paths, m.sample_paths(x, 4, n_paths=3, seed=7))
    assert not torch.equal(paths, m.sample_paths(x, 4, n_paths=3, seed=8))
    generator = torch.Generator().manual_seed(7)
    seq = x.repeat(3, 1, 1)  # path p of window b at p * B + b
    flat = paths.reshape(6, 4, 1)
    for step in range(4):
        mean, var = m(seq)
        eps = torch.randn((6, 1), generator=generator)
        torch.testing.assert_close(flat[:, step], mean[:, -1] + var[:, -1].sqrt() * eps)
        seq = torch.cat([seq, flat[:, step : step + 1]], dim=1)


# --------------------------------------------------------------------------- loss


def test_gaussian_nll_matches_the_formula_and_torch():
    mean = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    var = torch.tensor([[1.0, 0.25], [4.0, 0.5]])
    y = torch.tensor([[0.5, 1.0], [0.0, 0.0]])
    terms = [
        0.5 * (math.log(2 * math.pi) + math.log(v) + (t - m) ** 2 / v)
        for m, v, t in zip(mean.flatten(), var.flatten(), y.flatten(), strict=True)
    ]
    assert float(gaussian_nll(mean, var, y)) == pytest.approx(sum(terms) / 4)
    ref = torch.nn.functional.gaussian_nll_loss(mean, y, var, full=True)
    assert float(gaussian_nll(mean, var, y)) == pytest.approx(float(ref))


@torch.no_grad()
def test_loss_is_mse_or_nll_with_step_weights():
    m = model(mode="autoregressive")
    x, y = torch.randn(2, 6, 1), torch.randn(2, 6, 1)
    mean, _ = m(x)
    assert float(m.loss(x, y)) == pytest.approx(float(((y - mean) ** 2).mean()))
    weight = torch.zeros(2, 6)
    weight[0, 4:] = 1.0  # only two steps of the first window count
    expected = ((y - mean)[0, 4:] ** 2).mean()
    assert float(m.loss(x, y, weight)) == pytest.approx(float(expected))
    p = model(horizon=2, probabilistic=True)
    xd, yd = torch.randn(3, 6, 1), torch.randn(3, 2, 1)
    mean, var = p(xd)
    assert float(p.loss(xd, yd)) == pytest.approx(float(gaussian_nll(mean, var, yd)))


# ------------------------------------------------------------------------ predict


def test_predict_works_in_the_data_units():
    m = model(horizon=3, probabilistic=True)
    series = 100.0 + 10.0 * np.sin(np.arange(50) / 3.0)
    m.scaler = Scaler.fit(series[:40, None], ["y"])
    out = m.predict(series, level=0.9)
    z = torch.tensor(m.scaler.transform(series[-6:, None]), dtype=torch.float32)[None]
    mean, var = m(z)
    expected = m.scaler.inverse(mean[0].double().detach().numpy())
    np.testing.assert_allclose(out.mean, expected, rtol=1e-6)
    half = NormalDist().inv_cdf(0.95) * var[0].sqrt().double().detach().numpy() * m.scaler.std
    np.testing.assert_allclose(out.upper - out.mean, half, rtol=1e-5)
    np.testing.assert_allclose(out.mean - out.lower, half, rtol=1e-5)
    assert out.level == 0.9
    with pytest.raises(ValueError, match="reads the last 6 rows; the series has 4"):
        m.predict(series[:4])
    with pytest.raises(ValueError, match=r"reads 1 column\(s\) \(y\), the series has 2"):
        m.predict(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="level must be in"):
        m.predict(series, level=80)
    many = m.predict_many([series[:20], series], 2)
    np.testing.assert_allclose(many[1], out.mean[:2], rtol=1e-6)


# ------------------------------------------------------------ intervals, calibrated


def _fit(m: Forecaster, x, y, steps: int) -> None:
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    m.train()
    for _ in range(steps):
        rows = torch.randint(0, len(x), (64,), generator=generator)
        opt.zero_grad()
        m.loss(x[rows], y[rows]).backward()
        opt.step()
    m.eval()


def test_intervals_cover_the_right_fraction_of_a_gaussian_ar1():
    """y_t = 0.8 y_{t-1} + 0.5 e_t: one step ahead N(0.8 y, 0.25), two ahead variance 0.41."""
    phi, sigma = 0.8, 0.5
    rng = np.random.default_rng(0)
    y = np.zeros(6000)
    for t in range(1, len(y)):
        y[t] = phi * y[t - 1] + sigma * rng.normal()
    scaler = Scaler.fit(y[:4000, None], ["y"])
    z = scaler.transform(y[:, None])
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    z80 = NormalDist().inv_cdf(0.9)

    # Direct, one step: mean ± z sigma.
    direct = model(horizon=1, window=4, probabilistic=True)
    train = make_windows(z, z, window=4, horizon=1, stop=4000)
    _fit(direct, as_t(train.x), as_t(train.y), 400)
    test = make_windows(z, z, window=4, horizon=1, start=4000)
    with torch.no_grad():
        mean, var = direct(as_t(test.x))
    sd = var.sqrt().numpy()[:, 0, 0] * scaler.std[0]
    truth = scaler.inverse(test.y[:, 0])[:, 0]
    centre = scaler.inverse(mean.numpy()[:, 0].astype(np.float64))[:, 0]
    inside = np.abs(truth - centre) <= z80 * sd
    assert 0.76 <= inside.mean() <= 0.84
    assert np.median(sd) == pytest.approx(sigma, rel=0.1)

    # Autoregressive: the spread of sample paths two steps ahead.
    ar = model(mode="autoregressive", window=4, probabilistic=True)
    train = make_windows(z, z, window=4, horizon=1, mode="autoregressive", stop=4000)
    _fit(ar, as_t(train.x), as_t(train.y), 400)
    origins = np.arange(4004, 5990)
    x = as_t(np.stack([z[o - 4 : o] for o in origins]))
    with torch.no_grad():
        paths = ar.sample_paths(x, 2, n_paths=400, seed=0)  # (P, N, 2, 1)
    spread = paths[:, :, 1, 0].std(dim=0).median().item() * scaler.std[0]
    assert spread == pytest.approx(sigma * math.sqrt(1 + phi**2), rel=0.12)
    lo, hi = torch.quantile(paths[:, :, 1, 0], torch.tensor([0.1, 0.9]), dim=0).numpy()
    truth = z[origins + 1, 0]
    assert 0.76 <= np.mean((truth >= lo) & (truth <= hi)) <= 0.84
