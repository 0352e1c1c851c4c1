"""Real browsers for the tests and benchmarks: Chromium, Firefox and WebKit (Safari's engine), all Debian's.

No browser is ever downloaded (Playwright's own builds come from a CDN): each driver runs the system's browser.

- **Chromium** (/usr/bin/chromium, package chromium): Playwright for Python (the dev extra), DevTools protocol.
- **Firefox** (firefox-esr): WebDriver BiDi, which Firefox speaks itself on a websocket (`--remote-debugging-port`),
  so there is no geckodriver; the client is `websockets` (uvicorn[standard] brings it). The profile sends every
  request that is not for loopback to a closed loopback port and turns off the background services (updates,
  telemetry, remote settings) that would try to reach out.
- **WebKit** (webkit2gtk-driver): WebKitWebDriver, W3C WebDriver over HTTP (httpx), driving WebKitGTK's
  MiniBrowser. WebKitGTK has no headless mode, so it draws into an Xvfb display of its own (xvfb), which
  listens on no TCP port.

`launch(name)` starts one browser; its `new_page()` opens a fresh page, closed after the block. Tests take the
`browser` fixture (a conftest.py imports it for its directory): parametrised over the three and scoped to the
test module, a module launches each browser once; each skips saying what is missing where its browser is absent
(.ci/run installs them all).

A page (`BrowserPage`) is what a test drives: `goto(url)`, `evaluate(function, argument)` (a JavaScript function's
source, called with the argument, its promise awaited; values cross as JSON, a float32 widened to a double and
back exactly), `wait_for(condition, argument)` (polled in the page, bounded by the launch's `timeout_ms`),
`text_content(selector)`, `drag(points)` (a mouse stroke), `screenshot(path)`, and `problems`: the page's console
errors and uncaught exceptions, for the test to assert on. WebDriver classic has no log, so in WebKit `problems`
is what a listener installed when the page has loaded sees (uncaught errors and unhandled rejections from then
on, console.error calls), not what failed before the load event; a test's own checks of the page's results
catch those.

`chromium_page()` is Playwright's own Page for the tests that fill forms and click (the server's console).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from tests.processes import output_lines, read_until, stop
from tests.registry.registry_server import free_port

BrowserName = Literal["chromium", "firefox", "webkit"]
BROWSERS: tuple[BrowserName, ...] = ("chromium", "firefox", "webkit")
# the engines that can be launched with WebAssembly SIMD128 switched off (launch(name, simd=False)): JavaScriptCore
# alone keeps an option for it, as Safari before 16.4 was
SIMD_SWITCHABLE: tuple[BrowserName, ...] = ("webkit",)
CHROMIUM = Path("/usr/bin/chromium")
FIREFOX = Path("/usr/bin/firefox-esr")
WEBKIT_DRIVER = Path("/usr/bin/WebKitWebDriver")
XVFB = Path("/usr/bin/Xvfb")
PAGE_TIMEOUT_MS = 60_000  # a page's waits on a loaded 2-core machine; a healthy page needs well under a second
LAUNCH_TIMEOUT_S = 60.0  # a browser's start on that machine; a few seconds when idle
CLOSE_GRACE_S = 10.0

# Firefox's profile: loopback only, and nothing running in the background. Every request for another host goes
# to 127.0.0.1:1, where nothing listens (loopback itself is never proxied); the rest keeps the browser from
# starting the services that would otherwise fetch (as Firefox's own automation recommends).
FIREFOX_PREFS: dict[str, bool | int | str] = {
    "network.proxy.type": 1, "network.proxy.http": "127.0.0.1", "network.proxy.http_port": 1,
    "network.proxy.share_proxy_settings": True, "network.proxy.no_proxies_on": "",
    "network.proxy.allow_hijacking_localhost": False,
    "app.update.disabledForTesting": True, "app.normandy.enabled": False, "app.normandy.api_url": "",
    "browser.shell.checkDefaultBrowser": False, "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0, "browser.newtabpage.enabled": False, "browser.search.update": False,
    "browser.safebrowsing.malware.enabled": False, "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False, "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False, "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False, "toolkit.telemetry.server": "",
    "services.settings.server": "data:,#remote-settings-off", "messaging-system.rsexperimentloader.enabled": False,
    "network.captive-portal-service.enabled": False, "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True, "network.prefetch-next": False, "network.http.speculative-parallel-limit": 0,
    "extensions.update.enabled": False, "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False, "media.gmp-manager.updateEnabled": False, "geo.provider.network.url": "",
    "identity.fxaccounts.enabled": False,
}
# An engine without SIMD128 (launch(..., simd=False)), as Safari before 16.4: JavaScriptCore's option, read from
# the environment by the web process. V8 and SpiderMonkey have no such switch (it went when SIMD128 shipped).
NO_SIMD_JSC_ENV = {"JSC_useWasmSIMD": "false"}
NO_SIMD_SWITCH = "{} has no switch to turn WebAssembly SIMD128 off alone (it went when SIMD128 shipped)"


def browser_problem(name: BrowserName) -> str | None:
    """Why `name` cannot run here, or None."""
    if name == "chromium":
        if not CHROMIUM.is_file():
            return f"{CHROMIUM} is absent (Debian's chromium package)"
        if importlib.util.find_spec("playwright") is None:
            return "Playwright for Python is not installed (the dev extra has it)"
    elif name == "firefox":
        if not FIREFOX.is_file():
            return f"{FIREFOX} is absent (Debian's firefox-esr package)"
        if importlib.util.find_spec("websockets") is None:
            return "the websockets package is not installed (uvicorn[standard], in the serve extra, has it)"
    else:
        if not WEBKIT_DRIVER.is_file():
            return f"{WEBKIT_DRIVER} is absent (Debian's webkit2gtk-driver package)"
        if not XVFB.is_file():
            return f"{XVFB} is absent (Debian's xvfb package): WebKitGTK has no headless mode"
    return None


BROWSER_PROBLEM = browser_problem("chromium")
requires_browser = pytest.mark.skipif(BROWSER_PROBLEM is not None, reason=BROWSER_PROBLEM or "")


class BrowserError(RuntimeError):
    """The browser or its driver refused a command, or the page's function threw (its message says which)."""


