"""A headless Chromium for tests, driven through the DevTools protocol over a pipe.

``chromium_or_skip()`` finds a Chromium (``chromium``, ``chromium-browser``,
``google-chrome``); when there is none and the tests run as root with ``apt-get``, it
installs Debian's ``chromium`` once per test session (``apt-get update`` first when the
package is not known yet; 300 s in all), and skips the calling test with the reason
only when that fails.

``open_page(binary, path)`` starts ``chromium --headless=new --remote-debugging-pipe``
(no WebSocket, so nothing beyond the standard library): commands go to the browser on
file descriptor 3 and replies come back on descriptor 4 as NUL-terminated JSON. The
returned :class:`Page` evaluates JavaScript, moves the mouse (real input events, so
``mouseover`` handlers run) and collects every console error, uncaught exception and
error log entry in ``page.errors``.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_SECONDS = 300
_install: dict[str, object] = {}  # the one install attempt of this session: binary or reason


def find_chromium() -> str | None:
    """The path of an installed Chromium or Chrome, or None."""
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def install_chromium() -> tuple[str | None, str]:
    """Try ``apt-get install chromium`` once per session: (binary or None, what happened)."""
    if "result" in _install:
        return _install["result"]  # type: ignore[return-value]
    _install["result"] = result = _try_install()
    return result


def _try_install() -> tuple[str | None, str]:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, "chromium is not installed and the tests do not run as root to install it"
    if shutil.which("apt-get") is None:
        return None, "chromium is not installed and there is no apt-get to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    deadline = time.monotonic() + INSTALL_SECONDS
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]
    started = time.monotonic()
    for command in (install, ["apt-get", "update", "-qq"], install):
        left = deadline - time.monotonic()
        if left <= 0:
            return None, f"installing chromium took over {INSTALL_SECONDS} s"
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            return None, f"installing chromium took over {INSTALL_SECONDS} s"
        if command is install and done.returncode == 0 and find_chromium():
            return find_chromium(), f"installed in {time.monotonic() - started:.0f} s"
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    return None, f"apt-get could not install chromium: {last[0]}"


def chromium_or_skip() -> str:
    """A Chromium binary, installing it if need be; skips the test when there can be none."""
    binary = find_chromium()
    if binary:
        return binary
    binary, reason = install_chromium()
    if binary is None:
        pytest.skip(f"no headless browser: {reason}")
    return binary


class Page:
    """One browser tab reached through the DevTools protocol (see the module docstring)."""

    def __init__(self, process: subprocess.Popen, to_browser, from_browser) -> None:
        self.process = process
        self._out = to_browser
        self._in = from_browser
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None
        self.events: list[dict] = []
        self.errors: list[str] = []

    def send(self, method: str, params: dict | None = None, *, browser: bool = False) -> dict:
        """Send a command (to the page's session unless ``browser``) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        self._out.write(json.dumps(message).encode() + b"\0")
        self._out.flush()
        while True:
            reply = self._receive(timeout=20.0)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def wait_for(self, method: str, timeout: float = 20.0) -> dict:
        """Wait for the next event named ``method`` (or one already received)."""
        for event in self.events:
            if event.get("method") == method:
                self.events.remove(event)
                return event
        end = time.monotonic() + timeout
        while True:
            event = self._receive(timeout=max(0.0, end - time.monotonic()))
            if event.get("method") == method:
                return event
            self._event(event)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (JSON-serialisable values come back as such)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def hover(self, x: float, y: float) -> None:
        """Move the mouse to viewport point (x, y), as a user would."""
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})

    def _receive(self, timeout: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._in], [], [], timeout)
            if not ready:
                raise TimeoutError(f"the browser did not answer within {timeout:.0f} s")
            chunk = os.read(self._in.fileno(), 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed the DevTools pipe (it exited)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _event(self, event: dict) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"uncaught: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = [a.get("value", a.get("description")) for a in params.get("args", [])]
            self.errors.append(f"console.{params['type']}: {' '.join(map(str, args))}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log ({entry.get('source')}): {entry.get('text')}")
        self.events.append(event)


def _wait_loaded(page: Page, url: str, timeout: float = 20.0) -> None:
    """Poll until the tab shows ``url`` fully loaded (a stale about:blank event can come first)."""
    end = time.monotonic() + timeout
    check = f"document.readyState === 'complete' && location.href === {json.dumps(url)}"
    while not page.evaluate(check):
        if time.monotonic() > end:
            raise TimeoutError(f"{url} did not finish loading within {timeout:.0f} s")
        time.sleep(0.05)


_TRAMPOLINE = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


def _above_four(fd: int) -> int:
    """``fd`` itself if it is 5 or more, else a copy numbered 5 or more."""
    return fd if fd >= 5 else fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)


@contextmanager
def open_page(binary: str, path: str | os.PathLike[str], *, fragment: str = ""):
    """A :class:`Page` with ``path`` (a local file) loaded; the browser is closed afterwards."""
    url = Path(path).resolve().as_uri() + fragment
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()

    with tempfile.TemporaryDirectory(prefix="rnnkit-chromium-") as profile:
        command = [
            binary,
            "--headless=new",
            "--no-sandbox",  # root in a container has no user namespaces for the sandbox
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "--window-size=1200,900",
            "about:blank",
        ]
        # A small Python trampoline puts the pipe ends on fds 3 and 4, then becomes the
        # browser (no preexec_fn: unsafe in a threaded process; dash cannot name fds > 9).
        # Copies numbered 5 and up cannot be among the fds they are moved to.
        r, w = _above_four(to_browser_r), _above_four(from_browser_w)
        process = subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, str(r), str(w), *command],
            pass_fds=(r, w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in {to_browser_r, from_browser_w, r, w}:
            os.close(fd)
        to_browser = os.fdopen(to_browser_w, "wb")
        from_browser = os.fdopen(from_browser_r, "rb")
        page = Page(process, to_browser, from_browser)
        try:
            target = page.send("Target.createTarget", {"url": "about:blank"}, browser=True)
            attached = page.send(
                "Target.attachToTarget",
                {"targetId": target["targetId"], "flatten": True},
                browser=True,
            )
            page.session = attached["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                page.send(f"{domain}.enable")
            page.events.clear()
            page.send("Page.navigate", {"url": url})
            page.wait_for("Page.loadEventFired")
            _wait_loaded(page, url)
            yield page
        finally:
            with suppress(OSError, RuntimeError, TimeoutError):  # it may be gone already
                page.send("Browser.close", browser=True)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            to_browser.close()
            from_browser.close()
