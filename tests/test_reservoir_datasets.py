"""Generated series (Mackey-Glass, NARMA-10, Lorenz) and the hyperparameter search."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnnkit.reservoir import EchoStateNetwork, datasets, nrmse
from rnnkit.reservoir.datasets import lorenz, mackey_glass, narma10, scale_to_unit
from rnnkit.reservoir.search import SearchResult, Trial, grid_points, search

PNG = b"\x89PNG\r\n\x1a\n"

# ------------------------------------------------------------------- Mackey-Glass


def test_mackey_glass_is_the_usual_series():
    x = mackey_glass(4000)
    assert x.shape == (4000, 1) and x.dtype == np.float64
    # tau = 17: chaotic oscillation in about [0.4, 1.3] (Mackey & Glass 1977's figure).
    assert 0.38 < x.min() < 0.45 and 1.28 < x.max() < 1.35
    # Dominant quasi-period of about 50 time units.
    centred = x[:, 0] - x.mean()
    power = np.abs(np.fft.rfft(centred)) ** 2
    freq = np.fft.rfftfreq(len(centred))
    period = 1 / freq[1:][np.argmax(power[1:])]
    assert 45 < period < 56
    # Chaotic, not periodic: no lag up to 300 repeats the series.
    ac = [np.corrcoef(centred[:-lag], centred[lag:])[0, 1] for lag in range(30, 300)]
    assert max(ac) < 0.95


def test_mackey_glass_is_deterministic_and_seeded():
    np.testing.assert_array_equal(mackey_glass(300), mackey_glass(300))
    np.testing.assert_array_equal(mackey_glass(300, seed=1), mackey_glass(300, seed=1))
    assert not np.allclose(mackey_glass(300, seed=1), mackey_glass(300, seed=2))
    # A seed changes the trajectory, not the attractor.
    assert mackey_glass(2000, seed=3).min() > 0.35 and mackey_glass(2000, seed=3).max() < 1.4
    # discard drops the first samples of the same trajectory.
    np.testing.assert_array_equal(mackey_glass(100, discard=50), mackey_glass(150, discard=0)[50:])
    assert mackey_glass(5, discard=0)[0, 0] == 1.2  # starts at x0


def test_mackey_glass_integration_has_converged(monkeypatch):
    coarse = mackey_glass(200, discard=0)
    monkeypatch.setattr(datasets, "MG_SUBSTEPS", 40)  # h = 0.025 instead of 0.1
    fine = mackey_glass(200, discard=0)
    assert np.abs(coarse - fine).max() < 1e-3


def test_mackey_glass_with_a_delay_between_grid_points_stays_on_the_attractor():
    x = mackey_glass(2000, tau=17.05)  # tau / h not whole: interpolated delay
    assert x.min() > 0.35 and x.max() < 1.4


def test_mackey_glass_small_tau_settles_to_a_fixed_point():
    x = mackey_glass(300, tau=2)  # no chaos for small delays: x* = 1 for beta = 2 gamma
    assert abs(x[-1, 0] - 1.0) < 1e-3


def test_scale_to_unit_maps_to_minus_one_one_and_back():
    x = mackey_glass(500)
    scaled, (lo, hi) = scale_to_unit(x)
    assert scaled.min() == -1.0 and scaled.max() == 1.0
    assert (lo, hi) == (x.min(), x.max())
    np.testing.assert_allclose((scaled + 1) * (hi - lo) / 2 + lo, x, rtol=1e-12)
    with pytest.raises(ValueError, match="constant"):
        scale_to_unit(np.ones(5))


# ------------------------------------------------------------------------ NARMA-10


def test_narma10_follows_the_recursion():
    u, y = narma10(600, seed=4)
    assert u.shape == y.shape == (600, 1)
    u, y = u[:, 0], y[:, 0]
    assert u.min() >= 0 and u.max() <= 0.5
    expected = [0.0]
    for t in range(599):
        past = sum(expected[t - i] for i in range(10) if t - i >= 0)
        drive = 1.5 * u[t - 9] * u[t] if t >= 9 else 0.0
        expected.append(0.3 * expected[t] + 0.05 * expected[t] * past + drive + 0.1)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-15)
    assert 0.1 < y[100:].mean() < 0.6  # the usual level of the series


def test_narma10_is_seeded():
    np.testing.assert_array_equal(narma10(50, seed=1)[0], narma10(50, seed=1)[0])
    assert not np.array_equal(narma10(50, seed=1)[0], narma10(50, seed=2)[0])


# -------------------------------------------------------------------------- Lorenz


def test_lorenz_stays_on_the_attractor():
    xyz = lorenz(5000)
    assert xyz.shape == (5000, 3) and xyz.dtype == np.float64
    np.testing.assert_array_equal(xyz[0], [1, 1, 1])
    tail = xyz[1000:]
    assert np.abs(tail[:, 0]).max() < 25 and np.abs(tail[:, 1]).max() < 32
    assert tail[:, 2].min() > 0 and tail[:, 2].max() < 50
    assert (tail.std(axis=0) > 5).all()  # still moving: not a fixed point
    assert (tail[:, 0] > 5).any() and (tail[:, 0] < -5).any()  # visits both wings


def test_lorenz_matches_one_hand_rk4_step():
    def f(s):
        x, y, z = s
        return np.array([10 * (y - x), x * (28 - z) - y, x * y - 8 / 3 * z])

    s, dt = np.array([1.0, 2.0, 3.0]), 0.01
    k1 = f(s)
    k2 = f(s + dt / 2 * k1)
    k3 = f(s + dt / 2 * k2)
    k4 = f(s + dt * k3)
    np.testing.assert_allclose(
        lorenz(2, x0=(1, 2, 3))[1], s + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), rtol=1e-14
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mackey_glass(0), "n_steps must be an integer >= 1"),
        (lambda: mackey_glass(10, tau=0.5), "tau must be at least dt"),
        (lambda: mackey_glass(10, discard=-1), "discard must be"),
        (lambda: mackey_glass(10, x0=-1), "x0 must be a positive"),
        (lambda: narma10(2.5), "n_steps must be an integer"),
        (lambda: lorenz(10, dt=0), "dt must be a positive"),
        (lambda: lorenz(10, x0=(1, 2)), "x0 must be three"),
    ],
)
def test_bad_arguments_say_what_to_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -------------------------------------------------------------------------- search


def bowl(params: dict) -> float:
    """A known minimum at ridge = 1e-4, sr = 1 (module level: picklable for workers)."""
    return (math.log10(params["ridge"]) + 4) ** 2 + (params["sr"] - 1.0) ** 2


def test_grid_enumerates_the_full_product():
    space = {"ridge": [1e-6, 1e-4, 1e-2], "sr": [0.5, 1.0], "units": [10]}
    result = search(bowl, space, method="grid", workers=1)
    seen = [(t.params["ridge"], t.params["sr"], t.params["units"]) for t in result.trials]
    assert len(seen) == 6 == len(set(seen))
    assert set(seen) == {(r, s, 10) for r in space["ridge"] for s in space["sr"]}
    assert result.best.params == {"ridge": 1e-4, "sr": 1.0, "units": 10}
    assert result.best.score == 0.0
    assert len(grid_points({"a": [1, 2], "b": [3, 4, 5]})) == 6


def test_random_search_is_seeded_and_within_the_space():
    space = {"ridge": (1e-8, 1e-1, "log"), "sr": (0.1, 2.0, "linear"), "units": (50, 800, "log")}
    a = search(bowl, space, n_trials=15, seed=3, workers=1)
    b = search(bowl, space, n_trials=15, seed=3, workers=1)
    c = search(bowl, space, n_trials=15, seed=4, workers=1)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.score for t in a.trials] == [t.score for t in b.trials]
    assert [t.params for t in a.trials] != [t.params for t in c.trials]
    for t in a.trials:
        assert 1e-8 <= t.params["ridge"] <= 1e-1 and 0.1 <= t.params["sr"] <= 2.0
        assert isinstance(t.params["units"], int) and 50 <= t.params["units"] <= 800
    # Log draws spread over the decades, not bunched at the top.
    exponents = [math.log10(t.params["ridge"]) for t in a.trials]
    assert min(exponents) < -5 and max(exponents) > -4


def test_best_has_the_lowest_score_and_the_table_is_sorted():
    result = search(bowl, {"ridge": (1e-8, 1.0, "log"), "sr": [0.5, 1.0, 1.5]}, n_trials=12)
    assert result.best.score == min(t.score for t in result.trials)
    table = result.table().splitlines()
    assert table[0] == "| rank | score | ridge | sr | seconds |"
    assert table[1] == "| --- | --- | --- | --- | --- |"
    scores = [float(line.split("|")[2]) for line in table[2:]]
    assert len(scores) == 12 and scores == sorted(scores)


def test_non_finite_scores_rank_last():
    result = SearchResult(
        [Trial({"a": 1}, float("nan"), 0.0), Trial({"a": 2}, 2.0, 0.0)], {"a": [1, 2]}
    )
    assert result.best.params == {"a": 2}
    assert result.table().splitlines()[-1].startswith("| 2 | nan | 1 |")


def test_parallel_equals_serial():
    space = {"ridge": (1e-8, 1.0, "log"), "sr": (0.1, 2.0, "linear")}
    serial = search(bowl, space, n_trials=8, seed=5, workers=1)
    parallel = search(bowl, space, n_trials=8, seed=5, workers=2)
    assert [t.params for t in serial.trials] == [t.params for t in parallel.trials]
    assert [t.score for t in serial.trials] == [t.score for t in parallel.trials]


def test_plot_is_written(tmp_path):
    result = search(bowl, {"ridge": (1e-8, 1.0, "log"), "sr": [0.5, 1.0]}, n_trials=6)
    result.plot(tmp_path / "search.png")
    assert (tmp_path / "search.png").read_bytes()[:8] == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["search.png"]  # no temporary left


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"space": {}}, "space must be a non-empty dict"),
        ({"space": {"sr": []}}, "empty"),
        ({"space": {"sr": (1, 0, "linear")}}, "low must be below high"),
        ({"space": {"sr": (0, 1, "log")}}, "log range needs low > 0"),
        ({"space": {"sr": (0.1, 1, "cubic")}}, "scale must be 'log' or 'linear'"),
        ({"space": {"sr": 1.0}}, "give a list of values"),
        ({"space": {"sr": (0.1, 1, "log")}, "method": "grid"}, "grid search needs a list"),
        ({"space": {"sr": [1, 2]}, "method": "grid", "n_trials": 5}, "all 2 combinations"),
        ({"space": {"sr": [1]}, "method": "bayes"}, "method must be"),
        ({"space": {"sr": [1]}, "workers": 0}, "workers must be"),
        ({"space": {"sr": [1]}, "n_trials": 0}, "n_trials must be"),
    ],
)
def test_search_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        search(bowl, **kwargs)


def test_search_over_esn_hyperparameters_with_a_data_spec(tmp_path):
    series, _ = scale_to_unit(mackey_glass(1300))
    data = ((series[:999], series[1:1000]), (series[1000:-1], series[1001:]))
    space = {"units": [30, 60], "ridge": (1e-9, 1e-1, "log")}
    serial = search(data, space, n_trials=4, seed=1, workers=1, washout=50)
    parallel = search(data, space, n_trials=4, seed=1, workers=2, washout=50)
    assert [t.score for t in serial.trials] == [t.score for t in parallel.trials]
    best = serial.best
    assert best.score < 0.05  # a one-step Mackey-Glass forecast is easy for any of them
    # The score is the test NRMSE of the network the params describe (seeded by the search).
    model = EchoStateNetwork(**best.params, seed=1)
    model.fit(series[:999], series[1:1000], washout=50)
    expected = nrmse(series[1051:], model.predict(series[1000:-1])[50:])
    assert best.score == pytest.approx(expected, rel=1e-9)  # threads: last-bit rounding
    serial.plot(tmp_path / "esn.png")
    assert (tmp_path / "esn.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="'radius' is not an EchoStateNetwork setting"):
        search(data, {"radius": [1.0]})


def test_narma10_says_when_a_draw_diverges():
    with pytest.raises(ValueError, match=r"diverged with seed=4 .* use another seed"):
        narma10(10_000, seed=4)  # one of the few draws the recursion does not survive
