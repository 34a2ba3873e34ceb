"""`rnnkit serve`: the HTTP API over tiny runs trained in-process through the CLI.

The answers are compared with the library computing the same thing directly
(`sample_text`, the classifier's softmax, `Forecaster.predict`); every documented bound
is checked for its status and one-line message; and a real uvicorn server on a
loopback port takes a short concurrent load.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

with warnings.catch_warnings():  # starlette asks for httpx2; httpx works the same here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from rnnkit.cli import classify as classify_cli  # noqa: E402
from rnnkit.cli import forecast as forecast_cli  # noqa: E402
from rnnkit.cli import lm as lm_cli  # noqa: E402
from rnnkit.cli.main import main  # noqa: E402
from rnnkit.sample import generate, sample_text  # noqa: E402
from rnnkit.serve import LIMITS, create_app  # noqa: E402
from rnnkit.serve.server import ServerThread  # noqa: E402

TINY = ["--hidden-size", "8", "--no-progress", "--max-steps", "3", "--engine", "native"]
WORDS = ["the cat", "a dog", "sat on", "the mat", "and ran", "away."]


def seasonal(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Period-12 series y and a covariate u."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + 5 * np.sin(2 * np.pi * t / 12) + 0.3 * rng.normal(size=n), np.cos(
        2 * np.pi * t / 12
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Five runs of 3 steps: lm, numeric and text classifiers, direct and AR forecasters."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("serve")
    rng = np.random.default_rng(0)
    words = np.random.default_rng(1).choice(WORDS, size=(60, 8))
    (d / "corpus.txt").write_text("\n".join(" ".join(r) for r in words) + "\n", encoding="utf-8")
    rows = ["label," + ",".join(f"t{i}" for i in range(8))]
    for k in range(60):  # rising, falling, flat; 4 to 8 steps
        label = ("up", "down", "flat")[k % 3]
        n = int(rng.integers(4, 9))
        v = {"up": 0.3, "down": -0.3, "flat": 0.0}[label] * np.arange(n) + 0.1 * rng.normal(size=n)
        rows.append(label + "," + ",".join([f"{x:.4f}" for x in v] + [""] * (8 - n)))
    (d / "wide.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with open(d / "texts.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["text", "label"])
        for k in range(40):
            text = ("good fun " if k % 2 else "bad dull ") * (1 + k % 3)
            out.writerow([text, "pos" if k % 2 else "neg"])
    y, u = seasonal(160)
    with open(d / "series.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["y", "u"])
        out.writerows(zip(y.tolist(), u.tolist(), strict=True))
    series = ["--csv", str(d / "series.csv"), "--target", "y", "--window", "12", "--horizon", "4"]
    commands = {
        "lm": ["lm", "train", "--text", str(d / "corpus.txt"), "--num-layers", "1",
               "--embedding-size", "8", "--batch-size", "4", "--seq-len", "16",
               "--sample-length", "0"],
        "numeric": ["classify", "train", "--data", str(d / "wide.csv")],
        "texts": ["classify", "train", "--data", str(d / "texts.csv"), "--max-length", "12"],
        "direct": ["forecast", "train", *series, "--inputs", "u", "--probabilistic"],
        "ar": ["forecast", "train", *series, "--mode", "autoregressive", "--probabilistic"],
    }  # fmt: skip
    try:
        for name, argv in commands.items():
            assert main([*argv, "--out", str(d / name), *TINY]) == 0, name
    finally:
        torch.set_num_threads(threads)
    return {name: d / name for name in commands}


@pytest.fixture(scope="module")
def clients(runs) -> dict[str, TestClient]:
    return {name: TestClient(create_app(path)) for name, path in runs.items()}


def history(n: int = 30, covariate: bool = True) -> dict[str, list[float]]:
    y, u = seasonal(n, seed=5)
    return {"y": y.tolist(), "u": u.tolist()} if covariate else {"y": y.tolist()}


def error_of(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    message = response.json()["error"]
    assert isinstance(message, str) and message and "\n" not in message
    return message


# ----------------------------------------------------------------------------- health


def test_health_names_task_model_and_limits(clients, runs):
    model, vocab = lm_cli.load_run(runs["lm"])
    body = clients["lm"].get("/health").json()
    assert body["status"] == "ok" and body["task"] == "lm" and body["step"] == 3
    assert body["model"]["class"] == "LanguageModel"
    assert body["model"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert body["model"]["config"]["hidden_size"] == 8
    assert body["run"] == {"vocab_kind": "char", "vocab_size": len(vocab)}
    assert body["endpoints"] == ["GET /health", "POST /generate"]
    assert body["limits"] == LIMITS and LIMITS["generate_tokens"] == 2000
    numeric = clients["numeric"].get("/health").json()
    assert numeric["run"] == {"classes": ["down", "flat", "up"], "input": "numeric", "features": 1}
    texts = clients["texts"].get("/health").json()["run"]
    assert texts["classes"] == ["neg", "pos"] and texts["max_length"] == 12
    direct = clients["direct"].get("/health").json()["run"]
    assert direct["columns"] == ["y", "u"] and direct["targets"] == ["y"]
    assert (direct["window"], direct["horizon"], direct["max_steps"]) == (12, 4, 4)
    assert clients["ar"].get("/health").json()["run"]["max_steps"] == 1000


# --------------------------------------------------------------------------- generate


@pytest.mark.parametrize(
    "options",
    [
        {"prime": "the ", "length": 40, "temperature": 0.8, "seed": 3},
        {"prime": "", "length": 25, "temperature": 1.5, "top_k": 4, "seed": 11},
        {"prime": "a dog", "length": 30, "temperature": 0.0},
        {"prime": "the", "length": 12, "beam": 3},
    ],
)
def test_generate_equals_sample_text(clients, runs, options):
    model, vocab = lm_cli.load_run(runs["lm"])
    response = clients["lm"].post("/generate", json=options)
    assert response.status_code == 200, response.text
    body = response.json()
    seed = options.get("seed", body["seed"])
    assert body["seed"] == seed
    kwargs = {k: v for k, v in options.items() if k != "seed"}
    expected = sample_text(model, vocab, **kwargs, seed=seed)
    assert body["text"] == expected
    pieces = list(generate(model, vocab, **kwargs, seed=seed))
    assert body["tokens"] == len(pieces) == options["length"]


def test_generate_without_seed_returns_one_that_repeats_the_text(clients):
    first = clients["lm"].post("/generate", json={"prime": "the", "length": 30}).json()
    request = {"prime": "the", "length": 30, "seed": first["seed"]}
    again = clients["lm"].post("/generate", json=request).json()
    assert 0 <= first["seed"] < 2**62 and again["text"] == first["text"]
    assert again["tokens"] == first["tokens"] == 30


# --------------------------------------------------------------------------- classify


def test_classify_numeric_probabilities_are_the_models_softmax(clients, runs):
    model, meta, _ = classify_cli.load_run(runs["numeric"])
    sequences = [[0.0, 0.3, 0.6, 0.9, 1.2], [[0.1], [-0.2], [-0.5]], [0.05, 0.0, -0.02, 0.01]]
    response = clients["numeric"].post("/classify", json={"sequences": sequences})
    assert response.status_code == 200, response.text
    body = response.json()
    probs = np.array(body["probabilities"])  # (3, 3)
    for i, sequence in enumerate(sequences):  # one at a time: no padding at all
        x = torch.tensor(sequence, dtype=torch.float32).reshape(1, -1, 1)
        with torch.no_grad():
            expected = torch.softmax(model(x), dim=-1)[0].double().numpy()
        np.testing.assert_allclose(probs[i], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    assert body["classes"] == meta["classes"] == ["down", "flat", "up"]
    assert body["labels"] == [meta["classes"][k] for k in probs.argmax(1)]


def test_classify_texts_are_encoded_and_cut_as_in_training(clients, runs):
    model, meta, vocab = classify_cli.load_run(runs["texts"])
    long = "good fun good fun good fun"  # 26 characters: the run reads the first 12
    texts = ["bad dull", long, long[:12]]
    body = clients["texts"].post("/classify", json={"texts": texts}).json()
    probs = np.array(body["probabilities"])
    for i, text in enumerate(texts):
        ids = torch.as_tensor(vocab.encode(text)[:12], dtype=torch.long)[None]  # (1, T)
        with torch.no_grad():
            expected = torch.softmax(model(ids), dim=-1)[0].double().numpy()
        np.testing.assert_allclose(probs[i], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(probs[1], probs[2], rtol=0, atol=1e-7)  # cut at max_length
    assert body["labels"] == [meta["classes"][k] for k in probs.argmax(1)]


# --------------------------------------------------------------------------- forecast


def test_forecast_equals_the_forecasters_prediction(clients, runs):
    model, _ = forecast_cli.load_run(runs["direct"])
    h = history(30)
    body = clients["direct"].post("/forecast", json={"history": h, "level": 0.9}).json()
    values = np.stack([h["y"], h["u"]], axis=1)  # (30, 2): targets, then covariates
    expected = model.predict(values, 4, level=0.9)
    assert body["steps"] == 4 and body["interval"]["level"] == 0.9
    np.testing.assert_allclose(body["forecast"]["y"], expected.mean[:, 0], rtol=1e-12)
    np.testing.assert_allclose(body["interval"]["lower"]["y"], expected.lower[:, 0], rtol=1e-12)
    np.testing.assert_allclose(body["interval"]["upper"]["y"], expected.upper[:, 0], rtol=1e-12)
    # Only the last window (12 rows) is read.
    last = {k: v[-12:] for k, v in h.items()}
    short = clients["direct"].post("/forecast", json={"history": last, "steps": 2}).json()
    np.testing.assert_allclose(short["forecast"]["y"], expected.mean[:2, 0], rtol=1e-12)


def test_autoregressive_forecast_goes_past_the_horizon_with_seeded_paths(clients, runs):
    model, _ = forecast_cli.load_run(runs["ar"])
    y = history(40, covariate=False)["y"]
    request = {"history": y, "steps": 9, "samples": 50, "seed": 7}
    body = clients["ar"].post("/forecast", json=request).json()
    expected = model.predict(np.array(y), 9, level=0.8, n_paths=50, seed=7)
    np.testing.assert_allclose(body["forecast"]["y"], expected.mean[:, 0], rtol=1e-12)
    np.testing.assert_allclose(body["interval"]["lower"]["y"], expected.lower[:, 0], rtol=1e-12)
    np.testing.assert_allclose(body["interval"]["upper"]["y"], expected.upper[:, 0], rtol=1e-12)
    other = clients["ar"].post("/forecast", json={**request, "seed": 8}).json()
    assert other["forecast"] == body["forecast"]  # the mean path has no noise
    assert other["interval"]["lower"] != body["interval"]["lower"]


# ----------------------------------------------------------------------------- bounds

Y = history(30, covariate=False)["y"]
BOUNDS = [
    ("lm", "/generate", {"length": 0}, 400, "length must be at least 1"),
    ("lm", "/generate", {"length": 2001}, 413, "length must be at most 2000"),
    ("lm", "/generate", {"prime": "t" * 4001}, 413, "prime must be at most 4000 characters"),
    ("lm", "/generate", {"temperature": -0.1}, 400, "temperature must be in [0, 10]"),
    ("lm", "/generate", {"temperature": 10.5}, 400, "temperature must be in [0, 10]"),
    ("lm", "/generate", {"top_k": 0}, 400, "top_k must be a positive integer"),
    ("lm", "/generate", {"beam": 9}, 413, "beam must be at most 8"),
    ("lm", "/generate", {"beam": 2, "top_k": 3}, 400, "top_k applies to sampling only"),
    ("lm", "/generate", {"seed": -1}, 400, "seed must be in 0..9223372036854775807"),
    ("lm", "/generate", {"prime": "Q"}, 400, "prime has characters not in the vocabulary: 'Q'"),
    ("numeric", "/classify", {"sequences": []}, 400, "sequences must be at least 1, got 0"),
    ("numeric", "/classify", {"sequences": [[0.5]] * 65}, 413, "sequences must be at most 64"),
    ("numeric", "/classify", {"sequences": [[0.1] * 2001]}, 413,
     "sequences[0] steps must be at most 2000"),
    ("numeric", "/classify", {"sequences": [[0.1], []]}, 400, "sequences[1] steps must be at "),
    ("numeric", "/classify", {"sequences": [[[1.0, 2.0]]]}, 400, "reads 1 feature(s) per step"),
    ("numeric", "/classify", {"texts": ["up"]}, 400, "this run classifies sequences, not texts"),
    ("texts", "/classify", {"sequences": [[1.0]]}, 400, "this run classifies texts, not sequences"),
    ("texts", "/classify", {"texts": ["a", ""]}, 400, "texts[1] has no char tokens"),
    ("texts", "/classify", {"texts": ["x" * 20001]}, 413, "texts[0] must be at most 20000"),
    ("direct", "/forecast", {"history": Y}, 400, "this run reads 2 columns"),
    ("direct", "/forecast", {"history": {"y": Y}}, 400, "history lacks 'u'"),
    ("direct", "/forecast", {"history": {"y": Y[:11], "u": Y[:11]}}, 400,
     "the run reads the last 12 rows; history has 11"),
    ("direct", "/forecast", {"history": {"y": Y, "u": Y[:20]}}, 400, "columns differ in length"),
    ("direct", "/forecast", {"history": {"y": [0.0] * 10001, "u": [0.0] * 10001}}, 413,
     "history must have at most 10000 rows"),
    ("direct", "/forecast", {"history": {"y": Y, "u": Y}, "steps": 5}, 400,
     "steps must be in 1..4"),
    ("ar", "/forecast", {"history": Y, "steps": 1001}, 413, "steps must be at most 1000"),
    ("ar", "/forecast", {"history": Y, "steps": 0}, 400, "steps must be at least 1"),
    ("ar", "/forecast", {"history": Y, "level": 1.0}, 400, "level must be in (0, 1)"),
    ("ar", "/forecast", {"history": Y, "samples": 1001}, 413, "samples must be at most 1000"),
    ("ar", "/forecast", {"history": {"y": Y, "z": Y}}, 400, "unknown column 'z'"),
]  # fmt: skip


@pytest.mark.parametrize(("run", "path", "body", "status", "message"), BOUNDS)
def test_every_bound_has_its_status_and_one_line(clients, run, path, body, status, message):
    assert message in error_of(clients[run].post(path, json=body), status)


def test_non_finite_numbers_are_rejected(clients):
    # JSON has no NaN, but Python's parser takes the literals: they must not reach a model.
    post = lambda run, path, text: clients[run].post(  # noqa: E731
        path, content=text.encode(), headers={"content-type": "application/json"}
    )
    assert "temperature" in error_of(post("lm", "/generate", '{"temperature": NaN}'), 400)
    assert "NaN or an infinity" in error_of(
        post("numeric", "/classify", '{"sequences": [[1.0, Infinity]]}'), 400
    )
    y = json.dumps(Y[:-1])[:-1]
    response = post("ar", "/forecast", f'{{"history": {y}, NaN]}}')
    assert "NaN or an infinity" in error_of(response, 400)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"length": "5"}, "length: Input should be a valid integer"),
        ({"length": 5.0}, "length: Input should be a valid integer"),
        ({"temperature": True}, "temperature: Input should be a valid number"),
        ({"lenght": 5}, "lenght: Extra inputs are not permitted"),
        ([1, 2], "Input should be a valid dictionary"),
    ],
)
def test_schema_errors_are_422(clients, body, needle):
    response = clients["lm"].post("/generate", json=body)
    assert needle in error_of(response, 422)
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_bad_json_and_large_bodies(clients):
    lm = clients["lm"]
    headers = {"content-type": "application/json"}
    response = lm.post("/generate", content=b'{"length": ', headers=headers)
    assert error_of(response, 422).startswith("the body is not valid JSON")
    big = b'{"prime": "' + b"t" * (1 << 20) + b'"}'
    assert "at most 1048576 bytes" in error_of(lm.post("/generate", content=big), 413)

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b" " * 65536

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        response = lm.post("/generate", content=chunks(), headers=headers)
    assert "at most 1048576 bytes" in error_of(response, 413)
    mixed = clients["numeric"].post("/classify", json={"sequences": [[1, [2]]]})
    assert error_of(mixed, 422) == "sequences.0.1: Input should be a valid number"


# ------------------------------------------------------------------- paths, no files


@pytest.mark.parametrize(
    "path",
    ["/../../etc/passwd", "/static/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
     "/static/..%2f..%2fetc%2fpasswd", "/health/../../../etc/passwd", "/docs", "/index.html",
     "/etc/passwd"],
)  # fmt: skip
def test_other_paths_are_404_without_file_content(clients, path):
    for response in (clients["lm"].get(path), clients["lm"].post(path, json={})):
        assert "no such endpoint" in error_of(response, 404)
        assert "root:" not in response.text


def test_other_tasks_endpoints_and_methods(clients):
    message = error_of(clients["lm"].post("/classify", json={"texts": ["x"]}), 404)
    assert message == (
        "this server holds a run of `rnnkit lm train`: it serves POST /generate, not /classify"
    )
    assert "serves POST /forecast, not /generate" in error_of(
        clients["ar"].post("/generate", json={}), 404
    )
    assert "method not allowed" in error_of(clients["lm"].get("/generate"), 405)


# ------------------------------------------------------------------------ real server


def test_real_server_on_loopback_takes_a_concurrent_load(clients, runs):
    model, vocab = lm_cli.load_run(runs["lm"])
    expected = {s: sample_text(model, vocab, "the", 20, 0.8, seed=s) for s in range(5)}
    app = create_app(runs["lm"])
    with ServerThread(app) as url:
        assert url.startswith("http://127.0.0.1:")
        host, port = url[len("http://") :].split(":")
        assert host == "127.0.0.1"

        def one(i: int) -> bool:
            with httpx.Client(base_url=url, timeout=30) as client:
                body = {"prime": "the", "length": 20, "temperature": 0.8, "seed": i % 5}
                response = client.post("/generate", json=body)
                return response.status_code == 200 and response.json()["text"] == expected[i % 5]

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, range(50)))
        assert sum(not ok for ok in results) == 0 and len(results) == 50

        # A raw request line: no client-side normalisation of the path.
        with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw:
            raw.sendall(b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := raw.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 404") and b"root:" not in reply


# ---------------------------------------------------------------------------- the CLI


def test_startup_errors_are_one_line_and_exit_2(runs, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nothing"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err == f"rnnkit: error: no such run directory: {tmp_path / 'nothing'}\n"
    assert main(["serve", str(tmp_path), "--port", "0"]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["serve", str(runs["lm"]), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f"rnnkit: error: port {port} on 127.0.0.1 is in use; choose another --port\n"
    assert main(["serve", str(runs["lm"]), "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err


def test_command_serves_until_interrupted(runs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "rnnkit", "serve", str(runs["numeric"]), "--port", "0"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    proc = subprocess.Popen(command, text=True, env=env, **pipes)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"rnnkit: serving {runs['numeric']} on http://127.0.0.1:"), line
        url = line.split(" on ")[1].split()[0]
        body = httpx.post(f"{url}/classify", json={"sequences": [[0.0, 0.5, 1.0]]}).json()
        assert body["labels"][0] in ("down", "flat", "up")
        assert abs(sum(body["probabilities"][0]) - 1.0) < 1e-6
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0, proc.stderr.read()
