"""The OpenAPI 3.1 description of the REST API, served at GET /v2/openapi.json.

Written by hand next to the router (rest.py) rather than generated from it: the router has
no framework to introspect. tests/serving checks that every route the server answers is
described here and every path described here is answered, and tests/serving/test_fuzz.py
runs schemathesis against it: every status code the server can answer is listed, so the
document is a contract a client generator can trust.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from wasinfer.serving.auth import Tokens
from wasinfer.version import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": _json(_ref("Error"), "Malformed request, or tensors that do not match the model"),
    "404": _json(_ref("Error"), "Unknown model or version"),
    "413": _json(_ref("Error"), "Body over --max-body-bytes, or JSON with more values than --max-json-values"),
    "429": _json(_ref("Error"), "The model has --max-concurrency requests in flight; retry later"),
    "503": _json(_ref("Error"), "Model unloaded, its load failed, or not loaded (a --model-control-mode other "
                 "than lazy: requests never load models)"),
}
MODEL_FAILED = {"500": _json(_ref("Error"), "The model failed on a valid request (the server log has the details, "
                             "under the answer's X-Request-ID)"),
                "504": _json(_ref("Error"), "The model ran past its deadline (--deadline-ms) and was stopped")}
UNAUTHORIZED = _json(_ref("Error"), "No bearer token, or not this server's token for the endpoint (the "
                     "WWW-Authenticate header says which)")
EMPTY_OK = {"200": {"description": "Yes"}}
MODEL_PARAMS = [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}]
VERSION_PARAMS = [*MODEL_PARAMS, {"name": "version", "in": "path", "required": True,
                                  "schema": {"type": "string", "pattern": "^[0-9]+$"}}]

TENSOR_DATA = {"description": "Row-major tensor data, flat or nested as the shape",
               "type": "array", "items": {}}
DATATYPE = {"type": "string", "enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                                       "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"]}
PARAMETERS = {"type": "object", "additionalProperties": {"type": ["boolean", "integer", "number", "string"]}}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "ServerMetadata": {"type": "object", "required": ["name", "version", "extensions"], "properties": {
        "name": {"type": "string"}, "version": {"type": "string"},
        "extensions": {"type": "array", "items": {"type": "string"}}}},
    "TensorMetadata": {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
        "name": {"type": "string"}, "datatype": DATATYPE,
        "shape": {"type": "array", "items": {"type": "integer"}, "description": "-1: known at run time"}}},
    "ModelMetadata": {"type": "object", "required": ["name", "platform", "inputs", "outputs"], "properties": {
        "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string", "enum": ["wasinfer_wasm", "onnxruntime_onnx"]},
        "inputs": {"type": "array", "items": _ref("TensorMetadata")},
        "outputs": {"type": "array", "items": _ref("TensorMetadata")}}},
    "RequestInput": {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
        "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": DATATYPE, "data": TENSOR_DATA,
        "parameters": {**PARAMETERS, "description": "binary_data_size: the input's bytes follow the JSON "
                       "header (binary tensor data extension) instead of data"}}},
    "RequestOutput": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"},
        "parameters": {**PARAMETERS, "description": "binary_data: return this output as raw bytes; "
                       "classification: k, its top k classes as BYTES \"value:index[:label]\" instead"}}},
    "InferenceRequest": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "parameters": {**PARAMETERS, "description": "binary_data_output: return "
                                                "outputs that are not listed as raw bytes"},
        "inputs": {"type": "array", "minItems": 1, "items": _ref("RequestInput")},
        "outputs": {"type": "array", "items": _ref("RequestOutput"), "description": "default: every output"}}},
    "ResponseOutput": {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
        "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": DATATYPE, "data": TENSOR_DATA, "parameters": PARAMETERS}},
    "InferenceResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
        "outputs": {"type": "array", "items": _ref("ResponseOutput")}}},
    "RepositoryIndexRequest": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    "RepositoryIndex": {"type": "array", "items": {"type": "object", "required": ["name", "state"], "properties": {
        "name": {"type": "string"}, "version": {"type": "string"},
        "state": {"type": "string", "enum": ["READY", "LOADING", "UNAVAILABLE"]}, "reason": {"type": "string"}}}},
    "RepositoryLoadRequest": {"type": "object", "properties": {"parameters": PARAMETERS}},
    "ModelConfig": {"type": "object", "required": ["name", "platform", "max_batch_size", "input", "output"],
                    "description": "Triton's model configuration (model_config.proto's ModelConfig in JSON), with "
                                   "the fields wasinfer honours: dims leave the batch out when max_batch_size > 0",
                    "properties": {
                        "name": {"type": "string"}, "platform": {"type": "string"}, "backend": {"type": "string"},
                        "version_policy": {"type": "object"}, "max_batch_size": {"type": "integer", "minimum": 0},
                        "input": {"type": "array", "items": {"type": "object"}},
                        "output": {"type": "array", "items": {"type": "object"}},
                        "dynamic_batching": {"type": "object"},
                        "instance_group": {"type": "array", "items": {"type": "object"}}}},
    "Duration": {"type": "object", "required": ["count", "ns"], "properties": {
        "count": {"type": "integer"}, "ns": {"type": "integer", "description": "cumulative nanoseconds"}}},
    "ModelStatistics": {"type": "object", "required": ["model_stats"], "properties": {"model_stats": {
        "type": "array", "items": {"type": "object", "required": ["name", "version"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "last_inference": {"type": "integer", "description": "ms since the epoch; 0: none yet"},
            "inference_count": {"type": "integer"}, "execution_count": {"type": "integer"},
            "inference_stats": {"type": "object", "additionalProperties": _ref("Duration")},
            "batch_stats": {"type": "array", "items": {"type": "object"}}}}}}},
}

INFER = {
    "post": {
        "summary": "Run an inference",
        "description": "JSON tensors, or the binary tensor data extension: the JSON header, then the inputs' raw "
                       "little-endian bytes, with the header's length in Inference-Header-Content-Length "
                       "(responses with binary outputs carry the same header). The body may be compressed "
                       "(Content-Encoding: gzip or deflate).",
        "parameters": [{"name": "Inference-Header-Content-Length", "in": "header", "required": False,
                        "schema": {"type": "integer", "minimum": 1}}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref("InferenceRequest")},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"200": {"description": "The outputs", "headers": {"Inference-Header-Content-Length": {
            "description": "With binary outputs: the length of the JSON header before them",
            "schema": {"type": "integer"}}}, "content": {
            "application/json": {"schema": _ref("InferenceResponse")},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}, **ERRORS,
            **MODEL_FAILED},
    }
}
MODEL_METADATA = {"get": {"summary": "Model metadata (in the lazy model control mode, loads the model first)",
                          "responses": {"200": _json(_ref("ModelMetadata"), "The model"), "404": ERRORS["404"],
                                        "503": ERRORS["503"]}}}
MODEL_CONFIG = {"get": {"summary": "Model configuration, as Triton's (in the lazy model control mode, loads the "
                                   "model first)",
                        "responses": {"200": _json(_ref("ModelConfig"), "The configuration it is served with"),
                                      "404": ERRORS["404"], "503": ERRORS["503"]}}}
MODEL_STATISTICS = {"get": {"summary": "Statistics, as Triton's statistics extension (never loads a model)",
                            "responses": {"200": _json(_ref("ModelStatistics"), "Per model version"),
                                          "404": ERRORS["404"]}}}
MODEL_READY = {"get": {"summary": "Is the model loaded and ready (never loads it)",
                       "responses": {**EMPTY_OK, "404": ERRORS["404"], "503": ERRORS["503"]}}}


def _with(params: list[dict[str, Any]], item: dict[str, Any]) -> dict[str, Any]:
    return {"parameters": params, **item}


PATHS: dict[str, Any] = {
    "/v2": {"get": {"summary": "Server metadata", "responses": {"200": _json(_ref("ServerMetadata"), "Server")}}},
    "/v2/health/live": {"get": {"summary": "Is the server live", "responses": EMPTY_OK}},
    "/v2/health/ready": {"get": {"summary": "Is the server ready (with --desired-state: once its model serves)",
                                 "responses": {**EMPTY_OK, "503": _json(
                                     _ref("Error"), "Not ready (shutting down, or no model served yet), and why")}}},
    "/v2/models/{model}": _with(MODEL_PARAMS, MODEL_METADATA),
    "/v2/models/{model}/versions/{version}": _with(VERSION_PARAMS, MODEL_METADATA),
    "/v2/models/{model}/ready": _with(MODEL_PARAMS, MODEL_READY),
    "/v2/models/{model}/versions/{version}/ready": _with(VERSION_PARAMS, MODEL_READY),
    "/v2/models/{model}/infer": _with(MODEL_PARAMS, INFER),
    "/v2/models/{model}/config": _with(MODEL_PARAMS, MODEL_CONFIG),
    "/v2/models/{model}/versions/{version}/config": _with(VERSION_PARAMS, MODEL_CONFIG),
    "/v2/models/stats": MODEL_STATISTICS,
    "/v2/models/{model}/stats": _with(MODEL_PARAMS, MODEL_STATISTICS),
    "/v2/models/{model}/versions/{version}/stats": _with(VERSION_PARAMS, MODEL_STATISTICS),
    "/v2/models/{model}/versions/{version}/infer": _with(VERSION_PARAMS, INFER),
    "/v2/repository/index": {"post": {
        "summary": "Every model version in the repository, with its state",
        "requestBody": {"required": False, "content": {"application/json": {
            "schema": _ref("RepositoryIndexRequest")}}},
        "responses": {"200": _json(_ref("RepositoryIndex"), "The index"), "400": ERRORS["400"],
                      "413": ERRORS["413"]}}},
    "/v2/repository/models/{model}/load": _with(MODEL_PARAMS, {"post": {
        "summary": "Load (or reload, if its file changed) the highest version and make it the default",
        "requestBody": {"required": False, "content": {"application/json": {
            "schema": _ref("RepositoryLoadRequest")}}},
        "responses": {**EMPTY_OK, "400": ERRORS["400"], "404": ERRORS["404"], "413": ERRORS["413"],
                      "503": ERRORS["503"]}}}),
    "/v2/repository/models/{model}/unload": _with(MODEL_PARAMS, {"post": {
        "summary": "Unload every version; requests get 503 until the next load",
        "requestBody": {"required": False, "content": {"application/json": {
            "schema": _ref("RepositoryLoadRequest")}}},
        "responses": {**EMPTY_OK, "400": ERRORS["400"], "404": ERRORS["404"], "413": ERRORS["413"]}}}),
    "/v2/openapi.json": {"get": {"summary": "This document", "responses": {"200": _json({"type": "object"},
                                                                                        "OpenAPI 3.1")}}},
    "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
        "description": "Prometheus text exposition format", "content": {"text/plain": {"schema": {
            "type": "string"}}}}}}},
}


# Which token guards which paths (auth.py); the rest (health, this document, /metrics) stay open.
INFERENCE_PATHS = ("/v2", "/v2/models/")
MANAGEMENT_PATHS = ("/v2/repository/",)
REQUEST_ID_PARAM = {"name": "X-Request-ID", "in": "header", "required": False, "schema": {
    "type": "string", "maxLength": 128}, "description": "The client's id for this request, echoed in the answer and "
    "in the server's log lines (printable ASCII; otherwise the server makes one)"}
REQUEST_ID_HEADER = {"description": "The request's id: the client's X-Request-ID, else the inference request's "
                     "\"id\", else one the server made", "required": True, "schema": {"type": "string"}}


def _plane(path: str) -> str | None:
    if path == "/v2" or path.startswith(INFERENCE_PATHS[1]):
        return "inference"
    if path.startswith(MANAGEMENT_PATHS):
        return "management"
    return None


def document(tokens: Tokens | None = None) -> dict[str, Any]:
    """The document for a server with these tokens: operations a token guards say so (security, 401)
    only when that token is set, so the document describes the server that serves it."""
    tokens = tokens or Tokens()
    schemes = {"inference": tokens.inference is not None, "management": tokens.management is not None}
    paths: dict[str, Any] = {}
    for path, item in PATHS.items():
        item = copy.deepcopy(item)
        plane = _plane(path)
        for method in ("get", "post"):
            operation = item.get(method)
            if operation is None or not path.startswith("/v2"):
                continue
            operation["parameters"] = [*operation.get("parameters", []), REQUEST_ID_PARAM]
            for response in operation["responses"].values():
                response["headers"] = {**response.get("headers", {}),
                                       "X-Request-ID": {"$ref": "#/components/headers/RequestId"}}
            if plane is not None and schemes[plane]:
                operation["security"] = [{f"{plane}Token": []}]
                operation["responses"]["401"] = {**UNAUTHORIZED, "headers": {
                    "X-Request-ID": {"$ref": "#/components/headers/RequestId"},
                    "WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}}
        paths[path] = item
    components: dict[str, Any] = {"schemas": SCHEMAS, "headers": {"RequestId": REQUEST_ID_HEADER}}
    if any(schemes.values()):
        components["securitySchemes"] = {
            f"{plane}Token": {"type": "http", "scheme": "bearer", "description": f"The {plane} token "
                              f"(--{plane}-token-file or the WASINFER_{plane.upper()}_TOKEN environment variable)"}
            for plane, on in schemes.items() if on}
    return {
        "openapi": "3.1.0",
        "info": {"title": "wasinfer inference server", "version": __version__,
                 "description": "KServe Open Inference Protocol v2 (REST) with the binary tensor data and model "
                                "repository extensions. Every /v2 answer carries X-Request-ID; errors are "
                                "{\"error\": message}."},
        "paths": paths,
        "components": components,
    }


def document_json(tokens: Tokens | None = None) -> bytes:
    return orjson.dumps(document(tokens))