class BrowserPage(ABC):
    """One page of a launched browser, driven the same way in each (see the module's docstring)."""

    timeout_ms = PAGE_TIMEOUT_MS  # the longest wait of the page's own: wait_for's, and a promise `evaluate` awaits

    @property
    @abstractmethod
    def url(self) -> str:
        """The page's address now (after redirects)."""

    @property
    @abstractmethod
    def problems(self) -> list[str]:
        """Console errors ("console: ...") and uncaught exceptions ("uncaught: ...") of the pages opened so far."""

    def goto(self, url: str) -> None:
        """Load `url` and wait for its load event (the page's module scripts have run). A driver's own wait is its
        idea of loaded (once, on a loaded machine, the demo page's module script had not yet run when one answered),
        so the page's readyState is waited for too."""
        self._navigate(url)
        self.wait_for("() => document.readyState === 'complete'")

    @abstractmethod
    def _navigate(self, url: str) -> None:
        """The driver's navigation to `url`."""

    @abstractmethod
    def evaluate(self, function: str, argument: Any = None) -> Any:
        """Call the JavaScript function whose source is `function` with `argument`; its (awaited) value."""

    @abstractmethod
    def drag(self, points: Sequence[tuple[float, float]]) -> None:
        """Press the mouse at the first point (viewport CSS pixels), move through the others, release at the last."""

    @abstractmethod
    def screenshot(self, path: Path) -> None:
        """A PNG of the page at `path`."""

    def wait_for(self, condition: str, argument: Any = None) -> Any:
        """Poll the JavaScript function `condition(argument)` in the page until its value is truthy; that value.
        A page that never gets there fails the wait after `timeout_ms`."""
        return self.evaluate(f"""async (argument) => {{
            const condition = ({condition});
            const deadline = performance.now() + {self.timeout_ms};
            for (;;) {{
                const value = await condition(argument);
                if (value) return value;
                if (performance.now() > deadline) throw new Error("waited {self.timeout_ms} ms for " + condition);
                await new Promise((resolve) => setTimeout(resolve, 50));
            }}
        }}""", argument)

    def text_content(self, selector: str) -> str | None:
        """The text of the first element `selector` matches; None when none does."""
        found: str | None = self.evaluate("(selector) => document.querySelector(selector)?.textContent ?? null",
                                          selector)
        return found

    def box(self, selector: str) -> dict[str, float]:
        """The element's box in viewport CSS pixels: x, y, width, height."""
        box: dict[str, float] = self.evaluate("""(selector) => {
            const { x, y, width, height } = document.querySelector(selector).getBoundingClientRect();
            return { x, y, width, height };
        }""", selector)
        return box


