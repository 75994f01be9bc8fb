"""A headless Chromium driven over its DevTools protocol (a websocket, `websockets` from the venv): enough to open a
page in a fresh profile, wait until a JavaScript condition holds, click and take a screenshot. Playwright is not
installed here; chromium is a Debian package (`apt-get install -y chromium`)."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from websockets.sync.client import connect

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# The flags docs/tracking.md's screenshots were taken with; --no-sandbox because CI runs as root.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--remote-debugging-port=0", "--remote-allow-origins=*"]


def chromium_path() -> str | None:
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


class Browser:
    """One page of a Chromium started on a fresh, temporary profile (no localStorage: what a new user sees)."""

    def __init__(self, width: int = 1440, height: int = 900, timeout: float = 30.0):
        binary = chromium_path()
        if binary is None:
            raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
        self.profile = Path(tempfile.mkdtemp(prefix="iau-chromium-"))
        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}",
                                         f"--window-size={width},{height}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ids = itertools.count(1)
        self.socket = connect(self._page_socket(timeout), max_size=2**28, open_timeout=timeout)
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.resize(width, height)

    def _page_socket(self, timeout: float) -> str:
        """The page's DevTools websocket: the port Chromium chose is written into the profile once it listens."""
        import urllib.request

        port_file, deadline = self.profile / "DevToolsActivePort", time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_file.exists() and (lines := port_file.read_text().split()):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{lines[0]}/json/list", timeout=5) as answer:
                        pages = [t for t in json.load(answer) if t.get("type") == "page"]
                    if pages:
                        self.target = pages[0]["id"]
                        return pages[0]["webSocketDebuggerUrl"]
                except OSError:
                    pass
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            time.sleep(0.2)
        raise TimeoutError("chromium did not open its DevTools port")

    def send(self, method: str, **params) -> dict:
        """One DevTools command; the events that arrive meanwhile are dropped (nothing here listens to them)."""
        ident = next(self.ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=120))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def resize(self, width: int, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def evaluate(self, expression: str):
        """The expression's value (JSON-able), evaluated in the page; a thrown error is raised here."""
        found = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in found:
            raise RuntimeError(f"{expression[:80]}...: {found['exceptionDetails'].get('text')}")
        return found.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, settle: float = 1.0):
        """Poll until the expression is truthy; return its value (None on timeout). `settle`: a pause after, for
        what renders just after the data (charts, column widths)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(f"(() => {{ try {{ return {expression}; }} catch (e) {{ return null; }} }})()")
            if value:
                time.sleep(settle)
                return value
            time.sleep(0.5)
        return None

    def click(self, element: str) -> bool:
        """A real mouse click (left button, pressed and released) at the middle of the element the JS expression
        `element` finds: unlike element.click(), it counts as the user's gesture (a link with target=_blank then
        opens its tab). False if there is no such element."""
        box = self.evaluate(f"(e => e && (r => [r.x + r.width / 2, r.y + r.height / 2])(e.getBoundingClientRect()))"
                            f"({element})")
        if not box:
            return False
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)
        return True

    def tabs(self) -> list[str]:
        """The addresses of the browser's pages (tabs), this one included."""
        return [t["url"] for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page"]

    def close_other_tabs(self) -> None:
        """Close the tabs this page opened and bring it back to the front (a background tab's charts never draw:
        the browser pauses its animation frames)."""
        for target in self.send("Target.getTargets")["targetInfos"]:
            if target["type"] == "page" and target["targetId"] != self.target:
                self.send("Target.closeTarget", targetId=target["targetId"])
        self.send("Page.bringToFront")

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_) -> None:
        self.close()
