"""The FastAPI application serving one loaded run (see :mod:`rnnkit.serve` for the API).

``create_app(run_dir)`` reads the run once and returns the app; nothing afterwards
touches the disk: there are no static files and no path parameters, so no request can
name a file. Every model call runs under one lock (in eval mode, without autograd),
so concurrent requests are answered one model call at a time. Errors are JSON
``{"error": "<one line>"}`` with the status the module docstring lists.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import torch
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import Request

from rnnkit import __version__
from rnnkit.cli.runs import TRAINED_TASKS
from rnnkit.serve import classify, forecast, generate
from rnnkit.serve.runs import ServedRun, load_served_run
from rnnkit.serve.schemas import (
    LIMITS,
    MAX_BODY_BYTES,
    ClassifyRequest,
    ClassifyResponse,
    ForecastRequest,
    ForecastResponse,
    GenerateRequest,
    GenerateResponse,
    RequestError,
)

log = logging.getLogger("rnnkit.serve")
# The endpoint each task serves, and the module answering it.
ENDPOINTS = {"lm": "/generate", "classify": "/classify", "forecast": "/forecast"}
TYPE_NAMES = {"float", "int", "str", "bool", "list", "dict"}
SUMMARIES = {"lm": generate.summary, "classify": classify.summary, "forecast": forecast.summary}


def create_app(run_dir: str | Path, checkpoint: str = "best", device=None) -> FastAPI:
    """The app serving ``run_dir``'s ``checkpoint`` (``best`` falls back to ``last``).

    Raises a one-line :class:`~rnnkit.cli.errors.UsageError` when ``run_dir`` holds no
    run the server knows.
    """
    return build_app(load_served_run(run_dir, checkpoint, device))


def build_app(run: ServedRun) -> FastAPI:
    """The app serving an already loaded run."""
    app = FastAPI(
        title="rnnkit serve",
        version=__version__,
        description=f"A trained rnnkit {run.task} run.",
        docs_url=None,  # no pages that fetch scripts from elsewhere: JSON only
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    _add_error_handlers(app, run)
    lock = threading.Lock()
    served = ENDPOINTS[run.task]
    health = {
        "status": "ok",
        "task": run.task,
        "checkpoint": run.checkpoint,
        "step": run.step,
        "model": {
            "class": type(run.model).__name__,
            "parameters": run.parameters,
            "config": run.model.config.to_dict(),
        },
        "run": SUMMARIES[run.task](run),
        "endpoints": ["GET /health", f"POST {served}"],
        "limits": LIMITS,
    }

    @app.get("/health")
    def get_health() -> dict:
        """The task, the model and the request limits."""
        return health

    def call(handler, request):
        with lock, torch.no_grad():
            return handler(run, request)

    # Sync endpoints run in the server's thread pool; the lock keeps model calls serial.
    if run.task == "lm":

        @app.post("/generate", response_model=GenerateResponse)
        def post_generate(request: GenerateRequest) -> GenerateResponse:
            """Text after a prime (language-model runs)."""
            return call(generate.handle, request)

    if run.task == "classify":

        @app.post("/classify", response_model=ClassifyResponse)
        def post_classify(request: ClassifyRequest) -> ClassifyResponse:
            """Labels and class probabilities (classification runs)."""
            return call(classify.handle, request)

    if run.task == "forecast":

        @app.post("/forecast", response_model=ForecastResponse)
        def post_forecast(request: ForecastRequest) -> ForecastResponse:
            """The rows after a history (forecasting runs)."""
            return call(forecast.handle, request)

    # The other tasks' endpoints say what this server holds, without reading the body.
    for task, path in ENDPOINTS.items():
        if task != run.task:
            app.add_api_route(
                path, _not_served(run.task, path), methods=["POST"], include_in_schema=False
            )
    return app


def _not_served(task: str, path: str):
    def not_served() -> None:
        raise HTTPException(
            404,
            f"this server holds a run of `rnnkit {TRAINED_TASKS[task]}`: it "
            f"serves POST {ENDPOINTS[task]}, not {path}",
        )

    return not_served


def _error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _add_error_handlers(app: FastAPI, run: ServedRun) -> None:
    endpoints = f"GET /health and POST {ENDPOINTS[run.task]}"

    @app.exception_handler(RequestError)
    async def out_of_bounds(_request: Request, err: RequestError) -> JSONResponse:
        return _error(err.status, err.message)

    @app.exception_handler(ValueError)
    async def refused(_request: Request, err: ValueError) -> JSONResponse:
        # The library's own checks (a prime with unknown characters, an empty text, ...)
        return _error(400, str(err).splitlines()[0] if str(err) else type(err).__name__)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        # Only where and what: the inputs (possibly large) are not echoed back.
        errors = err.errors()
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        if not errors:
            return _error(422, "invalid request", detail=detail)
        first = errors[0]
        if first["type"] == "json_invalid":
            reason = first.get("ctx", {}).get("error", "JSON decode error")
            return _error(422, f"the body is not valid JSON: {reason}", detail=detail)
        # Union branches show up in the location as type names ("list[float]"): left out.
        where = ".".join(
            str(part)
            for part in first["loc"][1:]
            if isinstance(part, int) or (part.isidentifier() and part not in TYPE_NAMES)
        )
        where = where or "body"
        return _error(422, f"{where}: {first['msg']}", detail=detail)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, err: HTTPException) -> JSONResponse:
        if err.status_code == 404 and err.detail == "Not Found":
            return _error(404, f"no such endpoint; this server has {endpoints}")
        if err.status_code == 405:
            return _error(405, f"method not allowed; this server has {endpoints}")
        return _error(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def crashed(_request: Request, err: Exception) -> JSONResponse:
        log.exception("request failed")
        return _error(500, f"internal error: {type(err).__name__}")


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is a 413, read or not.

    A declared ``Content-Length`` over the limit is refused before the body is read;
    a chunked body is counted as it arrives.
    """

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body must be at most {self.limit} bytes"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _error(413, message)(scope, receive, send)
            return
        received = 0

        async def counted():
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, message)  # FastAPI passes it to http_error
            return event

        await self.app(scope, counted, send)