class Browser(ABC):
    """A launched browser: pages one after another, each closed after its block."""

    name: BrowserName
    version: str

    @abstractmethod
    def new_page(self) -> AbstractContextManager[BrowserPage]:
        """A fresh page, closed (and forgotten) after the `with` block."""


def _in_page(function: str) -> str:
    """An async function of one JSON string that calls `function` on its value and answers its value as JSON:
    the same crossing in the three drivers, whose own value encodings differ."""
    return f"async (json) => JSON.stringify(await ({function})(JSON.parse(json)))"


# ------------------------------------------------------------------------------------------------ Chromium


class _PlaywrightPage(BrowserPage):
    def __init__(self, page: Any, timeout_ms: int) -> None:
        self._page = page
        self._problems: list[str] = []
        self.timeout_ms = timeout_ms
        page.set_default_timeout(timeout_ms)
        page.on("pageerror", lambda error: self._problems.append(f"uncaught: {error}"))
        page.on("console", lambda message: self._problems.append(f"console: {message.text}")
                if message.type == "error" else None)

    @property
    def url(self) -> str:
        url: str = self._page.url
        return url

    @property
    def problems(self) -> list[str]:
        return list(self._problems)

    def _navigate(self, url: str) -> None:
        self._page.goto(url)

    def evaluate(self, function: str, argument: Any = None) -> Any:
        from playwright.sync_api import Error

        bound = 2 * self.timeout_ms  # Playwright's evaluate has no timeout of its own: the page's race bounds it
        bounded = f"""(json) => Promise.race([({_in_page(function)})(json), new Promise((_, reject) => setTimeout(
            () => reject(new Error("no answer within {bound} ms")), {bound}))])"""
        try:
            answer = self._page.evaluate(bounded, json.dumps(argument))
        except Error as error:
            raise BrowserError(error.message) from None
        return None if answer is None else json.loads(answer)

    def drag(self, points: Sequence[tuple[float, float]]) -> None:
        mouse = self._page.mouse
        mouse.move(*points[0])
        mouse.down()
        for x, y in points[1:]:
            mouse.move(x, y)
        mouse.up()

    def screenshot(self, path: Path) -> None:
        self._page.screenshot(path=str(path), full_page=True)


class _Chromium(Browser):
    name: BrowserName = "chromium"

    def __init__(self, browser: Any, timeout_ms: int) -> None:
        self._browser = browser
        self._timeout_ms = timeout_ms
        self.version = f"Chromium {browser.version}"

    @contextmanager
    def new_page(self) -> Iterator[BrowserPage]:
        context = self._browser.new_context()  # its own cache and storage: a cold page
        try:
            yield _PlaywrightPage(context.new_page(), self._timeout_ms)
        finally:
            context.close()


@contextmanager
def _launch_chromium(simd: bool, timeout_ms: int) -> Iterator[Browser]:
    if not simd:
        raise ValueError(NO_SIMD_SWITCH.format("V8"))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield _Chromium(browser, timeout_ms)
        finally:
            browser.close()


