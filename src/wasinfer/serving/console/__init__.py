"""The web console of `wasinfer serve`: a static page at `/` (and its files under `/console/`), answered from memory.

The page (index.html, console.js, console.css: no framework, no external URL) is a client of the server's own
API, nothing more: the models and their versions from the repository index, a test-inference form built from a
model's metadata, request rate and latency from /metrics, and, with --desired-state, the version each model
serves against the one it should (the wasinfer_model_version_info gauge). So it is as open as /metrics and
carries no secret: where a token guards the API, the page asks for it, keeps it in its form only, and sends it
as the Authorization header of the calls that need it (the server checks it as for any client).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from wasinfer.serving.errors import NotFound

PREFIX = "/console/"
FILES = {"index.html": b"text/html; charset=utf-8", "console.js": b"text/javascript; charset=utf-8",
         "console.css": b"text/css; charset=utf-8"}


def is_console_path(path: str) -> bool:
    """Whether the request is the console's: `/` or a file under /console/ (one string test on the hot path)."""
    return path == "/" or path.startswith(PREFIX)


@cache
def console_file(path: str) -> tuple[bytes, bytes]:
    """The body and content type of the console's `/` or /console/FILE; NotFound names the files there are."""
    name = "index.html" if path in ("/", PREFIX) else path.removeprefix(PREFIX)
    if name not in FILES:
        raise NotFound(f"no console file {path} (there are {', '.join(PREFIX + f for f in FILES)})")
    return files(__name__).joinpath(name).read_bytes(), FILES[name]
