"""Triton's model configuration, statistics and classification extensions, and config.pbtxt, with tritonclient's
HTTP and gRPC clients (used unchanged) against a real server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.serving.conftest import SCALE, Repo, scale_model, start_server
from wasinfer.serving import Server
from wasinfer.serving.model_config import ConfigError, ModelConfig, VersionPolicy, parse_model_config, parse_pbtxt


class Clients:
    """tritonclient's two clients on one server."""

    def __init__(self, server: Server):
        self.server = server
        self.http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=20.0)
        self.grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")

    def close(self) -> None:
        self.grpc.close()
        self.http.close()
        self.server.stop(grace=2)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.http_port}{path}"


@pytest.fixture
def clients(repository: Path) -> Iterator[Clients]:
    both = Clients(start_server(repository))
    try:
        yield both
    finally:
        both.close()


def _serve(root: Path, **overrides: object) -> Clients:
    return Clients(start_server(root, **overrides))


def _x(module: Any, rows: np.ndarray) -> list[Any]:
    tensor = module.InferInput("x", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    return [tensor]


def _ints(value: Any) -> Any:
    """gRPC's as_json gives int64 and uint64 as strings (protobuf's JSON mapping): back to ints (not versions)."""
    if isinstance(value, dict):
        return {k: v if k == "version" else _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else value


# --- model configuration ------------------------------------------------------------------------


SCALE_CONFIG = {
    "name": "scale", "platform": "wasinfer_wasm", "backend": "wasinfer", "version_policy": {"all": {}},
    "max_batch_size": 8,  # the module's compiled --max-batch; dims leave the batch out
    "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}],
    "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [4]}],
    "instance_group": [{"name": "scale", "kind": "KIND_CPU", "count": 2}],  # the server's --pool-size
}


def test_get_model_config_over_both_clients(clients: Clients) -> None:
    assert clients.http.get_model_config("scale", "1") == SCALE_CONFIG
    assert clients.http.get_model_config("scale") == SCALE_CONFIG  # the default version: 2
    answer = clients.grpc.get_model_config("scale", "1", as_json=True)
    assert _ints(answer["config"]) == SCALE_CONFIG
    typed = clients.grpc.get_model_config("scale").config
    assert (typed.max_batch_size, list(typed.input[0].dims), typed.input[0].data_type) == (8, [4], 11)  # TYPE_FP32
    # ONNX Runtime's model batches along a symbolic N without a limit of ours: max_batch_size 0, whole dims.
    count = clients.http.get_model_config("count")
    assert (count["platform"], count["backend"], count["max_batch_size"]) == ("onnxruntime_onnx", "onnxruntime", 0)
    assert count["input"] == [{"name": "n", "data_type": "TYPE_INT64", "dims": [-1, 2]}]
    with pytest.raises(InferenceServerException, match="unknown model 'nosuch'") as http_error:
        clients.http.get_model_config("nosuch")
    assert http_error.value.status() == "404"
    with pytest.raises(InferenceServerException, match="has no version '9'") as grpc_error:
        clients.grpc.get_model_config("scale", "9")
    assert grpc_error.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="load failed") as broken:
        clients.grpc.get_model_config("broken")
    assert broken.value.status() == "StatusCode.UNAVAILABLE"
    assert "model_configuration" in clients.http.get_server_metadata()["extensions"]


# --- statistics ---------------------------------------------------------------------------------


def _durations(stats: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {key: (int(value.get("count", 0)), int(value.get("ns", 0))) for key, value in
            stats["inference_stats"].items()}


def test_statistics_count_known_requests_exactly_over_both_protocols(writable_repo: Repo) -> None:
    both = _serve(writable_repo.root)
    try:
        assert both.http.get_inference_statistics("scale") == {"model_stats": []}  # nothing loaded or counted
        started_ms = time.time() * 1000
        for batch in (1, 2, 3):  # REST: 6 samples in 3 runs
            both.http.infer("scale", _x(httpclient, np.ones((batch, 4), np.float32)))
        for _ in range(2):  # gRPC: 2 samples in 2 runs
            both.grpc.infer("scale", _x(grpcclient, np.ones((1, 4), np.float32)))
        wrong = httpclient.InferInput("x", [1, 3], "FP32")
        wrong.set_data_from_numpy(np.ones((1, 3), np.float32))
        with pytest.raises(InferenceServerException, match="expected shape"):
            both.http.infer("scale", [wrong])  # one failure, counted against the model

        http_stats = both.http.get_inference_statistics("scale")["model_stats"]
        grpc_stats = _ints(both.grpc.get_inference_statistics("scale", "1", as_json=True))["model_stats"]
        print("statistics after 5 requests and 1 failure:", http_stats)
        for stats in (http_stats, grpc_stats):
            [entry] = stats
            assert (entry["name"], entry["version"]) == ("scale", "1")
            assert (entry["inference_count"], entry["execution_count"]) == (8, 5)
            durations = _durations(entry)
            assert {key: count for key, (count, _) in durations.items()} == {
                "success": 5, "fail": 1, "queue": 5, "compute_input": 5, "compute_infer": 5, "compute_output": 5,
                "cache_hit": 0, "cache_miss": 0}
            for key in ("success", "fail", "compute_input", "compute_infer", "compute_output"):
                assert durations[key][1] > 0, key
            # A request's phases happen one after another inside its time in the server.
            phases = sum(durations[key][1] for key in ("queue", "compute_input", "compute_infer", "compute_output"))
            assert durations["success"][1] >= phases
            assert {b["batch_size"]: int(b["compute_infer"]["count"]) for b in entry["batch_stats"]} == {
                1: 3, 2: 1, 3: 1}
            assert sum(int(b["compute_infer"]["ns"]) for b in entry["batch_stats"]) == durations["compute_infer"][1]
            assert started_ms - 1000 <= entry["last_inference"] <= time.time() * 1000 + 1000
        # Every model's statistics: the one counted; one version's; and the refusals.
        assert [s["name"] for s in both.http.get_inference_statistics()["model_stats"]] == ["scale"]
        assert _ints(both.grpc.get_inference_statistics(as_json=True))["model_stats"][0]["execution_count"] == 5
        with pytest.raises(InferenceServerException, match="unknown model 'nosuch'") as http_error:
            both.http.get_inference_statistics("nosuch")
        assert http_error.value.status() == "404"
        with pytest.raises(InferenceServerException, match="has no version '7'") as grpc_error:
            both.grpc.get_inference_statistics("scale", "7")
        assert grpc_error.value.status() == "StatusCode.NOT_FOUND"
        assert "statistics" in both.grpc.get_server_metadata().extensions
    finally:
        both.close()


# --- config.pbtxt ---------------------------------------------------------------------------------


BATCHING_PBTXT = """
name: "scale"
platform: "wasinfer_wasm"
max_batch_size: 8
version_policy: { latest: { num_versions: 1 } }
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 20000000 }
instance_group [ { count: 2 kind: KIND_CPU }, { count: 1 } ]
"""


def test_a_triton_config_pbtxt_is_honoured(writable_repo: Repo) -> None:
    """Batching on (it was silently off), instance groups added up, the version policy applied, all reported."""
    writable_repo.add_wasm("scale", 2, scale_model(SCALE[2]))
    (writable_repo.root / "scale" / "config.pbtxt").write_text(BATCHING_PBTXT)
    both = _serve(writable_repo.root, pool_size=1)
    try:
        config = both.http.get_model_config("scale")
        assert config["dynamic_batching"] == {"preferred_batch_size": [4], "max_queue_delay_microseconds": 20000000}
        assert config["instance_group"] == [{"name": "scale", "kind": "KIND_CPU", "count": 3}]
        assert config["version_policy"] == {"latest": {"num_versions": 1}}
        assert both.http.get_model_metadata("scale")["versions"] == ["2"]
        assert [(m["version"], m["reason"]) for m in both.http.get_model_repository_index()] == [
            ("1", "not served: its config's version_policy leaves it out"), ("2", "")]

        def ask(i: int) -> np.ndarray:
            with httpclient.InferenceServerClient(f"127.0.0.1:{both.server.http_port}", network_timeout=60) as own:
                result = own.infer("scale", _x(httpclient, np.full((1, 4), i, np.float32)))
                answer: np.ndarray = result.as_numpy("y")
                return answer

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(8)))
        for i, answer in enumerate(answers):
            np.testing.assert_array_equal(answer, np.full((1, 4), i, np.float32) * SCALE[2])
        [stats] = both.http.get_inference_statistics("scale")["model_stats"]
        # The delay (20 s) is far longer than 8 requests take to arrive: a batch starts as soon as 4 (the preferred
        # size) are queued.
        assert [(b["batch_size"], b["compute_infer"]["count"]) for b in stats["batch_stats"]] == [(4, 2)]
        assert (stats["inference_count"], stats["execution_count"]) == (8, 2)
        response = httpx.post(both.url("/v2/models/scale/versions/1/infer"), json={
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, timeout=20)
        assert response.status_code == 404
        assert "version 1 is not served: its version_policy serves 2" in response.json()["error"]
    finally:
        both.close()


@pytest.mark.parametrize(("pbtxt", "message"), [
    ('optimization { cuda { graphs: true } }', r"config.pbtxt:1: field 'optimization' of ModelConfig is not supported"),
    ('input [ { name: "x" data_type: TYPE_FP32 dims: [4] is_shape_tensor: true } ]',
     r"field 'is_shape_tensor' of ModelInput is not supported"),
    ('input [ { name: "x" data_type: TYPE_FP32 dims: [4] reshape { shape: [1, 5] } } ]',
     r"input 'x': dims \[4\] \(4 elements\) cannot be reshaped to \[1, 5\] \(5 elements\)"),
    ('input [ { name: "x" data_type: TYPE_FP32 format: FORMAT_NCWH dims: [4] } ]', r"not a valid Triton model"),
    ('instance_group [ { count: 1 kind: KIND_GPU } ]', r"instance_group\[0\] kind KIND_GPU is not supported"),
    ('platform: "tensorrt_plan"', r"platform 'tensorrt_plan' is not one wasinfer serves"),
    ('backend: "python"', r"backend 'python' is not one wasinfer serves"),
    ('name: "other"', r"name 'other' is not the model's directory name 'scale'"),
    ('dynamic_batching { }', r"dynamic_batching needs a max_batch_size > 0"),
    ('max_batch_size: 4 dynamic_batching { preferred_batch_size: [8] }', r"preferred_batch_size \[8\] outside 1..4"),
    ('version_policy { specific { versions: [0] } }', r"specific versions must be positive"),
    ('max_batch_size: "eight"', r"not a valid Triton model configuration"),
])
def test_config_pbtxt_refuses_what_it_does_not_honour_by_name(pbtxt: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_pbtxt(pbtxt.encode(), "config.pbtxt", "scale")


def test_config_pbtxt_fields_parse_into_the_model_config() -> None:
    config = parse_pbtxt(BATCHING_PBTXT.encode(), "config.pbtxt", "scale")
    assert (config.max_batch_size, config.batching_delay_us, config.preferred_batch_sizes, config.instance_count) == (
        8, 20000000, (4,), 3)
    assert config.version_policy == VersionPolicy("latest", latest=1)
    assert [(t.name, t.datatype, t.dims) for t in config.inputs] == [("x", "FP32", (4,))]
    assert parse_pbtxt(b'max_batch_size: 0', "config.pbtxt", "scale") == ModelConfig(max_batch_size=0,
                                                                                     source="config.pbtxt")


def test_config_json_takes_triton_s_max_batch_size_0_and_instance_group() -> None:
    assert parse_model_config({"max_batch_size": 0}).max_batch_size == 0
    assert parse_model_config({"instance_group": [{"count": 2, "kind": "KIND_CPU"}, {"count": 1}]}).instance_count == 3
    with pytest.raises(ConfigError, match="not both"):
        parse_model_config({"instance_count": 2, "instance_group": [{"count": 2}]})
    with pytest.raises(ConfigError, match=r"instance_group\[0\] kind KIND_GPU is not supported"):
        parse_model_config({"instance_group": [{"count": 1, "kind": "KIND_GPU"}]})
    with pytest.raises(ConfigError, match=r"unknown instance_group\[0\] field\(s\) 'gpus'"):
        parse_model_config({"instance_group": [{"count": 1, "gpus": [0]}]})
    with pytest.raises(ConfigError, match="dynamic_batching needs a max_batch_size > 0"):
        parse_model_config({"max_batch_size": 0, "dynamic_batching": {}})


def test_max_batch_size_0_in_config_json_turns_server_wide_batching_off(writable_repo: Repo) -> None:
    (writable_repo.root / "scale" / "config.json").write_text('{"max_batch_size": 0, "instance_group": [{"count": 3}]}')
    both = _serve(writable_repo.root, batch_delay_us=1000)
    try:
        config = both.http.get_model_config("scale")
        assert (config["max_batch_size"], "dynamic_batching" in config) == (0, False)
        assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1, 4]}]
        assert config["instance_group"][0]["count"] == 3
    finally:
        both.close()


