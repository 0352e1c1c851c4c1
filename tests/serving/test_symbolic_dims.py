"""A served model with symbolic input dims (ABI version 3): REST and gRPC run every size in the range with outputs of
the run's shape, model metadata says -1 on those axes, and a size outside its range, or two inputs that give one
symbol different sizes, are the client's error (400 / INVALID_ARGUMENT) naming what is wrong. A leading symbolic dim
is a size of the one run, never a batch: the server neither checks it against max_batch nor merges requests on it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.model_zoo import ROWS, WIDTHS, rows_model, widths_model
from tests.parity import ort_run
from tests.serving.conftest import SCALE, Repo, grpc_client, scale_model, start_server
from wasinfer.artifact.convert import convert_model
from wasinfer.serving import Server
from wasinfer.serving.models import INLINE_SECONDS
from wasinfer.serving.updater import smoke_inputs

WIDTH_SIZES = (4, 17, 40)  # the range's smallest, one between, its largest
ROW_SIZES = (2, 5, 8)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """widths and rows (symbolic dims) and scale (batched: the control for dynamic batching), with batching on for
    every model that can batch, at a delay long enough for concurrent requests to merge."""
    root = tmp_path_factory.mktemp("symbolic")
    for name, model, (shapes, ranges) in (("widths", widths_model(), WIDTHS), ("rows", rows_model(), ROWS)):
        path = root / name / "1" / "model.wasm"
        path.parent.mkdir(parents=True)
        path.write_bytes(convert_model(model, shapes, input_ranges=ranges, name=name).wasm)
    Repo(root).add_wasm("scale", 1, scale_model(SCALE[1]))
    running = start_server(root, batch_delay_us=50_000)
    try:
        yield running
    finally:
        running.stop(grace=2)


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def grpc(server: Server) -> Iterator[grpcclient.InferenceServerClient]:
    with grpc_client(server) as client:
        yield client


def _pair(width_a: int, width_b: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": rng.standard_normal((1, 2, width_a)).astype(np.float32),
            "b": rng.standard_normal((1, 2, width_b or width_a)).astype(np.float32)}


def _rest_body(feeds: dict[str, np.ndarray]) -> dict[str, object]:
    return {"inputs": [{"name": name, "shape": list(array.shape), "datatype": "FP32", "data": array.ravel().tolist()}
                       for name, array in feeds.items()]}


def _grpc_inputs(feeds: dict[str, np.ndarray]) -> list[grpcclient.InferInput]:
    inputs = []
    for name, array in feeds.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def test_rest_and_grpc_run_every_size_in_range_with_the_run_s_output_shape(
        http: httpx.Client, grpc: grpcclient.InferenceServerClient) -> None:
    model = widths_model()
    for width in WIDTH_SIZES:
        feeds = _pair(width, seed=width)
        want = ort_run(model, feeds)[0]
        assert want.shape == (1, 4, (width + 1) // 2)
        response = http.post("/v2/models/widths/infer", json=_rest_body(feeds))
        assert response.status_code == 200, response.text
        [y] = response.json()["outputs"]
        assert y["shape"] == list(want.shape)
        np.testing.assert_allclose(np.reshape(y["data"], want.shape), want, rtol=1e-4, atol=1e-5)
        got = grpc.infer("widths", _grpc_inputs(feeds)).as_numpy("y")
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_metadata_says_minus_one_on_symbolic_axes(http: httpx.Client, grpc: grpcclient.InferenceServerClient) -> None:
    """KServe's convention for a variable dim; the range itself is in the module's metadata (wasinfer info)."""
    metadata = http.get("/v2/models/widths").json()
    assert [(t["name"], t["shape"]) for t in metadata["inputs"]] == [("a", [1, 2, -1]), ("b", [1, 2, -1])]
    assert [(t["name"], t["shape"]) for t in metadata["outputs"]] == [("y", [1, 4, -1])]
    answer = grpc.get_model_metadata("widths")
    assert [(t.name, list(t.shape)) for t in answer.inputs] == [("a", [1, 2, -1]), ("b", [1, 2, -1])]
    assert [(t.name, list(t.shape)) for t in answer.outputs] == [("y", [1, 4, -1])]
    assert http.get("/v2/models/rows").json()["inputs"][0]["shape"] == [-1, 4]


@pytest.mark.parametrize(("feeds", "message"), [
    (_pair(41), "input 'a': axis 2 is 41, outside its range 4..40"),
    (_pair(3), "input 'a': axis 2 is 3, outside its range 4..40"),
    (_pair(8, 9), "input 'b': axis 2 is 9, but it is the dim 'W' that input 'a' has as 8 (axis 2)"),
    ({"a": np.zeros((1, 3, 8), np.float32), "b": np.zeros((1, 3, 8), np.float32)},
     "input 'a': expected shape [1, 2, 4..40] (MIN..MAX: a size in that range) for model 'widths', got [1, 3, 8]"),
], ids=["above", "below", "symbol disagrees", "fixed dim"])
def test_a_size_the_module_cannot_run_is_the_client_s_error(
        http: httpx.Client, grpc: grpcclient.InferenceServerClient, feeds: dict[str, np.ndarray], message: str) -> None:
    response = http.post("/v2/models/widths/infer", json=_rest_body(feeds))
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    with pytest.raises(InferenceServerException) as error:
        grpc.infer("widths", _grpc_inputs(feeds))
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert message in str(error.value.message())


def test_a_leading_symbolic_dim_is_not_a_batch(http: httpx.Client, grpc: grpcclient.InferenceServerClient) -> None:
    """rows runs R rows at once (max_batch 1): R = 5 is not a batch of 5 over the module's limit of 1."""
    model = rows_model()
    for rows in ROW_SIZES:
        x = np.random.default_rng(rows).standard_normal((rows, 4)).astype(np.float32)
        want = ort_run(model, {"x": x})[0]
        response = http.post("/v2/models/rows/infer", json=_rest_body({"x": x}))
        assert response.status_code == 200, response.text
        [y] = response.json()["outputs"]
        assert y["shape"] == [rows, 3]
        np.testing.assert_allclose(np.reshape(y["data"], want.shape), want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(grpc.infer("rows", _grpc_inputs({"x": x})).as_numpy("y"), want, rtol=1e-4,
                                   atol=1e-5)
    response = http.post("/v2/models/rows/infer", json=_rest_body({"x": np.zeros((9, 4), np.float32)}))
    assert response.status_code == 400 and "input 'x': axis 0 is 9, outside its range 2..8" in response.json()["error"]


def _batched_runs(metrics: str, model: str) -> int:
    """How many dynamic batches /metrics counts for `model` (0 when it has none)."""
    found = re.search(rf'^wasinfer_batch_size_count\{{model="{model}",version="1"\}} (\d+)', metrics, re.MULTILINE)
    return int(found.group(1)) if found else 0


def test_dynamic_batching_never_merges_requests_of_different_sizes(server: Server, http: httpx.Client) -> None:
    """With batching on for every model that can batch, concurrent requests for rows each run alone at their own size
    (a version-3 module has no batch axis, so the server gives it no batcher), while scale's merge."""
    model = rows_model()
    requests = [np.full((ROW_SIZES[i % 3], 4), i, np.float32) for i in range(12)]

    def rows_request(x: np.ndarray) -> tuple[int, list[int], np.ndarray]:
        response = http.post("/v2/models/rows/infer", json=_rest_body({"x": x}))
        [y] = response.json()["outputs"] if response.status_code == 200 else [{"shape": [], "data": []}]
        return response.status_code, y["shape"], np.asarray(y["data"], np.float32)

    def scale_request(i: int) -> int:
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [float(i)] * 4}]}
        return http.post("/v2/models/scale/infer", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        scales = list(pool.map(scale_request, range(8)))
        answers = list(pool.map(rows_request, requests))
    assert scales == [200] * 8
    for x, (status, shape, data) in zip(requests, answers, strict=True):
        want = ort_run(model, {"x": x})[0]
        assert (status, shape) == (200, list(want.shape))
        np.testing.assert_allclose(data.reshape(want.shape), want, rtol=1e-4, atol=1e-5)
    metrics = http.get("/metrics").text
    assert _batched_runs(metrics, "scale") >= 1  # the control: batching is on, and this reads its count
    assert _batched_runs(metrics, "rows") == 0
    assert server.manager.get("rows").batcher is None


def test_the_warm_up_of_an_update_runs_each_symbolic_dim_at_its_smallest(server: Server) -> None:
    """An update warms a version up with smoke_inputs before serving it; a 1 on a dim whose range starts at 4 was
    refused, so no update of such a model could ever pass its warm-up."""
    model = server.manager.get("widths")
    feeds = smoke_inputs(model)
    assert {name: array.shape for name, array in feeds.items()} == {"a": (1, 2, 4), "b": (1, 2, 4)}
    assert model.infer(feeds)["y"].shape == (1, 4, 2)



def test_a_large_size_does_not_run_on_the_event_loop_because_small_ones_were_quick(server: Server) -> None:
    """A run's expected time scales with its sizes (10x the elements at W = 40 as at W = 4), as with a batch's
    samples; it counted as one sample whatever its size, so a width-1280 line could be run inline on the event loop
    because width-32 ones had been quick there, holding up every other REST request for about 40 times as long."""
    model = server.manager.get("widths")
    small, large = _pair(4), _pair(40)
    model.infer(small)
    model.sample_seconds = INLINE_SECONDS / 2  # what the small runs measured, made exact
    assert model.is_quick(small) and not model.is_quick(large)