@contextmanager
def chromium_page(**context_options: Any) -> Iterator[Any]:
    """A fresh Playwright page in a fresh headless Chromium (a cold cache), closed after the block. Console errors and
    uncaught exceptions of the page are collected in `page.problems` for the test to assert on."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_context(**context_options).new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
            page.on("console", lambda message: problems.append(f"console: {message.text}")
                    if message.type == "error" else None)
            page.problems = problems
            yield page
        finally:
            browser.close()


# ------------------------------------------------------------------------------------------------ Firefox


class _Bidi:
    """A WebDriver BiDi connection: a command waits for the answer with its id; events met on the way are kept."""

    def __init__(self, socket: Any, timeout_ms: int) -> None:  # socket: websockets.sync.client.ClientConnection
        self._socket = socket
        self._timeout_ms = 2 * timeout_ms  # past any wait of the page's own
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._next += 1
        ask = self._next
        self._socket.send(json.dumps({"id": ask, "method": method, "params": params}))
        deadline = time.monotonic() + self._timeout_ms / 1000
        while True:
            try:
                message = json.loads(self._socket.recv(timeout=max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                raise BrowserError(f"Firefox did not answer {method} within {self._timeout_ms} ms") from None
            if message.get("type") == "event":
                self.events.append(message)
            elif message.get("id") == ask:
                if message.get("type") == "error":
                    raise BrowserError(f"{method}: {message.get('error')}: {message.get('message')}")
                result: dict[str, Any] = message["result"]
                return result

    def drain(self) -> None:
        """Keep the events that have arrived since the last command."""
        while True:
            try:
                self.events.append(json.loads(self._socket.recv(timeout=0)))
            except TimeoutError:
                return


class _FirefoxPage(BrowserPage):
    def __init__(self, bidi: _Bidi, context: str, timeout_ms: int) -> None:
        self._bidi = bidi
        self.timeout_ms = timeout_ms
        self._context = context
        self._first_event = len(bidi.events)

    @property
    def url(self) -> str:
        url: str = self.evaluate("() => location.href")
        return url

    @property
    def problems(self) -> list[str]:
        """The error entries of Firefox's log (the page's and its workers') since this page opened."""
        self._bidi.drain()
        found = []
        for event in self._bidi.events[self._first_event:]:
            entry = event["params"]
            if event["method"] == "log.entryAdded" and entry.get("level") == "error":
                kind = "uncaught" if entry.get("type") == "javascript" else "console"
                found.append(f"{kind}: {entry.get('text')}")
        return found

    def _navigate(self, url: str) -> None:
        self._bidi.call("browsingContext.navigate", {"context": self._context, "url": url, "wait": "complete"})

    def evaluate(self, function: str, argument: Any = None) -> Any:
        answer = self._bidi.call("script.callFunction", {
            "functionDeclaration": _in_page(function), "target": {"context": self._context},
            "arguments": [{"type": "string", "value": json.dumps(argument)}], "awaitPromise": True})
        if answer["type"] == "exception":
            raise BrowserError(answer["exceptionDetails"]["text"])
        result = answer["result"]
        return json.loads(result["value"]) if result["type"] == "string" else None

    def drag(self, points: Sequence[tuple[float, float]]) -> None:
        self._bidi.call("input.performActions", {"context": self._context, "actions": [_mouse_stroke(points)]})
        self._bidi.call("input.releaseActions", {"context": self._context})

    def screenshot(self, path: Path) -> None:
        shot = self._bidi.call("browsingContext.captureScreenshot", {"context": self._context, "origin": "document"})
        path.write_bytes(base64.b64decode(shot["data"]))


