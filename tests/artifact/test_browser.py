"""The npm package and the digits demo page in real browsers (Chromium, Firefox, WebKit), against the Python runtime.

`wasinfer demo --web`'s own server (cli/webdemo.py) serves js/ and the module on 127.0.0.1; the page runs the
module in a Web Worker through the package, and what it shows must be what wasmtime computes on the same module's
plain SIMD128 code, bit for bit. The package's parity set (test_js_package.py's modules) runs in the same browser,
on the page's thread and in a worker. Each test runs in each browser (tests/browser.py: one launch per browser for
this module), and skips saying what is missing where a browser is absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.artifact.engines import PLAIN
from tests.artifact.test_js_package import write_parity_set
from tests.browser import SIMD_SWITCHABLE, Browser, BrowserName, launch
from wasinfer.cli.webdemo import DEMO_PAGE, MODEL_URL, demo_mounts, js_package_dir, serving
from wasinfer.registry.demo import load_test_split
from wasinfer.runtime import WasmModel
from wasinfer.serving.demo import DEMO_MODEL, prepare_demo_repository

# one xdist worker runs the module (make test's --dist loadgroup), so each browser is launched once for it
pytestmark = pytest.mark.xdist_group("browsers")

HELD_OUT = 60  # digits of the test split the page classifies one by one
# what load() says in an engine without SIMD128 (js/index.js: assertSupported), which the demo page shows
NO_SIMD = "this JavaScript engine lacks WebAssembly SIMD128 (fixed-width SIMD), which every wasinfer module uses"
# the engines' relaxed SIMD as each ships it: V8 and SpiderMonkey have it on, JavaScriptCore (Safari) off
RELAXED_SIMD = {"chromium": True, "firefox": True, "webkit": False}

CLASSIFY_ALL = """async (digits) => {
  await window.wasinferDemo.ready;
  const results = [];
  for (const pixels of digits) results.push(await window.wasinferDemo.classify(pixels));
  return results;
}"""


@dataclass
class Demo:
    module: Path
    x_test: np.ndarray
    y_test: np.ndarray


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The digits module and its test split, built once for the module's tests in every browser."""
    home = tmp_path_factory.mktemp("demo")
    repository, _, _ = prepare_demo_repository(home)
    x_test, y_test = load_test_split(home / "demo")
    return Demo(repository / DEMO_MODEL / "1" / "model.wasm", x_test, y_test)


