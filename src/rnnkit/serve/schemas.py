"""Request and response bodies of ``rnnkit serve``, and the limits every request obeys.

The pydantic models check the *shape* of a request (types, names; unknown fields are
refused): a mismatch is a 422. The *values* are checked by the handlers against the
limits below and the run itself: a request asking for more than a limit allows is a
413, any other value the run cannot take is a 400 (see :class:`RequestError`). Models
use strict types, so ``"5"`` is not an integer and ``true`` is not a number.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

# ---- limits (the documented bounds; GET /health lists them) --------------------------

MAX_BODY_BYTES = 1 << 20  # request body (413 beyond)
MAX_PRIME_CHARS = 4000  # /generate: characters of the prime
MAX_GENERATE_TOKENS = 2000  # /generate: tokens per request
MAX_TEMPERATURE = 10.0  # /generate: temperature in [0, MAX_TEMPERATURE]
MAX_BEAM = 8  # /generate: beam width
MAX_BATCH = 64  # /classify: sequences or texts per request
MAX_SEQUENCE_STEPS = 2000  # /classify: steps of one numeric sequence
MAX_TEXT_CHARS = 20000  # /classify: characters of one text
MAX_HISTORY_ROWS = 10000  # /forecast: rows of the history
MAX_FORECAST_STEPS = 1000  # /forecast: steps of an autoregressive run (direct: its horizon)
MAX_SAMPLES = 1000  # /forecast: Monte-Carlo paths of a probabilistic autoregressive run
MAX_SEED = 2**63 - 1  # seeds are in 0..MAX_SEED

LIMITS = {
    "body_bytes": MAX_BODY_BYTES,
    "prime_chars": MAX_PRIME_CHARS,
    "generate_tokens": MAX_GENERATE_TOKENS,
    "temperature": MAX_TEMPERATURE,
    "beam": MAX_BEAM,
    "batch": MAX_BATCH,
    "sequence_steps": MAX_SEQUENCE_STEPS,
    "text_chars": MAX_TEXT_CHARS,
    "history_rows": MAX_HISTORY_ROWS,
    "forecast_steps": MAX_FORECAST_STEPS,
    "samples": MAX_SAMPLES,
    "seed": MAX_SEED,
}


class RequestError(Exception):
    """A request value out of bounds: ``status`` 400 or 413 and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad(message: str) -> RequestError:
    """A 400: a value the run cannot take."""
    return RequestError(400, message)


def too_large(message: str) -> RequestError:
    """A 413: more than a documented limit allows."""
    return RequestError(413, message)


def check_count(name: str, value: int, low: int, high: int) -> None:
    """``low <= value <= high``: below is a 400, above a 413."""
    if value < low:
        raise bad(f"{name} must be at least {low}, got {value}")
    if value > high:
        raise too_large(f"{name} must be at most {high}, got {value}")


def check_seed(seed: int | None) -> None:
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise bad(f"seed must be in 0..{MAX_SEED}, got {seed}")


def check_finite(name: str, values) -> None:
    """Every number of a flat iterable is finite (JSON may carry NaN and Infinity)."""
    if not all(math.isfinite(v) for v in values):
        raise bad(f"{name} holds NaN or an infinity; give finite numbers")


class Request(BaseModel):
    """Strict types, no unknown fields (a misspelt option is a 422, not ignored)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# ---- /generate -------------------------------------------------------------------------


class GenerateRequest(Request):
    """Text after ``prime``; see :func:`rnnkit.sample.generate` for the options."""

    prime: str = ""
    length: int = 200  # tokens to generate
    temperature: float = 1.0  # 0 is greedy
    top_k: int | None = None  # sample from the k most likely tokens only
    seed: int | None = None  # None: a fresh seed, returned in the response
    beam: int = 1  # beam search width (1 = sampling; top_k then refused)


class GenerateResponse(BaseModel):
    text: str  # the generated text, without the prime
    tokens: int  # tokens generated (= length)
    seed: int  # the seed used: the same request with it gives the same text


# ---- /classify -------------------------------------------------------------------------


class ClassifyRequest(Request):
    """Exactly one of ``sequences`` (numeric runs) and ``texts`` (text runs).

    A numeric sequence is a list of steps, each a list of the run's features; a run
    with one feature per step also takes each step as a bare number.
    """

    sequences: list[list[float] | list[list[float]]] | None = None
    texts: list[str] | None = None


class ClassifyResponse(BaseModel):
    classes: list[str]  # class names, in the order of each probability row
    labels: list[str]  # the most probable class of each input
    probabilities: list[list[float]]  # (N, C) softmax of the logits


# ---- /forecast -------------------------------------------------------------------------


class ForecastRequest(Request):
    """The rows after ``history``, in the data's own units.

    ``history`` maps every column the run reads (targets, then covariates; see
    ``GET /health``) to its values, oldest first; a run reading one column also takes
    a bare list. Only the last ``window`` rows are read.
    """

    history: list[float] | dict[str, list[float]]
    steps: int | None = None  # default: the run's horizon
    level: float = 0.8  # central interval of a probabilistic run, in (0, 1)
    samples: int = 200  # Monte-Carlo paths (probabilistic autoregressive runs)
    seed: int = 0  # seed of those paths


class Interval(BaseModel):
    level: float
    lower: dict[str, list[float]]
    upper: dict[str, list[float]]


class ForecastResponse(BaseModel):
    steps: int
    forecast: dict[str, list[float]]  # target column -> its forecast means
    interval: Interval | None = None  # probabilistic runs only