def _mouse_stroke(points: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """W3C WebDriver's pointer actions (classic and BiDi alike) for a stroke through `points`."""
    moves = [{"type": "pointerMove", "x": round(x), "y": round(y), "origin": "viewport", "duration": 0}
             for x, y in points]
    return {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [moves[0], {"type": "pointerDown", "button": 0}, *moves[1:], {"type": "pointerUp", "button": 0}]}


class _Firefox(Browser):
    name: BrowserName = "firefox"

    def __init__(self, bidi: _Bidi, version: str, timeout_ms: int) -> None:
        self._bidi = bidi
        self._timeout_ms = timeout_ms
        self.version = version

    @contextmanager
    def new_page(self) -> Iterator[BrowserPage]:
        # a user context of its own: its own cache, cookies and storage, as a fresh profile would have
        user_context = self._bidi.call("browser.createUserContext", {})["userContext"]
        try:
            context = self._bidi.call("browsingContext.create", {"type": "tab", "userContext": user_context})
            try:
                yield _FirefoxPage(self._bidi, context["context"], self._timeout_ms)
            finally:
                self._bidi.call("browsingContext.close", {"context": context["context"]})
        finally:
            self._bidi.call("browser.removeUserContext", {"userContext": user_context})


@contextmanager
def _launch_firefox(simd: bool, timeout_ms: int) -> Iterator[Browser]:
    if not simd:
        raise ValueError(NO_SIMD_SWITCH.format("SpiderMonkey"))
    with tempfile.TemporaryDirectory(prefix="wasinfer-firefox-") as profile:
        Path(profile, "user.js").write_text("".join(f"user_pref({json.dumps(name)}, {json.dumps(value)});\n"
                                                    for name, value in FIREFOX_PREFS.items()))
        process = subprocess.Popen(
            [str(FIREFOX), "--headless", "--no-remote", "--profile", profile, "--remote-debugging-port", "0",
             "about:blank"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=os.environ | {"MOZ_CRASHREPORTER_DISABLE": "1"})
        try:
            said = read_until(output_lines(process), "WebDriver BiDi listening on ", LAUNCH_TIMEOUT_S)[-1]
            url = said.split("listening on ", 1)[1].strip()
            assert url.startswith("ws://127.0.0.1:"), said  # the remote agent listens on loopback only
            from websockets.exceptions import ConnectionClosed
            from websockets.sync.client import connect

            with connect(url + "/session", max_size=None, open_timeout=LAUNCH_TIMEOUT_S) as socket:
                bidi = _Bidi(socket, timeout_ms)
                session = bidi.call("session.new", {"capabilities": {}})
                bidi.call("session.subscribe", {"events": ["log.entryAdded"]})
                yield _Firefox(bidi, f"Firefox {session['capabilities']['browserVersion']}", timeout_ms)
                with suppress(BrowserError, ConnectionClosed):  # it may close the connection before it answers
                    bidi.call("browser.close", {})
        finally:
            stop(process, CLOSE_GRACE_S)


# ------------------------------------------------------------------------------------------------ WebKit


class _WebDriver:
    """A W3C WebDriver session over HTTP: each command's value, or a BrowserError with the driver's words."""

    def __init__(self, base_url: str, timeout_ms: int) -> None:
        # past any wait of the page's own (the session's script timeout is 2x the page's)
        self.timeout_ms = timeout_ms
        self.http = httpx.Client(base_url=base_url, timeout=3 * timeout_ms / 1000)
        self.session = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = self.http.request(method, f"/session/{self.session}{path}" if self.session else path,
                                   json=body if body is not None or method != "POST" else {})
        value = answer.json().get("value")
        if answer.status_code != 200:
            raise BrowserError(f"{method} {path}: {value.get('error')}: {value.get('message')}")
        return value


# What WebKit's `problems` come from: listeners installed once the page has loaded (WebDriver classic has no log)
_WATCH = """() => {
    if (window.__wasinferProblems) return;
    const problems = window.__wasinferProblems = [];
    addEventListener("error", (event) => problems.push(`uncaught: ${event.message}`));
    addEventListener("unhandledrejection", (event) => problems.push(`uncaught: ${event.reason}`));
    const error = console.error.bind(console);
    console.error = (...args) => { problems.push(`console: ${args.join(" ")}`); error(...args); };
}"""


class _WebKitPage(BrowserPage):
    def __init__(self, driver: _WebDriver) -> None:
        self._driver = driver
        self.timeout_ms = driver.timeout_ms
        self._earlier: list[str] = []  # the problems of the documents this page has left

    @property
    def url(self) -> str:
        url: str = self._driver.call("GET", "/url")
        return url

    @property
    def problems(self) -> list[str]:
        return self._earlier + (self.evaluate("() => window.__wasinferProblems ?? []") or [])

    def _navigate(self, url: str) -> None:
        self._earlier = self.problems
        self._driver.call("POST", "/url", {"url": url})
        self.evaluate(_WATCH)

    def evaluate(self, function: str, argument: Any = None) -> Any:
        script = f"""const [json, done] = arguments;
            ({_in_page(function)})(json).then((value) => done({{value}}),
                (error) => done({{error: `${{error?.name}}: ${{error?.message ?? error}}`}}));"""
        answer = self._driver.call("POST", "/execute/async", {"script": script, "args": [json.dumps(argument)]})
        if "error" in answer:
            raise BrowserError(answer["error"])
        return None if answer.get("value") is None else json.loads(answer["value"])

    def drag(self, points: Sequence[tuple[float, float]]) -> None:
        self._driver.call("POST", "/actions", {"actions": [_mouse_stroke(points)]})
        self._driver.call("DELETE", "/actions")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self._driver.call("GET", "/screenshot")))


