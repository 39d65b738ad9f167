"""Headless Chromium driven over the DevTools protocol, with the standard library only.

Chromium's ``--remote-debugging-pipe`` reads commands on file descriptor 3 and writes replies and events on 4,
each message one JSON object ended by a NUL byte: no port, no websocket, nothing another process can reach.
Used by the report's browser test and by ``bench/bench_report.py``.

    with Browser() as browser:
        page = browser.open(Path("report.html").resolve().as_uri())
        page.wait_for("document.documentElement.dataset.ready === '1'")
        page.evaluate("1 + 1"), page.errors, page.screenshot(path)
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# The flags of a quiet, sandbox-free headless browser that reaches no network service of its own.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--mute-audio",
    "--remote-debugging-pipe",
)


def available() -> bool:
    return os.access(CHROMIUM, os.X_OK)


class BrowserError(RuntimeError):
    pass


class Browser:
    """One Chromium process with a fresh profile; ``open`` gives a :class:`Page`."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 60.0):
        self.width, self.height, self.timeout = width, height, timeout
        self._profile = tempfile.mkdtemp(prefix="cltdr-chromium-")
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict] = []
        # Our ends stay with us; Chromium gets the others as its fds 3 (commands) and 4 (replies).
        cmd_read, self._cmd_write = os.pipe()
        self._reply_read, reply_write = os.pipe()
        args = [CHROMIUM, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"]
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            # bash, not sh: dash's redirections only know single-digit descriptors.
            ["bash", "-c", f'exec "$@" 3<&{cmd_read} 4>&{reply_write}', "bash", *args],
            pass_fds=(cmd_read, reply_write),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        os.close(cmd_read)
        os.close(reply_write)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (BrowserError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._cmd_write, self._reply_read):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    # --------------------------------------------------------------------------------------- protocol
    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._cmd_write, data) :]
        return self._next_id

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._reply_read], [], [], left)[0]:
                raise BrowserError("Chromium did not answer in time" + self._tail())
            chunk = os.read(self._reply_read, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium closed its pipe" + self._tail())
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(
        self, method: str, params: dict | None = None, session: str | None = None, timeout: float | None = None
    ) -> dict:
        """Send a command and return its result; events that arrive meanwhile are kept for :meth:`events`."""
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._receive(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._events.append(message)

    def pump(self, seconds: float) -> None:
        """Collect the events of the next ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._events.append(self._receive(deadline))
        except BrowserError:
            if self.process.poll() is not None:
                raise

    def events(self, session: str) -> list[dict]:
        return [e for e in self._events if e.get("sessionId") == session]

    def _tail(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").splitlines()[-8:]
        return (":\n" + "\n".join(lines)) if lines else ""

    # ------------------------------------------------------------------------------------------ pages
    def open(self, url: str) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        page.navigate(url)
        return page


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def call(self, method: str, params: dict | None = None, timeout: float | None = None) -> dict:
        return self.browser.call(method, params, self.session, timeout)

    def navigate(self, url: str) -> None:
        before = len(self.browser.events(self.session))
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + self.browser.timeout
        while not any(e["method"] == "Page.loadEventFired" for e in self.browser.events(self.session)[before:]):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not load in {self.browser.timeout} s")
            self.browser.pump(0.05)

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        """The value of a JavaScript expression (JSON-serialisable); a thrown exception raises BrowserError."""
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": await_promise}
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"{expression[:80]!r} threw: {details.get('exception', {}).get('description', details)}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression!r}")
            self.browser.pump(0.05)

    def click(self, x: float, y: float) -> None:
        """A left click at viewport coordinates (CSS pixels), as a mouse does it."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            pressed = kind != "mouseMoved"
            self.call(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": y, "button": "left" if pressed else "none", "clickCount": int(pressed)},
            )

    def hover(self, x: float, y: float) -> None:
        self.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads reported so far."""
        out = []
        for e in self.browser.events(self.session):
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
        return out

    def screenshot(self, path: str | os.PathLike, clip: dict | None = None) -> Path:
        """A PNG of the viewport, or of ``clip`` ({x, y, width, height} in page CSS pixels)."""
        params: dict[str, Any] = {"format": "png"}
        if clip:
            params.update(clip={**clip, "scale": 1}, captureBeyondViewport=True)
        data = self.call("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path


# A clip recorded from a canvas by the browser's MediaRecorder: a real WebM file without any encoder installed.
_RECORD = """new Promise((resolve, reject) => {
  const c = document.createElement("canvas"); c.width = 64; c.height = 48; document.body.append(c);
  const g = c.getContext("2d"); let f = 0;
  const timer = setInterval(() => { g.fillStyle = `hsl(${f++ * 25}, 80%, 50%)`; g.fillRect(0, 0, 64, 48); }, 40);
  const recorder = new MediaRecorder(c.captureStream(25), {mimeType: "video/webm"}), parts = [];
  recorder.ondataavailable = (e) => parts.push(e.data);
  recorder.onerror = (e) => reject(String(e.error));
  recorder.onstop = async () => {
    clearInterval(timer);
    const bytes = new Uint8Array(await new Blob(parts).arrayBuffer());
    let s = ""; for (const b of bytes) s += String.fromCharCode(b);
    resolve(btoa(s));
  };
  recorder.start(); setTimeout(() => recorder.stop(), MS);
})"""


def record_webm(browser: Browser, path: str | os.PathLike, seconds: float = 2.0) -> Path:
    """Write a ``seconds``-long WebM clip (changing colours) recorded in ``browser``."""
    page = browser.open("about:blank")
    data = page.evaluate(_RECORD.replace("MS", str(int(1000 * seconds))), await_promise=True)
    path = Path(path)
    path.write_bytes(base64.b64decode(data))
    return path
