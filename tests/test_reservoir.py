"""Echo state networks: reservoir weights and update, ridge and RLS readouts, the ESN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit.reservoir import RLS, EchoStateNetwork, Reservoir, Ridge, nrmse
from rnnkit.reservoir.reservoir import numba_available

BACKENDS = [
    "torch",
    pytest.param(
        "numba", marks=pytest.mark.skipif(not numba_available(), reason="numba is not installed")
    ),
]
NP_ACTIVATIONS = {
    "tanh": np.tanh,
    "identity": lambda a: a,
    "relu": lambda a: np.maximum(a, 0.0),
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
}


def reference_run(res: Reservoir, u: np.ndarray, x0: np.ndarray, fb=None) -> np.ndarray:
    """The leaky update written out step by step in NumPy, one sequence ``u (T, I)``."""
    W, W_in, bias, W_fb = (
        res.get_buffer(n).double().numpy() for n in ("W", "W_in", "bias", "W_fb")
    )
    f, x, out = NP_ACTIVATIONS[res.activation], x0.copy(), []
    for t in range(u.shape[0]):
        pre = W_in @ u[t] + W @ x + bias
        if fb is not None:
            pre = pre + W_fb @ fb[t]
        x = (1 - res.lr) * x + res.lr * f(pre)
        out.append(x)
    return np.stack(out)


# ---------------------------------------------------------------------------- reservoir
@pytest.mark.parametrize(
    ("units", "connectivity", "seed"),
    [(1, 1.0, 0), (3, 0.1, 1), (10, 0.5, 2), (50, 0.1, 3), (200, 0.05, 4), (200, 1.0, 5)],
)
def test_spectral_radius_is_exactly_sr(units, connectivity, seed):
    sr = 0.9 + seed * 0.1
    res = Reservoir(2, units, sr=sr, connectivity=connectivity, seed=seed)
    eig = np.linalg.eigvals(res.W.numpy())  # independent of the torch eigensolver used inside
    assert abs(np.abs(eig).max() - sr) < 1e-10
    assert abs(res.spectral_radius() - sr) < 1e-10
    density = (res.W != 0).double().mean().item()
    if units == 200:
        assert abs(density - connectivity) < 0.01  # Bernoulli(connectivity) entries


def test_weights_follow_the_documented_distributions():
    res = Reservoir(4, 300, input_scaling=0.5, bias_scaling=0.2, input_connectivity=0.3, seed=0)
    w_in = res.W_in[res.W_in != 0]
    assert w_in.abs().max() <= 0.5 and abs((res.W_in != 0).double().mean().item() - 0.3) < 0.03
    assert res.bias.abs().max() <= 0.2 and (res.bias != 0).all()
    assert (res.W_in != 0).any(dim=0).all()  # every input reaches a unit
    assert res.W.dtype == torch.float64 and not any(True for _ in res.parameters())
    again = Reservoir(4, 300, input_scaling=0.5, bias_scaling=0.2, input_connectivity=0.3, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(res.buffers(), again.buffers(), strict=True))
    other = Reservoir(4, 300, seed=1)
    assert not torch.equal(res.W, other.W)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", [1, 3])
def test_update_matches_the_hand_written_formula(backend, batch):
    res = Reservoir(
        2, 60, sr=1.1, lr=0.4, connectivity=0.2, input_connectivity=0.5, seed=7, backend=backend
    )
    rng = np.random.default_rng(0)
    u = rng.standard_normal((40, batch, 2))
    x0 = rng.standard_normal((batch, 60)) * 0.1
    states, final = res.run(torch.from_numpy(u), torch.from_numpy(x0))
    assert states.shape == (40, batch, 60) and final.shape == (batch, 60)
    for b in range(batch):
        expected = reference_run(res, u[:, b], x0[b])
        np.testing.assert_allclose(states[:, b].numpy(), expected, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(final.numpy(), states[-1].numpy())
    one, last = res.run(torch.from_numpy(u[:, 0]), torch.from_numpy(x0[0]))  # (T, I) layout
    assert one.shape == (40, 60) and last.shape == (60,)
    np.testing.assert_allclose(one.numpy(), states[:, 0].numpy(), rtol=0, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ["tanh", "identity", "relu", "sigmoid"])
def test_activations_and_feedback_match_the_formula(backend, activation):
    sr = 0.5 if activation in ("identity", "relu") else 1.25  # keep linear units bounded
    res = Reservoir(
        1,
        40,
        sr=sr,
        lr=0.7,
        feedback_size=2,
        feedback_scaling=0.3,
        activation=activation,
        seed=3,
        backend=backend,
    )
    rng = np.random.default_rng(1)
    u, fb = rng.standard_normal((30, 1)), rng.standard_normal((30, 2))
    states, _ = res.run(u, feedback=fb)
    expected = reference_run(res, u, np.zeros(40), fb)
    np.testing.assert_allclose(states.numpy(), expected, rtol=1e-13, atol=1e-13)


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
def test_compiled_loop_equals_torch_fallback_on_a_long_batch():
    kwargs = {"input_size": 3, "units": 150, "seed": 11, "noise": 0.0}
    fast, slow = Reservoir(**kwargs, backend="numba"), Reservoir(**kwargs, backend="torch")
    u = torch.randn(300, 8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a, b = fast.run(u)[0], slow.run(u)[0]
    assert (a - b).abs().max().item() < 1e-12
    assert Reservoir(**kwargs).use_numba(u)  # auto picks the compiled loop on the CPU


def test_batch_run_equals_each_sequence_alone():
    res = Reservoir(2, 80, seed=5)
    u = torch.randn(50, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    together, final = res.run(u)
    for b in range(5):
        alone, last = res.run(u[:, b])
        assert (together[:, b] - alone).abs().max().item() < 1e-14
        assert (final[b] - last).abs().max().item() < 1e-14


def test_noise_is_seeded_and_added_after_the_leak():
    u = torch.zeros(20, 1)
    a = Reservoir(1, 30, noise=0.1, seed=4).run(u)[0]
    b = Reservoir(1, 30, noise=0.1, seed=4).run(u)[0]
    quiet = Reservoir(1, 30, noise=0.0, seed=4).run(u)[0]
    assert torch.equal(a, b)
    assert 0.03 < (a - quiet).abs().max().item() < 1.0


def test_torch_backend_passes_gradients_to_the_inputs():
    res = Reservoir(2, 20, seed=0)
    u = torch.randn(10, 2, dtype=torch.float64, requires_grad=True)
    res.run(u)[0].sum().backward()
    assert u.grad is not None and u.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"sr": 0.0}, "sr"),
        ({"sr": -1.0}, "sr"),
        ({"lr": 0.0}, "lr"),
        ({"lr": 1.5}, "lr"),
        ({"connectivity": 0.0}, "connectivity"),
        ({"connectivity": 1.2}, "connectivity"),
        ({"input_connectivity": 0.0}, "input_connectivity"),
        ({"units": 0}, "units"),
        ({"noise": -0.1}, "noise"),
        ({"activation": "softplus"}, "activation"),
    ],
)
def test_bad_hyperparameters_name_the_parameter(kwargs, name):
    args = {"input_size": 1, "units": 10, **kwargs}
    with pytest.raises(ValueError, match=name) as info:
        Reservoir(**args)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=name):
        EchoStateNetwork(**kwargs)
    with pytest.raises(ValueError, match="input_size"):
        Reservoir(0, 10)


# ---------------------------------------------------------------------------- readouts
def _regression(n=300, features=12, outputs=3, seed=0, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, features, dtype=torch.float64, generator=g)
    A = torch.randn(outputs, features, dtype=torch.float64, generator=g)
    b = torch.randn(outputs, dtype=torch.float64, generator=g)
    Y = X @ A.T + b + noise * torch.randn(n, outputs, dtype=torch.float64, generator=g)
    return X, Y, A, b


@pytest.mark.parametrize("lam", [0.0, 1e-3, 2.5])
def test_ridge_equals_least_squares_on_the_augmented_system(lam):
    X, Y, _, _ = _regression()
    model = Ridge(ridge=lam).fit(X, Y)
    # min ||[X 1] Wᵀ - Y||² + λ||W_out||²  ==  lstsq of [[X, 1], [√λ I, 0]] against [[Y], [0]]
    n, f = X.shape
    top = torch.cat([X, torch.ones(n, 1, dtype=X.dtype)], 1)
    bottom = torch.cat(
        [lam**0.5 * torch.eye(f, dtype=X.dtype), torch.zeros(f, 1, dtype=X.dtype)], 1
    )
    rhs = torch.cat([Y, torch.zeros(f, Y.shape[1], dtype=X.dtype)])
    sol = torch.linalg.lstsq(torch.cat([top, bottom]), rhs, driver="gelsd").solution.T
    assert (model.W_out - sol[:, :-1]).abs().max().item() < 1e-8
    assert (model.bias - sol[:, -1]).abs().max().item() < 1e-8
    pred = model.predict(X)
    assert (pred - (X @ sol[:, :-1].T + sol[:, -1])).abs().max().item() < 1e-8


def test_ridge_without_bias_is_the_normal_equations():
    X, Y, _, _ = _regression(noise=0.5)
    model = Ridge(ridge=0.3, fit_bias=False).fit(X, Y)
    direct = torch.linalg.solve(X.T @ X + 0.3 * torch.eye(X.shape[1], dtype=X.dtype), X.T @ Y).T
    assert (model.W_out - direct).abs().max().item() < 1e-10
    assert torch.equal(model.bias, torch.zeros(3, dtype=torch.float64))


def test_streamed_statistics_equal_one_batch():
    X, Y, _, _ = _regression(n=500)
    whole = Ridge(ridge=1e-2).fit(X, Y)
    streamed = Ridge(ridge=1e-2)
    for chunk in (slice(0, 7), slice(7, 200), slice(200, 201), slice(201, 500)):
        streamed.partial_fit(X[chunk].numpy(), Y[chunk].numpy())  # NumPy chunks too
    streamed.solve()
    assert streamed.samples == 500
    assert (streamed.W_out - whole.W_out).abs().max().item() < 1e-10
    assert (streamed.bias - whole.bias).abs().max().item() < 1e-10
    with pytest.raises(ValueError, match="columns"):
        streamed.partial_fit(X[:, :5], Y)
    with pytest.raises(ValueError, match="ridge"):
        Ridge(ridge=-1.0)


def test_rls_converges_to_the_least_squares_solution():
    X, Y, A, _ = _regression(n=400, features=6, outputs=2, noise=0.0)
    Y = X @ A.T  # noiseless and without bias: RLS learns W x
    rls = RLS(6, 2, alpha=1e-6)
    for x, y in zip(X, Y, strict=True):
        rls.update(x, y)
    # after n samples RLS is exactly ridge with λ = alpha (no bias) ...
    ridge = Ridge(ridge=1e-6, fit_bias=False).fit(X, Y)
    assert (rls.W - ridge.W_out).abs().max().item() < 1e-8
    # ... which on a noiseless problem is the true map
    assert (rls.W - A).abs().max().item() < 1e-8
    assert (rls.predict(X[:3]) - Y[:3]).abs().max().item() < 1e-5
    error = rls.update(X[0], Y[0])
    assert error.abs().max().item() < 1e-5


def test_rls_with_forgetting_tracks_a_changed_map():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(600, 4, dtype=torch.float64, generator=g)
    A1, A2 = torch.randn(1, 4, generator=g).double(), torch.randn(1, 4, generator=g).double()
    rls = RLS(4, 1, alpha=1.0, forgetting=0.9)
    for t, x in enumerate(X):
        rls.update(x, (A1 if t < 300 else A2) @ x)
    assert (rls.W - A2).abs().max().item() < 1e-8
    with pytest.raises(ValueError, match="forgetting"):
        RLS(4, 1, forgetting=1.5)


# ---------------------------------------------------------------------------- the ESN
def _wave(n, phase=0.0):
    t = np.arange(n) * 0.1 + phase
    return (np.sin(t) + 0.5 * np.sin(0.31 * t))[:, None]  # (n, 1)


def test_delay_task_reaches_small_nrmse():
    u = np.random.default_rng(0).uniform(-1, 1, size=(2000, 1))
    target = np.concatenate([np.zeros((5, 1)), u[:-5]])  # y_t = u_{t-5}
    esn = EchoStateNetwork(units=200, sr=0.9, lr=0.9, input_scaling=0.5, ridge=1e-8, seed=0)
    esn.fit(u[:1500], target[:1500], washout=50)
    predicted = esn.predict(u[1500:])
    assert isinstance(predicted, np.ndarray) and predicted.shape == (500, 1)
    assert nrmse(target[1550:], predicted[50:]) < 1e-2
    assert esn.score(u[1500:], target[1500:], washout=50) == pytest.approx(
        nrmse(target[1550:], predicted[50:])
    )


def test_closed_loop_generation_follows_a_sine():
    y = np.sin(np.arange(2600) * 0.1)[:, None]
    esn = EchoStateNetwork(units=200, sr=0.9, lr=0.5, ridge=1e-9, seed=1)
    esn.fit(y[:2000], y[1:2001], washout=100)
    generated = esn.generate(50, warmup=y[2100:2400])
    assert generated.shape == (50, 1)
    assert nrmse(y[2400:2450], generated) < 1e-2
    again = esn.generate(10)  # continues without a warmup
    assert nrmse(y[2450:2460], again) < 1e-2
    with pytest.raises(ValueError, match="as many outputs as inputs"):
        EchoStateNetwork(units=20, seed=0).fit(y[:100], np.hstack([y, y])[1:101]).generate(5)


def test_layouts_and_types_round_trip():
    esn = EchoStateNetwork(units=50, seed=2)
    batch = np.stack([_wave(120, p) for p in (0.0, 1.0, 2.0)])  # (B, T, 1)
    esn.fit(batch, 2 * batch, washout=10)
    out = esn.predict(batch)
    assert isinstance(out, np.ndarray) and out.shape == (3, 120, 1)
    tensor_out = esn.predict(torch.from_numpy(batch))
    assert isinstance(tensor_out, torch.Tensor) and tensor_out.dtype == torch.float64
    np.testing.assert_allclose(tensor_out.numpy(), out, rtol=0, atol=1e-12)
    ragged = [_wave(80), _wave(120, 1.0), _wave(80, 2.0)]
    listed = esn.predict(ragged)
    assert [a.shape for a in listed] == [(80, 1), (120, 1), (80, 1)]
    np.testing.assert_allclose(listed[1], out[1], rtol=0, atol=1e-12)
    alone = esn.predict(ragged[2])
    np.testing.assert_allclose(listed[2], alone, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="targets must match"):
        esn.fit(ragged, [_wave(80), _wave(80), _wave(80)])
    with pytest.raises(ValueError, match="washout"):
        esn.fit(ragged, ragged, washout=80)
    with pytest.raises(ValueError, match="features"):
        esn.predict(np.zeros((10, 2)))


def test_fit_on_ragged_list_equals_fit_on_each_group():
    seqs = [_wave(100, p) for p in (0.0, 0.5, 1.0)] + [_wave(150, 2.0)]
    a = EchoStateNetwork(units=40, ridge=1e-3, seed=3)
    a.fit(seqs, [s**2 for s in seqs], washout=5)
    b = EchoStateNetwork(units=40, ridge=1e-3, seed=3)  # the long one first: another order
    b.fit(seqs[::-1], [s**2 for s in seqs[::-1]], washout=5)
    probe = _wave(200, 3.0)
    np.testing.assert_allclose(a.predict(probe)[5:], b.predict(probe)[5:], rtol=0, atol=1e-8)
    # the same statistics streamed by hand through a Ridge, one sequence at a time
    ridge = Ridge(1e-3)
    for s in seqs:
        feats, _ = a._features(torch.from_numpy(s)[:, None], [None], None)
        ridge.partial_fit(feats[5:, 0], torch.from_numpy(s[5:] ** 2))
    ridge.solve()
    feats, _ = a._features(torch.from_numpy(probe)[:, None], [None], None)
    expected = ridge.predict(feats[5:, 0]).numpy()
    np.testing.assert_allclose(a.predict(probe)[5:], expected, rtol=0, atol=1e-8)


def test_predict_in_pieces_with_reset_false_equals_one_call():
    x = _wave(400)
    esn = EchoStateNetwork(units=60, seed=4).fit(x[:-1], x[1:])
    whole = esn.predict(x)
    first = esn.predict(x[:150])
    second = esn.predict(x[150:], reset=False)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="reset=False"):
        esn.predict(np.stack([x, x]), reset=False)


def test_deep_esn_feeds_each_layer_the_previous_states():
    x = _wave(600)
    esn = EchoStateNetwork(units=50, layers=3, seed=5).fit(x[:-1], x[1:], washout=20)
    assert len(esn.reservoirs) == 3 and esn.features == 3 * 50 + 1
    assert esn.readout.W_out.shape == (1, 151)
    u = torch.from_numpy(x[:30])
    s1, _ = esn.reservoirs[0].run(u)
    s2, _ = esn.reservoirs[1].run(s1)
    s3, _ = esn.reservoirs[2].run(s2)
    feats = torch.cat([s1, s2, s3, u], dim=1)
    expected = feats @ esn.readout.W_out.T + esn.readout.bias
    np.testing.assert_allclose(esn.predict(x[:30]), expected.numpy(), rtol=0, atol=1e-12)
    assert esn.score(x[300:-1], x[301:], washout=20) < 1e-2
    no_input = EchoStateNetwork(units=50, layers=2, input_to_readout=False, seed=5)
    assert no_input.fit(x[:-1], x[1:]).features == 100


def test_feedback_uses_teacher_forcing_then_its_own_outputs():
    y = np.sin(np.arange(1500) * 0.1)[:, None]
    u = np.cos(np.arange(1500) * 0.1)[:, None]
    esn = EchoStateNetwork(units=100, feedback=True, sr=0.8, ridge=1e-8, seed=6)
    esn.fit(u[:1000], y[:1000], washout=50)
    assert esn.reservoirs[0].feedback_size == 1
    predicted = esn.predict(u[1000:])
    assert nrmse(y[1050:], predicted[50:]) < 0.05
    # step by step by hand: y_{t-1} is the network's own previous output
    res, states, prev, outs = esn.reservoirs[0], None, torch.zeros(1, 1, dtype=torch.float64), []
    for t in range(20):
        ut = torch.from_numpy(u[1000 + t : 1001 + t])
        s, states = res.run(ut[:, None], states, prev[None])
        out = torch.cat([s[0], ut], 1) @ esn.readout.W_out.T + esn.readout.bias
        outs.append(out[0])
        prev = out
    np.testing.assert_allclose(predicted[:20], torch.stack(outs).numpy(), rtol=0, atol=1e-12)


def test_save_load_round_trip_predicts_identically(tmp_path):
    x = _wave(500)
    esn = EchoStateNetwork(units=80, layers=2, feedback=True, seed=7, dtype=torch.float64)
    esn.fit(x[:-1], x[1:], washout=10)
    path = tmp_path / "model" / "esn.safetensors"
    esn.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["esn.safetensors"]  # no temp left
    loaded = EchoStateNetwork.load(path)
    assert loaded.config == esn.config
    np.testing.assert_array_equal(loaded.predict(x[:200]), esn.predict(x[:200]))
    np.testing.assert_array_equal(loaded.generate(20, warmup=x[:50]), esn.generate(20, x[:50]))
    with pytest.raises(ValueError, match="not a file"):
        EchoStateNetwork.load(tmp_path / "missing.safetensors")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="damaged"):
        EchoStateNetwork.load(damaged)
    with pytest.raises(ValueError, match="not fitted"):
        EchoStateNetwork(units=10).save(tmp_path / "x.safetensors")


def test_nrmse():
    y = np.sin(np.arange(100) * 0.3)
    assert nrmse(y, y) == 0.0
    assert nrmse(y, np.full_like(y, y.mean())) == pytest.approx(1.0)
    assert nrmse(torch.from_numpy(y), y + 0.1) == pytest.approx(0.1 / y.std())
    with pytest.raises(ValueError, match="constant"):
        nrmse(np.ones(5), np.zeros(5))
    with pytest.raises(ValueError, match="size"):
        nrmse(y, y[:5])
