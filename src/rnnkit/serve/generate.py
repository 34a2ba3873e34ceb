"""``POST /generate``: text from a language-model run, through :func:`rnnkit.sample.generate`.

The same request with the same seed gives the text ``rnnkit sample RUN --seed S``
prints after its prime: the handler is a thin, bounded front to ``generate``.
"""

from __future__ import annotations

import secrets

from rnnkit.serve.runs import ServedRun
from rnnkit.serve.schemas import (
    MAX_BEAM,
    MAX_GENERATE_TOKENS,
    MAX_PRIME_CHARS,
    MAX_TEMPERATURE,
    GenerateRequest,
    GenerateResponse,
    bad,
    check_count,
    check_seed,
    too_large,
)


def check(request: GenerateRequest) -> None:
    """The documented bounds of a generate request (400 / 413)."""
    if len(request.prime) > MAX_PRIME_CHARS:
        raise too_large(
            f"prime must be at most {MAX_PRIME_CHARS} characters, got {len(request.prime)}"
        )
    check_count("length", request.length, 1, MAX_GENERATE_TOKENS)
    if not 0.0 <= request.temperature <= MAX_TEMPERATURE:  # also refuses NaN
        raise bad(
            f"temperature must be in [0, {MAX_TEMPERATURE:g}] (0 for greedy), "
            f"got {request.temperature}"
        )
    if request.top_k is not None and request.top_k < 1:
        raise bad(f"top_k must be a positive integer or null, got {request.top_k}")
    check_count("beam", request.beam, 1, MAX_BEAM)
    if request.beam > 1 and request.top_k is not None:
        raise bad("top_k applies to sampling only; drop top_k or use beam 1")
    check_seed(request.seed)


def handle(run: ServedRun, request: GenerateRequest) -> GenerateResponse:
    """Generate ``request.length`` tokens; the caller holds the model lock."""
    from rnnkit.sample import generate

    check(request)
    # A seed drawn here (not by generate) can be returned, so any text can be had again.
    seed = request.seed if request.seed is not None else secrets.randbelow(2**62)
    pieces = list(
        generate(
            run.model,
            run.vocab,
            prime=request.prime,
            length=request.length,
            temperature=request.temperature,
            top_k=request.top_k,
            seed=seed,
            beam=request.beam,
        )
    )
    return GenerateResponse(text="".join(pieces), tokens=len(pieces), seed=seed)


def summary(run: ServedRun) -> dict:
    """What ``GET /health`` says about a language-model run."""
    return {"vocab_kind": run.vocab.kind, "vocab_size": len(run.vocab)}
