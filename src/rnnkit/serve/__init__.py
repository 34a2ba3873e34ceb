"""``rnnkit serve``: a small HTTP API (FastAPI + uvicorn) serving one trained run.

The run directory is read once at start-up; its checkpoint's ``meta["task"]`` decides
what it serves. The server binds to 127.0.0.1 unless told otherwise, serves JSON only
(no static files, no documentation pages, no path parameters: nothing reaches the
disk after start-up) and runs every model call under one lock, in eval mode without
autograd. ``GET /openapi.json`` gives the request schemas.

Endpoints
---------
``GET /health`` (every run)
    ``{"status": "ok", "task", "checkpoint", "step", "model": {"class", "parameters",
    "config"}, "run": {...task details: vocabulary, classes, columns...}, "endpoints",
    "limits"}``.

``POST /generate`` (``lm`` runs): ``{"prime": "", "length": 200, "temperature": 1.0,
"top_k": null, "seed": null, "beam": 1}`` → ``{"text", "tokens", "seed"}``. The text
is what :func:`rnnkit.sample.generate` gives for the same options (the prime is not
repeated); with ``seed`` null a fresh seed is drawn and returned.

``POST /classify`` (``classify`` runs): ``{"texts": ["..."]}`` for a run trained on
texts, or ``{"sequences": [[[f1, ..., fF], ...], ...]}`` (each step a list of the run's
F features; a bare number per step when F is 1) for a numeric run → ``{"classes",
"labels", "probabilities"}`` (softmax of the logits, one row per input).

``POST /forecast`` (``forecast`` runs): ``{"history": {"<column>": [values...], ...},
"steps": null, "level": 0.8, "samples": 200, "seed": 0}`` with every column the run
reads (targets then covariates; a bare list for a one-column run), oldest first, in
the data's units → ``{"steps", "forecast": {"<target>": [...]}, "interval": {"level",
"lower", "upper"} | null}`` (the interval for probabilistic runs only).

Limits and errors
-----------------
Errors are ``{"error": "<one line>"}``. A body that is not the schema (missing or
misspelt fields, wrong types: strict, so ``"5"`` is not a number) is a **422** (with
``detail``). A request over a size limit is a **413**: a body over 1 MiB, a prime over
4000 characters, ``length`` over 2000 tokens, ``beam`` over 8, more than 64 sequences
or texts, a sequence over 2000 steps, a text over 20000 characters, a history over
10000 rows, an autoregressive ``steps`` over 1000, ``samples`` over 1000. Any other
value the run cannot take is a **400**: ``length``/``steps``/``samples``/``beam``
below 1, ``temperature`` outside [0, 10], ``top_k`` below 1 or with ``beam`` > 1, a
seed outside 0..2^63-1, a prime with characters the vocabulary lacks, a text with no
tokens, the wrong features per step, a history shorter than the window or missing a
column, a direct run's ``steps`` beyond its horizon, ``level`` outside (0, 1), NaN or
infinite values. An endpoint the run's task does not serve, or any other path, is a
**404**; a wrong method a **405**.

Example::

    rnnkit serve runs/book --port 8000
    curl -s localhost:8000/health
    curl -s localhost:8000/generate -H 'content-type: application/json' \\
         -d '{"prime": "The ", "length": 100, "temperature": 0.8, "seed": 1}'
"""

from __future__ import annotations

from rnnkit.serve.app import build_app, create_app
from rnnkit.serve.runs import ServedRun, load_served_run
from rnnkit.serve.schemas import LIMITS, RequestError

__all__ = ["LIMITS", "RequestError", "ServedRun", "build_app", "create_app", "load_served_run"]
