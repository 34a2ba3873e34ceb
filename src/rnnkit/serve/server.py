"""Running the app with uvicorn on a socket bound here, in the foreground or in a thread.

The socket is bound before uvicorn starts, so a port in use or an address that is not
this machine's is a one-line :class:`UsageError` rather than a log line and a dead
server, and port 0 picks a free port (``sock.getsockname()`` tells which).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import threading
import time

from rnnkit.cli.errors import UsageError

DEFAULT_HOST = "127.0.0.1"
MAX_CONNECTIONS = 256  # concurrent connections uvicorn accepts; more get a 503


def bind(host: str = DEFAULT_HOST, port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: any free port)."""
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {port!r}")
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        raise UsageError(
            f"cannot resolve --host {host!r}; give an IP address such as 127.0.0.1"
        ) from None
    try:
        return socket.create_server(address[:2], family=family, backlog=128)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is in use; choose another --port") from None
        # create_server adds the address to strerror; the plain reason reads better.
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise UsageError(f"cannot listen on {host}:{port}: {reason}") from None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def uvicorn_server(app, sock: socket.socket, *, log_level: str = "info", access_log: bool = True):
    """A ``uvicorn.Server`` for ``app``; ``server.run(sockets=[sock])`` serves it."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        limit_concurrency=MAX_CONNECTIONS,
        server_header=False,
        lifespan="off",
    )
    return uvicorn.Server(config)


class ServerThread:
    """``app`` served from a background thread (tests, the load benchmark).

    ``with ServerThread(app) as url:`` starts it on a free loopback port and waits
    until it accepts connections; leaving the block shuts it down.
    """

    def __init__(self, app, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self.sock = bind(host, port)
        self.address = self.sock.getsockname()[:2]
        self.server = uvicorn_server(app, self.sock, log_level="warning", access_log=False)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30.0
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30.0)
        self.sock.close()
