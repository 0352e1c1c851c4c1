"""Fuzzing the REST API with schemathesis, driven by the OpenAPI document the server itself serves.

One test per documented operation (so pytest-xdist spreads them), each against a fresh
in-process server on 127.0.0.1, with a fixed number of examples and Hypothesis derandomized:
the same requests on every run, and a failure reproduces. Each example is schema-valid
(positive) or schema-violating (negative) data from schemathesis; path parameters name the
repository's real models as often as random ones, and half the inference bodies are built to
get past parsing into the model itself.

Every answer must be a documented status with a documented body and headers, and no 5xx other
than the documented 503 of a model that is unloaded or whose load failed (`broken` fails).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.serving.conftest import start_server
from wasinfer.serving import Server
from wasinfer.serving.openapi import document

pytestmark = pytest.mark.slow  # about 20 s on two cores; `make test` (and CI) still run it

EXAMPLES = 40
MODELS = ["scale", "pair", "count", "broken"]
OPERATIONS = [(method.upper(), path) for path, item in document()["paths"].items() for method in ("get", "post")
              if method in item]
# Input names, datatypes and tensor widths the repository's models take (conftest.repository).
INPUTS = {"scale": (["x"], "FP32", 4), "pair": (["a", "b"], "FP32", 3), "count": (["n"], "INT64", 2),
          "broken": (["x"], "FP32", 4)}
# Any text but what would end the path segment: schemathesis sends given path parameters as they are,
# and "a?b" would be the path "a" and a query (and a lone surrogate cannot be sent at all).
NAMES = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="/?#"), min_size=1)
DATATYPES = ["FP32", "INT64", "FP64", "INT32", "BOOL", "BYTES", "FP16", "UINT8"]


@pytest.fixture
def fuzz_server(repository: Path) -> Iterator[Server]:
    """A server of its own per operation: load and unload change state, and the order must not matter."""
    running = start_server(repository)
    try:
        yield running
    finally:
        running.stop(grace=2)


def no_server_error(ctx: Any, response: Any, case: schemathesis.Case) -> None:
    """5xx is a failure, except the documented 503 of a model that is unloaded or could not load."""
    if response.status_code < 500:
        return
    error = response.json().get("error", "") if response.headers.get("content-type", [""])[0].startswith(
        "application/json") else ""
    documented = response.status_code == 503 and ("unloaded" in error or "load failed" in error
                                                  or "is not ready" in error)
    assert documented, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


VALUES = {"FP32": st.floats(-1e6, 1e6, width=32), "FP64": st.floats(-1e300, 1e300),
          "INT64": st.integers(-(2**62), 2**62)}
ODD_VALUES = st.one_of(st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False, allow_infinity=False),
                       st.booleans(), st.text(max_size=3), st.none(), st.lists(st.integers(), max_size=2))
MUTATIONS = ["none", "datatype", "batch", "count", "shape", "values", "missing", "extra", "output", "nested"]


@st.composite
def model_body(draw: st.DrawFn, model: str) -> dict[str, Any]:
    """An inference request for `model`: valid, or valid but for one mistake, so that the requests get past
    parsing into the model's own checks and its run (schemathesis' bodies almost never name real inputs)."""
    names, datatype, width = INPUTS.get(model, INPUTS["scale"])
    mutation = draw(st.sampled_from(MUTATIONS))
    batch = draw(st.integers(0, 12) if mutation == "batch" else st.integers(1, 4))
    inputs = []
    for name in [*names, "z"] if mutation == "extra" else names[1:] if mutation == "missing" else names:
        shape = [batch, width]
        if mutation == "shape":
            shape = draw(st.sampled_from([[batch * width], [batch, width, 1], [], [batch, width + 1]]))
        count = 1
        for dim in shape:
            count *= dim
        if mutation == "count":
            count = max(0, count + draw(st.sampled_from([-1, 1])))
        values = draw(st.lists(ODD_VALUES if mutation == "values" else VALUES.get(datatype, VALUES["FP32"]),
                               min_size=count, max_size=count))
        data: Any = values
        if mutation == "nested" and len(shape) == 2 and count:
            rows = draw(st.sampled_from([shape[0], 1]))
            data = [values[i * count // rows:(i + 1) * count // rows] for i in range(rows)]
        tensor_type = draw(st.sampled_from(DATATYPES)) if mutation == "datatype" else datatype
        inputs.append({"name": name, "datatype": tensor_type, "shape": shape, "data": data})
    body: dict[str, Any] = {"inputs": inputs}
    outputs = {"scale": ["y"], "pair": ["sum", "product"], "count": ["next"]}.get(model, ["y"])
    if mutation == "output" or draw(st.booleans()):
        names = [*outputs, "nope"] if mutation == "output" else outputs
        body["outputs"] = [{"name": name, "parameters": {"binary_data": draw(st.booleans())}}
                           for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2))]
    if draw(st.booleans()):
        body["parameters"] = {"binary_data_output": draw(st.booleans())}
    if draw(st.booleans()):
        body["id"] = draw(st.text(max_size=8))
    return body


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation(fuzz_server: Server, method: str, path: str) -> None:
    base = f"http://127.0.0.1:{fuzz_server.http_port}"
    schema = schemathesis.openapi.from_url(f"{base}/v2/openapi.json")
    operation = schema[path][method]
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]

    @given(data=st.data())
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(data: st.DataObject) -> None:
        parameters: dict[str, Any] = {}
        if "{model}" in path:  # a real model two times in three
            parameters["model"] = data.draw(st.sampled_from(MODELS) | st.sampled_from(MODELS) | NAMES, "model")
        if "{version}" in path:
            parameters["version"] = data.draw(st.sampled_from(["1", "2", "3"]) | st.from_regex(r"\A[0-9]{1,20}\Z"),
                                              "version")
        if path.endswith("/infer") and data.draw(st.booleans(), "own body"):
            body = data.draw(model_body(parameters["model"]), "body")
            case = operation.Case(path_parameters=parameters, body=body, media_type="application/json", headers={})
        else:
            mode = data.draw(st.sampled_from(modes), "mode")
            case = data.draw(operation.as_strategy(mode, path_parameters=parameters), "case")
        response = case.call(base_url=base, timeout=30)
        case.validate_response(response, checks=CHECKS)

    run()
