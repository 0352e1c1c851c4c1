"""The web console at / (serving/console/): served by the server itself, and working in a real browser.

The page is a client of the server's public API: these tests run it in headless Chromium (tests/browser.py)
against real servers on 127.0.0.1 and check what it shows against what the API answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import chromium_page, requires_browser
from tests.serving.conftest import SCALE, start_server
from tests.serving.test_updates import desired  # noqa: F401 (a fixture)
from wasinfer.serving import Server

X = [1.0, 1.0, 1.0, 1.0]


@pytest.fixture
def console_server(repository: Path) -> Iterator[Server]:
    running = start_server(repository, inference_token="inference-secret")
    try:
        yield running
    finally:
        running.stop(grace=2)


def _wait_for(page: Any, condition: str, argument: Any = None) -> Any:
    """Wait (bounded by the page's default timeout) until the JavaScript `condition` is truthy; its value."""
    return page.wait_for_function(condition, arg=argument).json_value()


def _click_until(page: Any, selector: str, condition: str, attempts: int = 6) -> Any:
    """Click `selector` until the JavaScript `condition` is truthy (5 s per attempt); its value. The models table is
    rebuilt when a token changes, and on a loaded machine the rebuild can land between a click's mousedown and
    mouseup, on a new button: that click is lost, as a person's would be, who would click again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(attempts):
        page.click(selector)
        try:
            return page.wait_for_function(condition, timeout=5000).json_value()
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise
    return None


def test_the_console_is_as_open_as_metrics_and_names_what_it_does_not_have(console_server: Server) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{console_server.http_port}", timeout=30) as http:
        assert http.get("/v2/models/scale").status_code == 401  # the inference plane is closed ...
        page = http.get("/")  # ... the console and /metrics are not: they hold no secret and run nothing
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        assert http.get("/metrics").status_code == 200
        for name, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
            answer = http.get(f"/console/{name}")
            assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
            assert f"/console/{name}" in page.text
        assert "http://" not in page.text + http.get("/console/console.js").text  # no external URL
        assert http.get("/console/%2e%2e/v2/models/scale").status_code == 404  # only the console's own files
        assert http.get("/console/secret.txt").json() == {
            "error": "no console file /console/secret.txt (there are /console/index.html, /console/console.js, "
                     "/console/console.css)"}
        refused = http.post("/", content=b"{}")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET"


@requires_browser
def test_the_console_lists_the_models_runs_a_test_inference_and_shows_the_traffic(console_server: Server) -> None:
    base = f"http://127.0.0.1:{console_server.http_port}"
    with chromium_page() as page, httpx.Client(base_url=base, timeout=30) as http:
        page.goto(f"{base}/?every=300")
        rows = _wait_for(page, """() => {
            const rows = [...document.querySelectorAll('#models tbody tr')];
            return rows.length >= 4 && rows.map((r) => [...r.cells].slice(0, 3).map((c) => c.textContent));
        }""")
        index = http.post("/v2/repository/index", json={}).json()
        assert rows == [[row["name"], row["version"], row["state"]] for row in index]
        assert ["scale", "2", "UNAVAILABLE"] in rows

        # the form from scale version 2's metadata (x: FP32 [-1, 4]) is refused without the inference token ...
        page.click('#models tr[data-model="scale"][data-version="2"] button')
        said = _wait_for(page, "() => document.getElementById('try-model').textContent.match(/: \\d{3}: .*/)?.[0]")
        assert said.startswith(": 401: ") and page.is_hidden("#infer-form")  # its metadata needs the token too
        page.click("#tokens summary")
        page.fill("#inference-token", "inference-secret")
        _click_until(page, '#models tr[data-model="scale"][data-version="2"] button',
                     "() => document.querySelector('#inputs fieldset[data-input=\"x\"]')")
        assert page.input_value("#inputs [name=shape]") == "1, 4"
        assert page.input_value("#inputs [name=data]") == "0, 0, 0, 0"
        page.fill("#inputs [name=data]", " ".join(map(str, X)))
        page.click("#infer-form button[type=submit]")
        outputs = json.loads(_wait_for(page, "() => document.getElementById('answer').dataset.outputs"))
        assert outputs == [{"name": "y", "datatype": "FP32", "shape": [1, 4], "data": (SCALE[2] * X).tolist()}]
        assert "y: FP32 [1, 4]" in page.text_content("#answer")
        page.fill("#inputs [name=data]", "1 2 3")  # a bad input: the server's 400, shown as it says it
        page.click("#infer-form button[type=submit]")
        _wait_for(page, "() => document.getElementById('answer').className === 'error'")
        assert page.text_content("#answer").startswith("400: ")

        # the traffic table follows /metrics: requests made elsewhere show up as a rate
        headers = {"Authorization": "Bearer inference-secret"}
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X}]}
        for _ in range(30):
            assert http.post("/v2/models/scale/versions/2/infer", json=body, headers=headers).status_code == 200
        # a scrape that began before the last request may still land: wait for one that counts them all
        cells = _wait_for(page, """() => {
            const row = document.querySelector('#traffic tr[data-model="scale"]');
            const cells = row && Object.fromEntries([...row.cells].map((c, i) => [c.className || i, c.textContent]));
            return cells?.count === "32" && cells;
        }""")
        # the form's two (one refused), then ours
        assert float(cells["rate"]) > 0 and cells["count"] == "32" and cells["error"] == "1"
        assert re.fullmatch(r"[\d.]+ (µs|ms)", cells["p50"]) and re.fullmatch(r"[\d.]+ (µs|ms)", cells["p99"])
        assert "no desired state" in page.text_content("#desired-note")
        assert page.problems == [] or all("401" in p or "400" in p for p in page.problems), page.problems
    print(f"\nconsole: scale v2 {cells}")


@requires_browser
def test_the_console_shows_the_desired_and_the_served_version(tmp_path: Path,
                                                             desired: tuple[Path, Path]) -> None:  # noqa: F811
    _, config = desired
    server = start_server(tmp_path / "repository", desired_state=config)
    try:
        with chromium_page() as page:
            page.goto(f"http://127.0.0.1:{server.http_port}/?every=300")
            row = _wait_for(page, """() => {
                const row = document.querySelector('#desired tr[data-model="ai-model"]');
                return row && [...row.cells].map((c) => c.textContent);
            }""")
            assert page.problems == []
    finally:
        server.stop(grace=2)
    assert row == ["ai-model", "v1.0.0", "v1.0.0", "up to date"]


@requires_browser
def test_the_console_s_prometheus_reader_agrees_with_the_text_format(console_server: Server) -> None:
    """The parser on escaped label values and +Inf, and histogram_quantile's interpolation, as Prometheus does."""
    with chromium_page() as page:
        page.goto(f"http://127.0.0.1:{console_server.http_port}/")
        _wait_for(page, "() => window.wasinferConsole")
        parsed = page.evaluate("""() => wasinferConsole.parsePrometheus(
            '# HELP x y\\nm_bucket{model="a\\\\"b",le="+Inf"} 4\\nm_total 2.5e3\\n')""")
        assert parsed == {"m_bucket": [{"labels": {"model": 'a"b', "le": "+Inf"}, "value": 4}],
                          "m_total": [{"labels": {}, "value": 2500}]}
        buckets = [[0.001, 0], [0.002, 50], [0.004, 100], ["Infinity", 100]]
        median, p99, tail = page.evaluate("""(b) => {
            const buckets = b.map(([le, c]) => [Number(le), c]);
            return [0.5, 0.99, 1].map((q) => wasinferConsole.quantile(q, buckets));
        }""", buckets)
    assert median == pytest.approx(0.002) and p99 == pytest.approx(0.00396) and tail == pytest.approx(0.004)