class _WebKit(Browser):
    name: BrowserName = "webkit"

    def __init__(self, driver: _WebDriver, version: str) -> None:
        self._driver = driver
        self.version = version
        self._home = driver.call("GET", "/window")  # the session's first tab, kept so that the session lives

    @contextmanager
    def new_page(self) -> Iterator[BrowserPage]:
        # a window of the one session (WebKitWebDriver has one browser per session): its HTTP cache is the
        # session's, and the pages served here say no-cache. A window, not a tab: a tab in the background is never
        # painted, and its screenshot never comes.
        tab = self._driver.call("POST", "/window/new", {"type": "window"})["handle"]
        self._driver.call("POST", "/window", {"handle": tab})
        try:
            yield _WebKitPage(self._driver)
        finally:
            self._driver.call("DELETE", "/window")
            self._driver.call("POST", "/window", {"handle": self._home})


@contextmanager
def _xvfb() -> Iterator[str]:
    """A display of Xvfb's own (the first free number, which it prints), on a Unix socket only."""
    process = subprocess.Popen([str(XVFB), "-displayfd", "1", "-nolisten", "tcp", "-screen", "0", "1280x1024x24"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        number = read_until(output_lines(process), "\n", LAUNCH_TIMEOUT_S)[-1].strip()
        yield f":{number}"
    finally:
        stop(process, CLOSE_GRACE_S)


@contextmanager
def _launch_webkit(simd: bool, timeout_ms: int) -> Iterator[Browser]:
    with _xvfb() as display:
        port = free_port()
        env = os.environ | {"DISPLAY": display} | ({} if simd else NO_SIMD_JSC_ENV)
        process = subprocess.Popen([str(WEBKIT_DRIVER), f"--port={port}", "--host=127.0.0.1"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        driver = _WebDriver(f"http://127.0.0.1:{port}", timeout_ms)
        try:
            deadline = time.monotonic() + LAUNCH_TIMEOUT_S
            while True:
                try:
                    if driver.call("GET", "/status").get("ready"):
                        break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise BrowserError(f"WebKitWebDriver did not start on port {port}") from None
                    time.sleep(0.1)
            session = driver.call("POST", "/session", {"capabilities": {}})
            driver.session = session["sessionId"]
            try:
                driver.call("POST", "/timeouts", {"script": 2 * timeout_ms, "pageLoad": timeout_ms})
                capabilities = session["capabilities"]
                yield _WebKit(driver, f"WebKitGTK {capabilities['browserVersion']} ({capabilities['browserName']})")
            finally:
                driver.call("DELETE", "")
        finally:
            driver.http.close()
            stop(process, CLOSE_GRACE_S)


# ------------------------------------------------------------------------------------------------ all three


@contextmanager
def launch(name: BrowserName, *, simd: bool = True, timeout_ms: int = PAGE_TIMEOUT_MS) -> Iterator[Browser]:
    """Start browser `name` (skipping the test, saying why, where it is absent) and close it after the block.
    `simd=False`: an engine with WebAssembly SIMD128 switched off, where it has such a switch (else a skip).
    `timeout_ms`: the longest wait of a page's own (a benchmark's large model may need more than a test's)."""
    problem = browser_problem(name)
    if problem is not None:
        pytest.skip(problem)
    starts = {"chromium": _launch_chromium, "firefox": _launch_firefox, "webkit": _launch_webkit}
    with starts[name](simd, timeout_ms) as browser:
        yield browser


@pytest.fixture(scope="module", params=BROWSERS)
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    """Each browser, launched once for the test module that imports this fixture."""
    with launch(request.param) as launched:
        yield launched
