"""``rnnkit serve RUN_DIR``: an HTTP API over one trained run (see :mod:`rnnkit.serve`)."""

from __future__ import annotations

import contextlib
import importlib.util
import sys

from rnnkit.cli.errors import UsageError

DEFAULT_PORT = 8000


def add_serve_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a trained run over HTTP (generate, classify or forecast)",
        description="Serve one run of `rnnkit lm train`, `classify train` or `forecast train` "
        "as a JSON API: GET /health, and POST /generate, /classify or /forecast by the run's "
        "task. Binds to 127.0.0.1 unless --host says otherwise; Ctrl-C stops it.",
    )
    p.add_argument("run_dir", help="a run directory made by `rnnkit lm|classify|forecast train`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.set_defaults(run=serve_command)


def serve_command(args) -> int:
    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"rnnkit serve needs {' and '.join(missing)}; pip install 'rnnkit[serve]'")
    from rnnkit.cli.lm import resolve_device
    from rnnkit.serve import create_app
    from rnnkit.serve.server import bind, is_loopback, uvicorn_server

    device = resolve_device(args.device)
    sock = bind(args.host, args.port)  # before loading: a busy port fails fast
    try:
        app = create_app(args.run_dir, args.checkpoint, device)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"rnnkit: serving {args.run_dir} on http://{shown}:{port} (Ctrl-C stops)")
        if not is_loopback(host):
            print(
                f"rnnkit: warning: {host} is reachable from other machines and the API has "
                f"no authentication",
                file=sys.stderr,
            )
        sys.stdout.flush()
        # uvicorn shuts down cleanly on Ctrl-C, then raises it again: a normal stop.
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn_server(app, sock).run(sockets=[sock])
    finally:
        sock.close()
    return 0
