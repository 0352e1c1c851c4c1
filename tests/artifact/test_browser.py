"""The npm package and the digits demo page in a real browser (headless Chromium), against the Python runtime.

`wasinfer demo --web`'s own server (cli/webdemo.py) serves js/ and the module on 127.0.0.1; the page runs the
module in a Web Worker through the package, and what it shows must be what wasmtime computes on the same module's
plain SIMD128 code, bit for bit. The package's parity set (test_js_package.py's modules) runs in the same browser,
on the page's thread and in a worker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.artifact.engines import PLAIN
from tests.artifact.test_js_package import write_parity_set
from tests.browser import chromium_page, requires_browser
from wasinfer.cli.webdemo import DEMO_PAGE, demo_mounts, js_package_dir, serving
from wasinfer.registry.demo import load_test_split
from wasinfer.runtime import WasmModel
from wasinfer.serving.demo import DEMO_MODEL, prepare_demo_repository

HELD_OUT = 60  # digits of the test split the page classifies one by one

CLASSIFY_ALL = """async (digits) => {
  await window.wasinferDemo.ready;
  const results = [];
  for (const pixels of digits) results.push(await window.wasinferDemo.classify(pixels));
  return results;
}"""


@requires_browser
def test_the_demo_page_classifies_held_out_digits_as_the_python_runtime_does(tmp_path: Path) -> None:
    repository, _, _ = prepare_demo_repository(tmp_path)
    module = repository / DEMO_MODEL / "1" / "model.wasm"
    x_test, y_test = load_test_split(tmp_path / "demo")
    python = WasmModel(module.read_bytes(), PLAIN)
    expected = [python.run({"input": x_test[i:i + 1]}) for i in range(HELD_OUT)]
    with serving(demo_mounts(module)) as site, chromium_page() as page:
        page.goto(site.url + "/")  # redirected to the page
        assert page.url == site.url + DEMO_PAGE
        results = page.evaluate(CLASSIFY_ALL, x_test[:HELD_OUT].tolist())
        shown = page.text_content("#label")
        timing = page.text_content("#timing")
        screenshot = tmp_path / "demo-page.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert page.problems == []
    print(f"\nscreenshot of the demo page: {screenshot}")
    probabilities = np.array([r["probabilities"] for r in results], np.float64)
    wanted = np.concatenate([e["probabilities"] for e in expected])
    # float32 values cross to JavaScript as doubles, exactly: back to float32 they must be the same bits
    assert np.array_equal(probabilities.astype(np.float32).view(np.uint32), wanted.view(np.uint32))
    labels = [r["label"] for r in results]
    assert labels == [int(e["label"][0]) for e in expected]
    assert shown == str(labels[-1]) and "ms this inference" in (timing or "")
    accuracy = float(np.mean(np.array(labels) == y_test[:HELD_OUT]))
    print(f"{HELD_OUT} held-out digits in Chromium: probabilities bit-equal to wasmtime's, accuracy {accuracy:.2%}, "
          f"median {np.median([r['ms'] for r in results]):.2f} ms per worker round trip")
    assert accuracy >= 0.9


@requires_browser
def test_a_digit_drawn_with_the_mouse_becomes_an_8x8_input_and_a_prediction(tmp_path: Path) -> None:
    """The drawing path: a stroke on the pad is scaled to the 32x32 bitmap, counted per 4x4 block (0..16) and
    classified; a vertical bar fills the middle columns of the input and nothing else."""
    repository, _, _ = prepare_demo_repository(tmp_path)
    with serving(demo_mounts(repository / DEMO_MODEL / "1" / "model.wasm")) as site, chromium_page() as page:
        page.goto(site.url + DEMO_PAGE)
        page.evaluate("window.wasinferDemo.ready")
        box = page.locator("#pad").bounding_box()
        assert box is not None
        x = box["x"] + box["width"] / 2
        page.mouse.move(x, box["y"] + 40)
        page.mouse.down()
        for step in range(1, 11):
            page.mouse.move(x, box["y"] + 40 + step * (box["height"] - 80) / 10)
        page.mouse.up()
        page.evaluate("window.wasinferDemo.pending()")
        pixels = np.array(page.evaluate("Array.from(wasinferDemo.toDigitPixels(document.getElementById('pad')))"))
        label = page.text_content("#label")
        assert page.problems == []
    grid = pixels.reshape(8, 8)
    assert grid.min() == 0 and 4 <= grid.max() <= 16, grid  # counts of a 4x4 block's set pixels
    # scaled to the bitmap's full height, centred: a bar down the middle columns, every row of it
    assert np.all(grid[:, [0, 1, 6, 7]] == 0) and np.all(grid[:, 3:5].sum(axis=1) > 0), grid
    assert label is not None and label.isdigit()


@requires_browser
def test_the_package_s_parity_cases_run_in_chromium_as_in_python(tmp_path: Path) -> None:
    """test_js_package.py's modules (static conv, symbolic dims, run-time output shapes, ...) on the page's thread
    and in a Web Worker: outputs byte for byte, refusals word for word."""
    parity = tmp_path / "parity"
    parity.mkdir()
    manifest = write_parity_set(parity)
    with serving({"/": js_package_dir(), "/parity/": parity}) as site, chromium_page() as page:
        page.goto(site.url + "/test/browser.html")
        result = page.evaluate("window.parityResult")
        assert page.problems == []
    assert result["failures"] == []
    assert result["names"] == [m["name"] for m in manifest["modules"]]
    assert {"cnn", "symbolic", "nonzero", "topk"} <= set(result["names"])
    runs = 2 * sum(len(m["runs"]) for m in manifest["modules"])
    assert result["runs"] == runs and result["refusals"] == 2 * sum(len(m["errors"]) for m in manifest["modules"])
    print(f"\nChromium: {result['modules']} modules, {result['runs']} runs bit-equal and {result['refusals']} refusals "
          f"word for word (page and worker); features {result['features']}")