@pytest.mark.parametrize(("files", "message"), [
    ({"config.pbtxt": 'max_batch_size: 8 input [ { name: "x" data_type: TYPE_FP32 dims: [ 3 ] } ]'},
     "config.pbtxt: input[0] ('x') dims [3] are not the module's [4] (without the batch: max_batch_size > 0)"),
    ({"config.pbtxt": 'input [ { name: "x" data_type: TYPE_INT32 dims: [ -1, 4 ] } ]'},
     "config.pbtxt: input[0] ('x') data_type TYPE_INT32 is not the module's TYPE_FP32"),
    ({"config.pbtxt": 'output [ { name: "z" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]'},
     "config.pbtxt: output names 'z', which the module does not have"),
    ({"config.pbtxt": 'output [ { name: "y" dims: [ -1, 4 ] label_filename: "nosuch.txt" } ]'},
     "output 'y' label_filename 'nosuch.txt': no such file"),
    ({"config.pbtxt": "max_batch_size: 4", "config.json": "{}"}, "has both config.json and config.pbtxt"),
])
def test_a_config_pbtxt_that_disagrees_with_the_module_fails_the_load_naming_the_field(
        writable_repo: Repo, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (writable_repo.root / "scale" / name).write_text(text)
    both = _serve(writable_repo.root)
    try:
        response = httpx.post(both.url("/v2/models/scale/infer"), json={
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, timeout=20)
        assert response.status_code == 503
        assert message in response.json()["error"]
    finally:
        both.close()


# --- classification -----------------------------------------------------------------------------


def _bytes(item: bytes | str) -> bytes:
    return item if isinstance(item, bytes) else item.encode()


def test_classification_over_both_clients(writable_repo: Repo) -> None:
    """scale version 1 multiplies by [1, 2, 3, 4]: the top classes of a row of ones are 3, 2, 1, 0."""
    (writable_repo.root / "scale" / "labels.txt").write_text("zero\none\ntwo\nthree\n")
    both = _serve(writable_repo.root)
    try:
        rows = np.array([[1, 1, 1, 1], [4, 1, 1, 1]], np.float32)  # y: [1, 2, 3, 4] and [4, 2, 3, 4]
        expected = [[b"4.000000:3:three", b"3.000000:2:two"], [b"4.000000:0:zero", b"4.000000:3:three"]]
        for binary in (True, False):
            result = both.http.infer("scale", _x(httpclient, rows), outputs=[
                httpclient.InferRequestedOutput("y", binary_data=binary, class_count=2)])
            # tritonclient gives BYTES as bytes from binary data, as str from JSON
            assert [[_bytes(item) for item in row] for row in result.as_numpy("y").tolist()] == expected
            assert result.get_output("y")["datatype"] == "BYTES"
        answer = both.grpc.infer("scale", _x(grpcclient, rows), outputs=[
            grpcclient.InferRequestedOutput("y", class_count=2)])
        assert answer.as_numpy("y").tolist() == expected
        assert both.grpc.get_model_config("scale", as_json=True)["config"]["output"][0]["label_filename"] == \
            "labels.txt"
        # More classes than the output has: all of them.
        assert both.http.infer("scale", _x(httpclient, rows[:1]), outputs=[
            httpclient.InferRequestedOutput("y", class_count=9)]).as_numpy("y").shape == (1, 4)

        for value in ("two", -1, 1.5, True):
            response = httpx.post(both.url("/v2/models/scale/infer"), json={
                "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
                "outputs": [{"name": "y", "parameters": {"classification": value}}]}, timeout=20)
            assert response.status_code == 400
            assert "output 'y': the classification parameter must be a positive integer" in response.json()["error"]
        wrong = grpcclient.InferRequestedOutput("y")
        wrong._output.parameters["classification"].string_param = "two"
        with pytest.raises(InferenceServerException, match="classification parameter must be a positive") as error:
            both.grpc.infer("scale", _x(grpcclient, rows), outputs=[wrong])
        assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    finally:
        both.close()


def test_classification_without_labels_gives_value_and_index(clients: Clients) -> None:
    result = clients.http.infer("scale", _x(httpclient, np.ones((1, 4), np.float32)), model_version="2",
                                outputs=[httpclient.InferRequestedOutput("y", class_count=1)])
    assert [[_bytes(i) for i in row] for row in result.as_numpy("y").tolist()] == [[b"40.000000:3"]]
    counted = grpcclient.InferInput("n", [1, 2], "INT64")
    counted.set_data_from_numpy(np.array([[7, 5]], np.int64))
    answer = clients.grpc.infer("count", [counted], outputs=[grpcclient.InferRequestedOutput("next", class_count=2)])
    assert answer.as_numpy("next").tolist() == [[b"8:0", b"6:1"]]  # integers as integers
