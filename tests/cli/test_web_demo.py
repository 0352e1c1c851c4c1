"""`wasinfer demo --web`: the page, the package and the module over HTTP on 127.0.0.1, until Ctrl+C.

What the browser does with them is tests/artifact/test_browser.py; here, what the server answers: the types a
browser insists on (module scripts as JavaScript, the model as application/wasm for streaming compilation), the
redirect to the page, and nothing outside its mounts.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.processes import output_lines, read_until
from wasinfer.cli.webdemo import js_package_dir, serving


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers["Content-Type"], refused.read()


def test_demo_web_serves_the_page_the_package_and_the_module_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = dict(os.environ, WASINFER_HOME=str(tmp_path / "home"), COLUMNS="200")
    # Ctrl+C as a terminal sends it to a foreground command, whose SIGINT is at its default: a test run started in
    # the background by a non-interactive shell (`make test &`) hands its children SIGINT ignored, and Python then
    # turns no SIGINT into KeyboardInterrupt
    process = subprocess.Popen([sys.executable, "-m", "wasinfer.cli.main", "demo", "--web", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        printed = "".join(read_until(output_lines(process), "Ctrl+C", timeout=120))
        match = re.search(r"(http://127\.0\.0\.1:\d+)/demo/", printed)
        assert match, printed
        base = match[1]
        module = tmp_path / "home" / "repository" / "digits" / "1" / "model.wasm"
        assert _get(f"{base}/models/digits.wasm") == (200, "application/wasm", module.read_bytes())
        status, kind, page = _get(f"{base}/")  # redirected to the page
        assert (status, kind) == (200, "text/html; charset=utf-8") and b"demo.js" in page
        for script in ("/demo/demo.js", "/worker.js", "/worker-thread.js", "/index.js"):
            assert _get(base + script)[:2] == (200, "text/javascript"), script
        assert _get(f"{base}/../pyproject.toml")[0] == 404
        assert _get(f"{base}/demo/%2e%2e/%2e%2e/pyproject.toml")[0] == 404
        assert _get(f"{base}/models/other.wasm")[0] == 404
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.parametrize("path", ["/parity/../secret.txt", "/parity/%2e%2e/secret.txt", "/parity/link.txt",
                                  "/parity/missing.bin", "/elsewhere"])
def test_a_mount_never_reaches_outside_its_directory(tmp_path: Path, path: str) -> None:
    (tmp_path / "secret.txt").write_text("not served")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "ok.json").write_text("{}")
    (shared / "link.txt").symlink_to(tmp_path / "secret.txt")
    with serving({"/parity/": shared, "/index.js": js_package_dir() / "index.js"}) as site:
        assert _get(f"{site.url}/parity/ok.json") == (200, "application/json", b"{}")
        assert _get(f"{site.url}/index.js")[:2] == (200, "text/javascript")
        status, _, body = _get(site.url + path)
    assert status == 404 and b"not served" not in body


def test_an_installed_wheel_s_copy_of_the_package_is_found_and_lists_every_file_the_page_needs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a checkout, js/ is <prefix>/share/wasinfer/js, where pyproject's data-files put it: they must list
    the package's runtime files and every file of the page (a file added to js/demo/ and not there would be
    missing from the wheel only)."""
    import tomllib

    from wasinfer.cli import webdemo

    checkout = js_package_dir()
    data_files = tomllib.loads((checkout.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    shipped = {Path(source) for files in data_files.values() for source in files}
    package = {Path("js") / name for name in ("index.js", "index.d.ts", "worker.js", "worker.d.ts",
                                              "worker-thread.js", "package.json", "README.md")}
    page = {path.relative_to(checkout.parent) for path in (checkout / "demo").iterdir()}
    assert shipped == package | page
    installed = tmp_path / "prefix" / "share" / "wasinfer"
    for source in shipped:  # laid out as pip installs the wheel's data
        target = installed / source
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((checkout.parent / source).read_bytes())
    monkeypatch.setattr(webdemo, "__file__", str(tmp_path / "site-packages" / "wasinfer" / "cli" / "webdemo.py"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    assert js_package_dir() == installed / "js"
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match=r"neither .* nor .*elsewhere/share/wasinfer/js"):
        js_package_dir()
