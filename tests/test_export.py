"""`rnnkit export`: ONNX and TorchScript files of trained runs, checked against PyTorch.

Each run is trained a few steps through the real CLI; its exported files are loaded in
onnxruntime / ``torch.jit.load`` and compared with the PyTorch model on random inputs of
several batch sizes and lengths, and the step form run in a loop is compared with the
sequence form.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.cli.classify import load_run as load_classifier
from rnnkit.cli.forecast import load_run as load_forecaster
from rnnkit.cli.lm import load_run as load_lm
from rnnkit.cli.main import main
from rnnkit.export import build_form
from rnnkit.export.to_onnx import export_onnx
from rnnkit.models.forecaster import Forecaster, ForecasterConfig
from rnnkit.models.language_model import LanguageModel, LMConfig

ort = pytest.importorskip("onnxruntime")

TOL = 1e-4  # float32 max abs error allowed against PyTorch
SIZES = [(1, 1), (2, 7), (4, 12)]  # (batch, steps)

pytestmark = pytest.mark.usefixtures("one_thread")


def session(path: Path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options)


def load_ts(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript, deprecated in 2.13
        return torch.jit.load(str(path))


def run_onnx(sess, **inputs) -> list[torch.Tensor]:
    feed = {k: v.numpy() for k, v in inputs.items()}
    return [torch.from_numpy(np.asarray(o)) for o in sess.run(None, feed)]


def max_err(got, want) -> float:
    return max(float((g - w).abs().max()) for g, w in zip(got, want, strict=True))


def export(run: Path, *args: str) -> int:
    return main(["export", str(run), *args])


def digest(run: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- language model


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    words = ["the cat", "a dog", "sat on", "the mat", "and ran", "away."]
    text = "\n".join(" ".join(rng.choice(words, 8)) for _ in range(60)) + "\n"
    root = tmp_path_factory.mktemp("lm")
    (root / "corpus.txt").write_text(text, encoding="utf-8")
    run = root / "run"
    assert main(["lm", "train", "--text", str(root / "corpus.txt"), "--out", str(run),
                 "--hidden-size", "8", "--num-layers", "2", "--embedding-size", "4",
                 "--batch-size", "4", "--seq-len", "8", "--max-steps", "3", "--no-progress",
                 "--sample-length", "0"]) == 0  # fmt: skip
    return run


def lm_reference(model, tokens, h, c):
    state = tuple((h[k], c[k]) for k in range(h.shape[0]))
    with torch.no_grad():
        logits, final = model(tokens, state)
    return [logits, torch.stack([s[0] for s in final]), torch.stack([s[1] for s in final])]


def lm_inputs(vocab_size: int, batch: int, steps: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab_size, (steps, batch), generator=g)
    h, c = torch.randn(2, 2, batch, 8, generator=g) * 0.5  # (L, B, H) each
    return tokens, h, c


def test_lm_onnx_sequence_and_step_match_pytorch(lm_run, capsys):
    before = digest(lm_run)
    assert export(lm_run, "--format", "onnx") == 0
    out = capsys.readouterr().out
    assert f"sequence form: {lm_run / 'model.onnx'}" in out
    assert f"step form: {lm_run / 'model_step.onnx'}" in out
    after = digest(lm_run)
    assert {p: d for p, d in after.items() if p in before} == before  # the run is untouched
    assert sorted(p.name for p in set(after) - set(before)) == [
        "model.onnx", "model.onnx.json", "model_step.onnx",
    ]  # fmt: skip

    model, vocab = load_lm(lm_run, "best")
    V = len(vocab)
    sidecar = json.loads((lm_run / "model.onnx.json").read_text())
    assert sidecar["task"] == "lm" and sidecar["format"] == "onnx"
    assert sidecar["vocab"]["file"] == "vocab.json" and sidecar["vocab"]["size"] == V
    seq_spec, step_spec = sidecar["forms"]["sequence"], sidecar["forms"]["step"]
    assert seq_spec["file"] == "model.onnx" and step_spec["file"] == "model_step.onnx"
    assert [i["name"] for i in step_spec["inputs"]] == ["token", "h", "c"]
    assert [o["shape"] for o in seq_spec["outputs"]] == [["T", "B", V], [2, "B", 8], [2, "B", 8]]
    assert [(s["input"], s["output"]) for s in step_spec["state"]] == [
        ("h", "h_out"), ("c", "c_out"),
    ]  # fmt: skip

    seq, step = session(lm_run / "model.onnx"), session(lm_run / "model_step.onnx")
    for batch, steps in SIZES:
        tokens, h, c = lm_inputs(V, batch, steps, seed=batch + steps)
        want = lm_reference(model, tokens, h, c)
        got = run_onnx(seq, tokens=tokens, h=h, c=c)
        assert max_err(got, want) <= TOL
        state = {"h": h, "c": c}
        for t in range(steps):  # the step form over the sequence: the same logits, same state
            logits, h_t, c_t = run_onnx(step, token=tokens[t], **state)
            assert max_err([logits], [got[0][t]]) <= TOL
            state = {"h": h_t, "c": c_t}
        assert max_err([state["h"], state["c"]], got[1:]) <= TOL


def test_lm_torchscript_matches_pytorch(lm_run, tmp_path, capsys):
    target = tmp_path / "exported" / "lm.pt"
    target.parent.mkdir()
    args = ["--format", "torchscript", "--output", str(target), "--checkpoint", "last"]
    assert export(lm_run, *args) == 0
    assert (tmp_path / "exported" / "lm_step.pt").is_file()
    sidecar = json.loads((tmp_path / "exported" / "lm.pt.json").read_text())
    assert Path(target.parent, sidecar["vocab"]["file"]).resolve() == lm_run / "vocab.json"
    assert sidecar["checkpoint"]["tag"] == "last" and sidecar["checkpoint"]["step"] == 3
    model, vocab = load_lm(lm_run, "last")
    seq, step = load_ts(target), load_ts(tmp_path / "exported" / "lm_step.pt")
    for batch, steps in SIZES:
        tokens, h, c = lm_inputs(len(vocab), batch, steps, seed=10 + batch)
        want = lm_reference(model, tokens, h, c)
        got = seq(tokens, h, c)
        assert max_err(got, want) <= TOL
        for t in range(steps):
            logits, h, c = step(tokens[t], h, c)
            assert max_err([logits], [want[0][t]]) <= TOL
        assert max_err([h, c], want[1:]) <= TOL


# ---------------------------------------------------------------- classifiers


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory) -> Path:
    """Rising and falling noisy sequences of 3 to 9 steps (short rows end early)."""
    rng = np.random.default_rng(1)
    lines = ["label," + ",".join(f"t{i}" for i in range(9))]
    for k in range(60):
        label = ("up", "down")[k % 2]
        n = int(rng.integers(3, 10))
        values = (0.3 if label == "up" else -0.3) * np.arange(n) + 0.1 * rng.standard_normal(n)
        lines.append(f"{label}," + ",".join([f"{v:.4f}" for v in values] + [""] * (9 - n)))
    path = tmp_path_factory.mktemp("data") / "trend.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train_classifier(csv: Path, run: Path, *extra: str) -> Path:
    assert main(["classify", "train", "--data", str(csv), "--out", str(run), "--max-steps", "3",
                 "--hidden-size", "6", "--batch-size", "16", "--no-progress",
                 *extra]) == 0  # fmt: skip
    return run


def padded(batch: int, steps: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, 1, generator=g)
    lengths = torch.randint(1, steps + 1, (batch,), generator=g)
    lengths[0] = steps  # the longest fills the batch
    return x, lengths


def test_classifier_forms_match_pytorch(series_csv, tmp_path, capsys):
    run = train_classifier(series_csv, tmp_path / "clf", "--cell", "gru", "--num-layers", "2",
                           "--pooling", "attention")  # fmt: skip
    assert export(run, "--format", "onnx") == 0
    assert export(run, "--format", "torchscript") == 0
    model, meta, _ = load_classifier(run)
    sidecar = json.loads((run / "model.onnx.json").read_text())
    assert sidecar["classes"] == ["down", "up"] == meta["classes"]
    step_spec = sidecar["forms"]["step"]
    assert [s["input"] for s in step_spec["state"]] == [
        "h", "pool_count", "pool_max", "pool_denom", "pool_sum",
    ]  # fmt: skip
    onnx_seq, onnx_step = session(run / "model.onnx"), session(run / "model_step.onnx")
    ts_seq, ts_step = load_ts(run / "model.pt"), load_ts(run / "model_step.pt")
    for batch, steps in SIZES:
        x, lengths = padded(batch, steps, seed=batch * steps)
        with torch.no_grad():
            want = model(x, lengths)
        assert max_err(run_onnx(onnx_seq, x=x, lengths=lengths), [want]) <= TOL
        assert max_err(ts_seq(x, lengths), [want]) <= TOL
        # Streaming: the logits after step L classify the first L steps.
        names = [s["input"] for s in step_spec["state"]]
        shapes = {i["name"]: i["shape"] for i in step_spec["inputs"]}
        zeros = [torch.zeros([batch if d == "B" else d for d in shapes[n]]) for n in names]
        onnx_state, ts_state = dict(zip(names, zeros, strict=True)), zeros
        onnx_last, ts_last = torch.zeros_like(want), torch.zeros_like(want)
        for t in range(steps):
            logits, *new = run_onnx(onnx_step, x=x[:, t], **onnx_state)
            onnx_state = dict(zip(names, new, strict=True))
            ts_logits, *ts_state = ts_step(x[:, t], *ts_state)
            ends = lengths == t + 1
            onnx_last[ends], ts_last[ends] = logits[ends], ts_logits[ends]
        assert max_err([onnx_last, ts_last], [want, want]) <= TOL


@pytest.fixture(scope="module")
def bidirectional_run(series_csv, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("bi") / "run"
    return train_classifier(series_csv, run, "--bidirectional", "--pooling", "mean")


def test_bidirectional_classifier_has_the_sequence_form_only(bidirectional_run, capsys):
    run = bidirectional_run
    capsys.readouterr()
    assert export(run, "--form", "step", "--format", "torchscript") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bidirectional classifier" in err and "--form sequence" in err
    assert not (run / "model_step.pt").exists() and not (run / "model.pt").exists()
    assert export(run, "--format", "torchscript") == 0  # default: the forms the model has
    assert "no step form" in capsys.readouterr().out
    assert not (run / "model_step.pt").exists()
    sidecar = json.loads((run / "model.pt.json").read_text())
    assert list(sidecar["forms"]) == ["sequence"]
    model, _, _ = load_classifier(run)
    seq = load_ts(run / "model.pt")
    for batch, steps in SIZES:
        x, lengths = padded(batch, steps, seed=7 + batch)
        with torch.no_grad():
            want = model(x, lengths)
        assert max_err(seq(x, lengths), [want]) <= TOL


@pytest.mark.slow
def test_bidirectional_classifier_onnx_matches_pytorch(bidirectional_run):
    run = bidirectional_run
    assert export(run, "--format", "onnx", "--form", "sequence") == 0
    model, _, _ = load_classifier(run)
    sess = session(run / "model.onnx")
    for batch, steps in SIZES:
        x, lengths = padded(batch, steps, seed=7 + batch)
        with torch.no_grad():
            want = model(x, lengths)
        assert max_err(run_onnx(sess, x=x, lengths=lengths), [want]) <= TOL


# ---------------------------------------------------------------- forecaster


@pytest.fixture(scope="module")
def forecast_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("forecast")
    t = np.arange(120)
    y = 10 + 5 * np.sin(2 * np.pi * t / 12) + 0.3 * np.random.default_rng(0).normal(size=120)
    rows = "\n".join(f"{v:.6f}" for v in y)
    (root / "series.csv").write_text("y\n" + rows + "\n", encoding="utf-8")
    run = root / "run"
    assert main(["forecast", "train", "--csv", str(root / "series.csv"), "--out", str(run),
                 "--target", "y", "--mode", "autoregressive", "--probabilistic",
                 "--window-norm", "--cell", "leaky", "--window", "8", "--horizon", "3",
                 "--hidden-size", "6", "--num-layers", "2",
                 "--max-steps", "3", "--every", "10", "--no-progress"]) == 0  # fmt: skip
    return run


def test_forecaster_forms_match_pytorch(forecast_run, capsys):
    run = forecast_run
    assert export(run, "--format", "onnx") == 0
    assert export(run, "--format", "torchscript") == 0
    model, meta = load_forecaster(run)
    sidecar = json.loads((run / "model.pt.json").read_text())
    assert sidecar["scaler"] == meta["scaler"] and sidecar["targets"] == ["y"]
    assert (run / sidecar["scaler_source"]).is_file()
    step_inputs = [i["name"] for i in sidecar["forms"]["step"]["inputs"]]
    assert step_inputs == ["x", "window_mean", "window_std", "h"]
    onnx_seq, onnx_step = session(run / "model.onnx"), session(run / "model_step.onnx")
    ts_seq, ts_step = load_ts(run / "model.pt"), load_ts(run / "model_step.pt")
    for batch, steps in [(1, 1), (2, 8), (5, 13)]:
        x = torch.randn(batch, steps, 1, generator=torch.Generator().manual_seed(steps))
        with torch.no_grad():
            want = model.forecast(x)  # closed loop over the horizon: (mean, var) (B, 3, 1)
        assert max_err(run_onnx(onnx_seq, x=x), want) <= TOL
        assert max_err(ts_seq(x), want) <= TOL
        # The step form: read the window, then feed each forecast back.
        mu = x.mean(1)
        sd = (x.var(1, unbiased=False) + 0.01).sqrt()
        h = torch.zeros(2, batch, 6)
        rows, ts_h, onnx_out, ts_out = list(x.unbind(1)), h, [], []
        for k in range(steps + 2):
            row = rows[k] if k < steps else onnx_out[-1][0]
            mean, var, h = run_onnx(onnx_step, x=row, window_mean=mu, window_std=sd, h=h)
            ts_row = rows[k] if k < steps else ts_out[-1][0]
            ts_mean, ts_var, ts_h = ts_step(ts_row, mu, sd, ts_h)
            if k >= steps - 1:  # the window is read: each output is a forecast
                onnx_out.append((mean, var))
                ts_out.append((ts_mean, ts_var))
        for out in (onnx_out, ts_out):
            path = [torch.stack([o[j] for o in out], dim=1) for j in (0, 1)]  # (B, 3, 1) each
            assert max_err(path, want) <= TOL


# ---------------------------------------------------------------- mistakes


def test_usage_errors_exit_2_with_one_line(lm_run, tmp_path, capsys):
    def assert_error(args, *words):
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rnnkit: error: ") and err.count("\n") == 1, err
        assert all(w in err for w in words), err

    assert_error([str(tmp_path / "nowhere"), "--format", "onnx"], "no such run directory")
    assert_error([str(tmp_path), "--format", "onnx"], "holds no checkpoint")
    assert_error([str(lm_run), "--format", "tflite"], "unknown --format 'tflite'", "onnx")
    assert_error([str(lm_run), "--format", "onnx", "--form", "all"], "unknown --form")
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    assert_error([str(lm_run), "--format", "onnx", "--output", str(blocker / "m.onnx")],
                 "cannot write", "is not a directory")  # fmt: skip
    assert_error([str(lm_run), "--format", "torchscript", "--output", str(tmp_path)],
                 "cannot write", "is a directory")  # fmt: skip
    assert not list(tmp_path.glob("*.pt*"))


# ---------------------------------------------------------------- every cell


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings",
    [
        {"cell": "lstm", "layer_norm": True},
        {"cell": "gru"},
        {"cell": "rnn", "embedding_size": None},  # one-hot inputs
        {"cell": "irnn"},
        {"cell": "leaky"},
    ],
)
def test_every_cell_exports_a_dynamic_length_onnx_lm(settings, tmp_path):
    torch.manual_seed(0)
    config = LMConfig(**{"vocab_size": 7, "hidden_size": 5, "num_layers": 2, **settings})
    model = LanguageModel(config).eval()
    export_onnx(build_form(model, "sequence"), tmp_path / "lm.onnx")
    sess = session(tmp_path / "lm.onnx")
    for batch, steps in SIZES:
        g = torch.Generator().manual_seed(steps)
        tokens = torch.randint(0, 7, (steps, batch), generator=g)
        states = [torch.randn(2, batch, 5, generator=g) for _ in ("h", "c")]
        state = tuple(tuple(s[k] for s in states[: 2 if config.cell == "lstm" else 1])
                      for k in range(2))  # fmt: skip
        with torch.no_grad():
            logits, _ = model(tokens, state)
        names = ("h", "c") if config.cell == "lstm" else ("h",)
        got = run_onnx(sess, tokens=tokens, **dict(zip(names, states, strict=False)))
        assert max_err(got[:1], [logits]) <= TOL


@pytest.mark.slow
def test_direct_forecaster_with_covariates_exports_to_onnx(tmp_path):
    torch.manual_seed(0)
    config = ForecasterConfig(n_inputs=3, n_targets=2, window=6, horizon=4, probabilistic=True,
                              window_norm=True, cell="gru", hidden_size=5)  # fmt: skip
    model = Forecaster(config).eval()
    export_onnx(build_form(model, "sequence"), tmp_path / "f.onnx")
    export_onnx(build_form(model, "step"), tmp_path / "f_step.onnx")
    seq, step = session(tmp_path / "f.onnx"), session(tmp_path / "f_step.onnx")
    for batch, steps in SIZES:
        x = torch.randn(batch, steps, 3, generator=torch.Generator().manual_seed(steps))
        with torch.no_grad():
            want = model(x)  # (B, 4, 2) mean and variance
        assert max_err(run_onnx(seq, x=x), want) <= TOL
        mu, sd = x.mean(1), (x.var(1, unbiased=False) + 0.01).sqrt()
        h = torch.zeros(1, batch, 5)
        for t in range(steps):  # after the window's last row: the direct forecast
            mean, var, h = run_onnx(step, x=x[:, t], window_mean=mu, window_std=sd, h=h)
        assert max_err([mean, var], want) <= TOL
