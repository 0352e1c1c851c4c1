"""`wasinfer demo --web`: the digits model in a browser page, run by the npm package, served from 127.0.0.1.

The page (js/demo/) and the package (js/) are static files and the module is the same digits.wasm that
`wasinfer serve` runs with no repository (serving/demo.py builds it once). A stdlib http.server is enough:
a handful of small files for one local browser. Each file is found under one of the site's mounts, a URL
prefix mapped to a directory (or to one file), so the page at /demo/ imports the package as ../index.js and
loads the model from /models/digits.wasm, and the tests mount a parity set beside them the same way.

Where js/ is: in a source checkout, the repository's own js/ beside src/; in an installed wheel,
<prefix>/share/wasinfer/js, where pyproject's data-files put it (the wheel carries the package and the page,
not the node tests).
"""

from __future__ import annotations

import mimetypes
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from rich.console import Console

# Types the browser needs right: a module script must be JavaScript, and compileStreaming wants application/wasm.
CONTENT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
                 ".json": "application/json", ".html": "text/html; charset=utf-8", ".css": "text/css",
                 ".ts": "text/plain; charset=utf-8", ".md": "text/plain; charset=utf-8", ".png": "image/png",
                 ".bin": "application/octet-stream"}
DEMO_PAGE = "/demo/"
MODEL_URL = "/models/digits.wasm"


def js_package_dir() -> Path:
    """The npm package's directory (index.js, worker.js, demo/): the checkout's js/ or the wheel's copy."""
    checkout = Path(__file__).resolve().parents[3] / "js"  # src/wasinfer/cli/webdemo.py → the repository root
    installed = Path(sys.prefix) / "share" / "wasinfer" / "js"
    for candidate in (checkout, installed):
        if (candidate / "index.js").is_file() and (candidate / "demo" / "index.html").is_file():
            return candidate
    raise FileNotFoundError(f"the wasinfer JavaScript package is in neither {checkout} (a source checkout) nor "
                            f"{installed} (an installed wheel)")


class StaticSite(ThreadingHTTPServer):
    """An HTTP server of static files under mounts: URL prefix ("/models/digits.wasm", "/parity/", "/") → path.

    The longest prefix that matches wins; a prefix ending in "/" maps to a directory, any other to one file.
    Nothing outside a mount's directory is reachable (no "..", no symlink out of it)."""

    daemon_threads = True

    def __init__(self, host: str, port: int, mounts: Mapping[str, Path], index: str = DEMO_PAGE) -> None:
        self.mounts = sorted(((prefix, Path(path).resolve()) for prefix, path in mounts.items()),
                             key=lambda mount: len(mount[0]), reverse=True)
        self.index = index  # where "/" redirects
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def resolve(self, url_path: str) -> Path | None:
        """The file `url_path` names, or None (not under a mount, outside its directory, or absent)."""
        for prefix, target in self.mounts:
            if prefix.endswith("/") and url_path.startswith(prefix):
                candidate = (target / url_path[len(prefix):]).resolve()
                if candidate.is_dir():
                    candidate = candidate / "index.html"
                if candidate.is_relative_to(target) and candidate.is_file():
                    return candidate
                return None
            if url_path == prefix:
                return target if target.is_file() else None
        return None


class _Handler(SimpleHTTPRequestHandler):
    server: StaticSite

    def do_GET(self) -> None:  # http.server names its handlers so
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, with_body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if path == "/" and self.server.index != "/":
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", self.server.index)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        file = self.server.resolve(path)
        if file is None:
            self.send_error(HTTPStatus.NOT_FOUND, f"no file {path}")
            return
        body = file.read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", CONTENT_TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0]
                         or "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")  # a rebuilt module or an edited page shows on reload
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a page load is a dozen requests: the console shows the URL, not them


def demo_mounts(model: Path) -> dict[str, Path]:
    """The demo site: the package (and its demo/ page) at /, the module at MODEL_URL."""
    return {"/": js_package_dir(), MODEL_URL: model}


@contextmanager
def serving(mounts: Mapping[str, Path], host: str = "127.0.0.1", port: int = 0) -> Iterator[StaticSite]:
    """A StaticSite answering on a thread of its own for the `with` block (tests and benchmarks)."""
    site = StaticSite(host, port, mounts)
    thread = threading.Thread(target=site.serve_forever, name="wasinfer-web", daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.shutdown()
        site.server_close()
        thread.join(timeout=10)


def run_web_demo(home: Path, console: Console, host: str, port: int) -> int:
    """Build the demo module if needed and serve the page until Ctrl+C."""
    from wasinfer.serving.demo import DEMO_MODEL, prepare_demo_repository

    repository, _, _ = prepare_demo_repository(home)
    model = repository / DEMO_MODEL / "1" / "model.wasm"
    site = StaticSite(host, port, demo_mounts(model))
    console.print(f"module   {model} ({model.stat().st_size:,} bytes)")
    console.print(f"package  {js_package_dir()}")
    console.print(f"open     [bold]{site.url}{DEMO_PAGE}[/]   (Ctrl+C stops)")
    try:
        site.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        site.server_close()
    return 0