@pytest.fixture(scope="module")
def parity(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """test_js_package.py's parity set (modules, inputs, wasmtime's outputs and refusals), written once."""
    directory = tmp_path_factory.mktemp("parity")
    return directory, write_parity_set(directory)


def test_the_demo_page_classifies_held_out_digits_as_the_python_runtime_does(browser: Browser, demo: Demo,
                                                                            tmp_path: Path) -> None:
    python = WasmModel(demo.module.read_bytes(), PLAIN)
    expected = [python.run({"input": demo.x_test[i:i + 1]}) for i in range(HELD_OUT)]
    with serving(demo_mounts(demo.module)) as site, browser.new_page() as page:
        page.goto(site.url + "/")  # redirected to the page
        assert page.url == site.url + DEMO_PAGE
        results = page.evaluate(CLASSIFY_ALL, demo.x_test[:HELD_OUT].tolist())
        shown = page.text_content("#label")
        timing = page.text_content("#timing") or ""
        tick = page.evaluate("() => window.wasinferDemo.tick")
        screenshot = tmp_path / f"demo-page-{browser.name}.png"
        page.screenshot(screenshot)
        assert page.problems == []
    print(f"\nscreenshot of the demo page in {browser.version}: {screenshot}")
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    probabilities = np.array([r["probabilities"] for r in results], np.float64)
    wanted = np.concatenate([e["probabilities"] for e in expected])
    # float32 values cross to JavaScript as doubles, exactly: back to float32 they must be the same bits
    assert np.array_equal(probabilities.astype(np.float32).view(np.uint32), wanted.view(np.uint32))
    labels = [r["label"] for r in results]
    assert labels == [int(e["label"][0]) for e in expected]
    assert shown == str(labels[-1]) and "ms this inference" in timing
    # the time shown is the mean of the last 50 runs, which a coarse clock (1 ms in Firefox and WebKit) leaves
    # right where a median reads 0; each run reads a whole number of ticks
    mean = re.search(r"mean (\d+\.\d\d) ms over the last 50\b", timing)
    assert mean is not None and float(mean[1]) > 0, timing
    assert float(mean[1]) == pytest.approx(np.mean([r["ms"] for r in results[-50:]]), abs=0.006)
    assert ("clock ticks every" in timing) == (tick >= 0.5), timing
    accuracy = float(np.mean(np.array(labels) == demo.y_test[:HELD_OUT]))
    print(f"{HELD_OUT} held-out digits in {browser.version}: probabilities bit-equal to wasmtime's, accuracy "
          f"{accuracy:.2%}; shown: {timing!r} (the clock's tick {tick:.3g} ms)")
    assert accuracy >= 0.9


def test_a_digit_drawn_with_the_mouse_becomes_an_8x8_input_and_a_prediction(browser: Browser, demo: Demo) -> None:
    """The drawing path: a stroke on the pad is scaled to the 32x32 bitmap, counted per 4x4 block (0..16) and
    classified; a vertical bar fills the middle columns of the input and nothing else."""
    with serving(demo_mounts(demo.module)) as site, browser.new_page() as page:
        page.goto(site.url + DEMO_PAGE)
        page.evaluate("() => window.wasinferDemo.ready")
        box = page.box("#pad")
        x = box["x"] + box["width"] / 2
        page.drag([(x, box["y"] + 40 + step * (box["height"] - 80) / 10) for step in range(11)])
        page.wait_for("() => window.wasinferDemo.pending() !== null")
        page.evaluate("() => window.wasinferDemo.pending()")
        pixels = np.array(page.evaluate("() => Array.from(wasinferDemo.toDigitPixels(document.getElementById('pad')))"))
        label = page.text_content("#label")
        assert page.problems == []
    grid = pixels.reshape(8, 8)
    assert grid.min() == 0 and 4 <= grid.max() <= 16, grid  # counts of a 4x4 block's set pixels
    # scaled to the bitmap's full height, centred: a bar down the middle columns, every row of it
    assert np.all(grid[:, [0, 1, 6, 7]] == 0) and np.all(grid[:, 3:5].sum(axis=1) > 0), grid
    assert label is not None and label.isdigit()


def test_the_package_s_parity_cases_run_in_the_browser_as_in_python(browser: Browser,
                                                                     parity: tuple[Path, dict[str, Any]]) -> None:
    """test_js_package.py's modules (static conv, symbolic dims, run-time output shapes, ...) on the page's thread
    and in a Web Worker: outputs byte for byte, refusals word for word, a trap a ModelFault after which the next
    run works, the modules the runtime refuses refused at load. Asked for the relaxed-SIMD variant, an
    engine with relaxed SIMD runs it (within the fused multiply-add's tolerance of wasmtime's relaxed outputs) and
    one without runs the plain code (bit for bit)."""
    directory, manifest = parity
    with serving({"/": js_package_dir(), "/parity/": directory}) as site, browser.new_page() as page:
        page.goto(site.url + "/test/browser.html")
        result = page.evaluate("() => window.parityResult")
        assert page.problems == []
    assert result["failures"] == []
    assert result["names"] == [m["name"] for m in manifest["modules"]]
    assert {"cnn", "symbolic", "nonzero", "topk"} <= set(result["names"])
    runs = sum(len(m["runs"]) for m in manifest["modules"])
    assert result["runs"] == 2 * runs and result["refusals"] == 2 * sum(len(m["errors"]) for m in manifest["modules"])
    assert result["faults"] == 2 * sum(len(m["faults"]) for m in manifest["modules"]) > 0
    assert result["refusedAtLoad"] == 2 * len(manifest["refused"]) > 0
    assert result["features"] == {"simd": True, "relaxedSimd": RELAXED_SIMD[browser.name]}
    relaxed = result["relaxed"]
    assert relaxed["runs"] == runs
    if relaxed["ran"] == "plain":
        assert relaxed["bitEqual"] == runs  # the plain code ran: wasmtime's plain outputs, bit for bit
    print(f"\n{browser.version}: {result['modules']} modules, {result['runs']} runs bit-equal and "
          f"{result['refusals']} refusals word for word, {result['faults']} traps as ModelFaults, "
          f"{result['refusedAtLoad']} modules refused at load (page and worker); features {result['features']}; "
          f"relaxed variant asked for: the {relaxed['ran']} code ran, {relaxed['bitEqual']}/{runs} runs bit-equal "
          f"to wasmtime's, largest relative difference {relaxed['largestDifference']:.2g}")


LOAD_EACH_WAY = """async ([urls, pixels]) => {
  const { load } = await import("/index.js");
  const sources = {
    "URL served as application/wasm (compileStreaming)": () => urls.wasm,
    "URL served as application/octet-stream": () => urls.bin,
    "URL object": () => new URL(urls.wasm, location.href),
    "Response": () => fetch(urls.wasm),
    "ArrayBuffer": async () => (await fetch(urls.bin)).arrayBuffer(),
    "relaxed variant asked for, from a URL": () => urls.wasm,
  };
  const answers = {};
  for (const [way, source] of Object.entries(sources)) {
    const model = await load(await source(), { relaxedSimd: way.startsWith("relaxed") });
    const outputs = await model.run({ [model.inputs[0].name]: { data: Float32Array.from(pixels), shape: [1, 64] } });
    answers[way] = Array.from(outputs.probabilities.data);
  }
  const types = {};
  for (const url of [urls.wasm, urls.bin]) types[url] = (await fetch(url)).headers.get("content-type");
  return { answers, types };
}"""


def test_a_module_loads_from_every_kind_of_source_streamed_or_not(browser: Browser, demo: Demo,
                                                                 tmp_path: Path) -> None:
    """load() from a URL served as application/wasm (compiled while it downloads), from one served as something
    else (read whole, then compiled: compileStreaming would refuse it), from a URL object, a Response and the
    bytes; the same probabilities each way, wasmtime's bit for bit."""
    octets = tmp_path / "digits.bin"
    octets.write_bytes(demo.module.read_bytes())
    urls = {"wasm": MODEL_URL, "bin": "/models/digits.bin"}
    python = WasmModel(demo.module.read_bytes(), PLAIN).run({"input": demo.x_test[:1]})
    with serving(demo_mounts(demo.module) | {urls["bin"]: octets}) as site, browser.new_page() as page:
        page.goto(site.url + DEMO_PAGE)
        seen = page.evaluate(LOAD_EACH_WAY, [urls, demo.x_test[0].tolist()])
        assert page.problems == []
    assert seen["types"] == {urls["wasm"]: "application/wasm", urls["bin"]: "application/octet-stream"}
    assert len(seen["answers"]) == 6
    for way, probabilities in seen["answers"].items():
        got = np.array(probabilities, np.float64).astype(np.float32)
        if way.startswith("relaxed") and RELAXED_SIMD[browser.name]:  # the fused multiply-add's rounding
            assert np.allclose(got, python["probabilities"][0], rtol=1e-5, atol=1e-5), way
        else:
            assert np.array_equal(got.view(np.uint32), python["probabilities"][0].view(np.uint32)), way


# a module worker's script served as text/plain: Chromium and Firefox refuse to run it, WebKit runs it
RUNS_A_TEXT_PLAIN_WORKER = {"chromium": False, "firefox": False, "webkit": True}


def test_a_worker_whose_script_did_not_load_is_named_with_what_to_check(browser: Browser, demo: Demo,
                                                                          tmp_path: Path) -> None:
    """The demo page's worker (wasinfer/worker-thread) missing, or served as text/plain: the browser's error event
    carries no message (a bare Event, in every engine), so the package names the script and the two likely causes
    instead of "[object Event]"; a later call fails at once with the same error rather than waiting for ever."""
    as_text = tmp_path / "worker-thread.txt"
    as_text.write_bytes((js_package_dir() / "worker-thread.js").read_bytes())
    shown = {}
    for case, script in (("missing", tmp_path / "absent.js"), ("text/plain", as_text)):
        with serving(demo_mounts(demo.module) | {"/worker-thread.js": script}) as site, browser.new_page() as page:
            page.goto(site.url + DEMO_PAGE)
            shown[case] = page.wait_for("() => document.body.dataset.state !== undefined && "
                                        "[document.body.dataset.state, document.getElementById('status').textContent]")
            if case == "missing":
                again = page.evaluate("""async () => {
                    const model = new (await import("/worker.js")).WorkerModel(new Worker("/worker-thread.js",
                        { type: "module" }), "/worker-thread.js");
                    const answer = (call) => Promise.race([call.catch((error) => error.message),
                        new Promise((resolve) => setTimeout(() => resolve("no answer within 20 s"), 20_000))]);
                    return [await answer(model.call({ op: "run" })), await answer(model.call({ op: "run" }))];
                }""")
                url = site.url
    failed = (f"the model did not load: the wasinfer worker failed: its script {url}/worker-thread.js did not load "
              "(missing, or not served with a JavaScript MIME type such as text/javascript, which module workers need)")
    assert shown["missing"] == ["failed", failed]
    assert again[0] == again[1] == failed.removeprefix("the model did not load: ").replace(url, "")
    if RUNS_A_TEXT_PLAIN_WORKER[browser.name]:
        assert shown["text/plain"][0] == "ready", shown
    else:
        assert shown["text/plain"] == ["failed", failed.replace(url, site.url)]
    print(f"\n{browser.version}, the worker's script missing: {shown['missing'][1]}")


@pytest.mark.parametrize("name", SIMD_SWITCHABLE)
def test_an_engine_without_simd128_is_refused_saying_so(name: BrowserName, demo: Demo) -> None:
    """An engine with SIMD128 switched off, as Safari before 16.4 (JavaScriptCore's option; V8 and SpiderMonkey
    have no such switch any more: tests/browser.py SIMD_SWITCHABLE): features() says so, load() refuses with the
    error naming what is missing and which engines have it (not a CompileError), and the demo page shows that
    error from its worker."""
    with launch(name, simd=False) as engine, serving(demo_mounts(demo.module)) as site, engine.new_page() as page:
        page.goto(site.url + DEMO_PAGE)
        status = page.wait_for("() => document.body.dataset.state === 'failed' && "
                               "document.getElementById('status').textContent")
        found = page.evaluate("async () => (await import('/index.js')).features()")
        refusal = page.evaluate("""async (url) => {
            const { load } = await import('/index.js');
            try { await load(url); return null; } catch (error) { return [error.name, error.message]; }
        }""", MODEL_URL)
    assert found == {"simd": False, "relaxedSimd": False}
    assert refusal is not None and refusal[0] == "Error" and refusal[1].startswith(NO_SIMD), refusal
    assert "Firefox >= 89, Safari >= 16.4" in refusal[1]
    assert status == f"the model did not load: {refusal[1]}"
    print(f"\n{engine.version} without SIMD128: {status}")
