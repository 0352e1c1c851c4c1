"""wasinfer as a KServe serving runtime (`deploy render --kserve-runtime`, src/wasinfer/deploy/kserve.py).

The objects are checked against KServe's own types, not a schema written here: the KServe Python SDK's
models (kserve.models, generated from KServe's OpenAPI document), with the Kubernetes client's models for
the core types inside them (V1Container, V1Volume, ...). Those models ignore unknown keys when they
deserialize, so `from_sdk` walks the YAML beside them and fails on any key the model does not have and on
any value of the wrong type, then builds the models, whose constructors refuse missing required fields.

The SDK is installed without its dependencies (`make setup`: FastAPI, pandas and the rest are its model
server's, not its models'), so its package __init__, which imports that server, is never run: kserve.models
is imported under an empty `kserve` package. Skipped, saying so, where the SDK is absent.

Then the flow KServe runs, on loopback: the storage container's command with the two arguments KServe
gives it (the storageUri oci://..., /mnt/models) against a real registry, and the runtime's command with
its arguments as rendered ({{.Name}} filled in as KServe does) serving what it fetched.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import types
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.processes import output_lines, read_until, stop
from tests.serving.conftest import scale_model
from wasinfer.artifact import convert_onnx
from wasinfer.cli.main import main
from wasinfer.deploy.kserve import GRPC_PORT, HTTP_PORT, MODEL_DIR, NAME_PLACEHOLDER, render_kserve
from wasinfer.deploy.values import load as load_values

KINDS = {"ServingRuntime": "V1alpha1ServingRuntime", "ClusterServingRuntime": "V1alpha1ClusterServingRuntime",
         "ClusterStorageContainer": "V1alpha1ClusterStorageContainer", "InferenceService": "V1beta1InferenceService"}
# KServe's generator writes list[X] and dict(str, X); the Kubernetes client's, List[X] and Dict[str, X]
_LIST = re.compile(r"[lL]ist\[(.+)\]")
_DICT = re.compile(r"dict\(([^,]+), (.+)\)|Dict\[([^,]+), (.+)\]")
_PRIMITIVES: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "float": (int, float), "bool": bool}


class SchemaError(AssertionError):
    """A field the SDK's model does not have, a value of the wrong type, or a required field missing."""


def sdk() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """kserve.models, kserve.constants.constants and kubernetes.client.models (skips without the SDK)."""
    if "kserve" not in sys.modules:  # its __init__ imports the model server (FastAPI, pandas): not installed
        spec = importlib.util.find_spec("kserve")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("the KServe SDK is not installed (make setup installs it: pip install --no-deps kserve)")
        sys.modules["kserve"] = importlib.util.module_from_spec(spec)  # the package, its __init__ not run
    import kserve.constants.constants as constants
    import kserve.models
    import kubernetes.client.models

    return kserve.models, constants, kubernetes.client.models


def from_sdk(manifest: dict[str, Any]) -> Any:
    """`manifest` as the SDK's typed object; SchemaError naming the path of the first field that is wrong."""
    models, constants, core = sdk()
    kind = manifest.get("kind")
    if kind not in KINDS:
        raise SchemaError(f"kind {kind!r} is not one of KServe's that wasinfer renders")
    version = constants.KSERVE_V1BETA1 if kind == "InferenceService" else constants.KSERVE_V1ALPHA1
    if manifest.get("apiVersion") != version:
        raise SchemaError(f"{kind}: apiVersion {manifest.get('apiVersion')!r}, KServe serves it as {version}")

    def build(data: Any, type_name: str, path: str) -> Any:
        if match := _LIST.fullmatch(type_name):
            if not isinstance(data, list):
                raise SchemaError(f"{path}: a list of {match[1]} expected, got {data!r}")
            return [build(item, match[1], f"{path}[{i}]") for i, item in enumerate(data)]
        if match := _DICT.fullmatch(type_name):
            if not isinstance(data, dict):
                raise SchemaError(f"{path}: a mapping expected, got {data!r}")
            value_type = match[2] or match[4]
            return {key: build(value, value_type, f"{path}.{key}") for key, value in data.items()}
        if type_name in _PRIMITIVES:
            if not isinstance(data, _PRIMITIVES[type_name]) or (type_name != "bool" and isinstance(data, bool)):
                raise SchemaError(f"{path}: {type_name} expected, got {data!r}")
            return data
        if type_name in ("object", "datetime", "date"):  # IntOrString, quantities, timestamps
            return data
        cls = getattr(models, type_name, None) or getattr(core, type_name, None)
        if cls is None:
            raise SchemaError(f"{path}: neither SDK has a type {type_name}")
        if not isinstance(data, dict):
            raise SchemaError(f"{path}: a {type_name} mapping expected, got {data!r}")
        by_key = {key: attribute for attribute, key in cls.attribute_map.items()}
        unknown = sorted(set(data) - set(by_key))
        if unknown:
            raise SchemaError(f"{path}: {type_name} has no field {', '.join(unknown)}")
        fields = {by_key[key]: build(value, cls.openapi_types[by_key[key]], f"{path}.{key}")
                  for key, value in data.items()}
        try:
            return cls(**fields)
        except ValueError as exc:  # a required field missing, an enum value unknown
            raise SchemaError(f"{path}: {exc}") from None

    return build(manifest, KINDS[kind], kind)


def rendered(*argv: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert main(["deploy", "render", "--kserve-runtime", *argv]) == 0
    return [doc for doc in yaml.safe_load_all(capsys.readouterr().out) if doc]


@pytest.mark.parametrize("cluster", [False, True], ids=["ServingRuntime", "ClusterServingRuntime"])
def test_the_rendered_objects_are_kserves_own_types(cluster: bool, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--inference-service", "digits=oci://registry.example.com/models/digits:1.0.0",
            "--set", "image.digest=sha256:" + "a" * 64, *(["--cluster"] if cluster else [])]
    storage, runtime, service = rendered(*argv, capsys=capsys)
    typed_runtime = from_sdk(runtime)
    assert runtime["kind"] == ("ClusterServingRuntime" if cluster else "ServingRuntime")
    spec = typed_runtime.spec
    assert {(f.name, f.auto_select) for f in spec.supported_model_formats} == {
        ("wasm", True), ("onnx", False), ("tflite", False)}
    assert spec.protocol_versions == ["v2", "grpc-v2"] and spec.multi_model is False
    [container] = spec.containers
    assert container.name == "kserve-container" and container.command == ["wasinfer", "serve"]
    assert [p.container_port for p in container.ports] == [HTTP_PORT]
    args = container.args
    assert args[args.index("--model-repository") + 1] == MODEL_DIR
    assert args[args.index("--model-name") + 1] == NAME_PLACEHOLDER
    assert args[args.index("--grpc-port") + 1] == str(GRPC_PORT)
    assert container.image.endswith("@sha256:" + "a" * 64)

    typed_storage = from_sdk(storage)
    assert [f.prefix for f in typed_storage.spec.supported_uri_formats] == ["oci://"]
    assert typed_storage.spec.container.name == "storage-initializer"
    assert typed_storage.spec.container.command == ["wasinfer", "pull"]

    model = from_sdk(service).spec.predictor.model
    assert model.runtime == runtime["metadata"]["name"] and model.model_format.name == "wasm"
    assert model.storage_uri == "oci://registry.example.com/models/digits:1.0.0"


@pytest.mark.parametrize(("path", "value", "says"), [
    (("spec", "supportedModelFormat"), [], "has no field supportedModelFormat"),  # a misspelt field
    (("spec", "multiModel"), "false", "bool expected"),  # a string for a boolean
    (("spec", "containers", 0, "ports", 0, "containerPort"), "8080", "int expected"),  # a core type inside
    (("spec", "containers", 0, "volumeMount"), [], "V1Container has no field volumeMount"),
])
def test_the_check_finds_a_wrong_field(path: tuple[str | int, ...], value: Any, says: str) -> None:
    """The check can fail: each mistake a hand-edited manifest could make is named, with its path."""
    sdk()
    [_, runtime] = render_kserve(load_values([], {}))
    target: Any = runtime
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SchemaError, match=re.escape(says)):
        from_sdk(runtime)


def test_a_required_field_missing_is_refused() -> None:
    sdk()
    [storage, _] = render_kserve(load_values([], {}))
    del storage["spec"]["container"]["name"]  # V1Container's name is required
    with pytest.raises(SchemaError, match="name"):
        from_sdk(storage)


def test_bad_kserve_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "render", "--cluster"]) == 2
    assert "--kserve-runtime" in capsys.readouterr().err
    assert main(["deploy", "render", "--kserve-runtime", "--inference-service", "Digits=oci://r.example/m:1"]) == 2
    assert "DNS label" in capsys.readouterr().err
    assert main(["deploy", "render", "--kserve-runtime", "--inference-service", "digits=oci://r.example/Models:1"]) == 2
    assert "lowercase" in capsys.readouterr().err


def test_the_deploy_render_help_describes_the_kserve_objects(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["deploy", "render", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--kserve-runtime" in text and "ClusterServingRuntime" in text and "ClusterStorageContainer" in text


def test_kserves_flow_oci_storage_uri_pulled_then_served_under_the_services_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage initializer's command and the runtime's, as rendered, run with KServe's arguments."""
    from tests.registry.registry_server import run_registry
    from wasinfer.serving.cli import fetch_desired
    from wasinfer.serving.desired import DesiredState

    home = tmp_path / "home"
    monkeypatch.setenv("WASINFER_HOME", str(home))
    monkeypatch.setenv("WASINFER_REGISTRY_PLAIN_HTTP", "1")
    module = tmp_path / "scale.wasm"
    module.write_bytes(convert_onnx(scale_model(np.array([1, 2, 3, 4], np.float32)), max_batch=2, name="scale").wasm)
    [storage, runtime] = render_kserve(load_values([], {}))
    with run_registry(tmp_path / "registry") as registry:
        uri = f"oci://{registry.address}/team/scale:1.0.0"
        assert main(["push", str(module), f"{registry.address}/team/scale:1.0.0", "--plain-http"]) == 0
        # The storage initializer: the container's command, then KServe's two arguments
        mounted = tmp_path / "mnt" / "models"
        mounted.mkdir(parents=True)
        command = storage["spec"]["container"]["command"]
        assert command[0] == "wasinfer" and main([*command[1:], uri, str(mounted)]) == 0
        assert (mounted / "model.wasm").read_bytes() == module.read_bytes()
        # The server's own registry fetch (--desired-state model_path) takes the oci:// form too
        fetched = fetch_desired(DesiredState(uri, "1.0.0"))
        assert fetched.version == "1.0.0"
    capsys.readouterr()

    [container] = runtime["spec"]["containers"]
    args = [arg.replace(NAME_PLACEHOLDER, "digits") for arg in container["args"]]
    args[args.index("--model-repository") + 1] = str(mounted)
    args[args.index("--http-port") + 1], args[args.index("--grpc-port") + 1] = "0", "0"
    args[args.index("--host") + 1] = "127.0.0.1"
    process = subprocess.Popen([sys.executable, "-m", "wasinfer.cli.main", *container["command"][1:], *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, WASINFER_HOME=str(home), COLUMNS="200"))
    try:
        output = "".join(read_until(output_lines(process), "Press Ctrl+C", timeout=60))
        match = re.search(r"REST  (http://127\.0\.0\.1:\d+)/v2", output)
        assert match, output
        with urllib.request.urlopen(f"{match[1]}/v2/models/digits/ready", timeout=30) as response:
            assert response.status == 200  # loaded before the ports opened (--model-control-mode none)
        body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]})
        request = urllib.request.Request(f"{match[1]}/v2/models/digits/infer", data=body.encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert answer["model_name"] == "digits" and answer["outputs"][0]["data"] == [1, 2, 3, 4]
        assert [p.name for p in mounted.iterdir() if p.name.startswith("model.wasm")] == ["model.wasm"]
    finally:
        stop(process, grace=20)


def test_pull_takes_a_directory_or_o_not_both(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pull", "oci://registry.example.com/team/scale:1.0.0", "models", "-o", "model.wasm"]) == 2
    assert "give one of them" in capsys.readouterr().err


def test_model_name_needs_a_repository_and_a_valid_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model-name", "digits", "--http-port", "0"]) == 2
    assert "--model-repository" in capsys.readouterr().err
    (tmp_path / "model.wasm").write_bytes(b"\x00asm\x01\x00\x00\x00")
    assert main(["serve", "--model-repository", str(tmp_path), "--model-name", "../up", "--http-port", "0"]) == 2
    assert "a model name is" in " ".join(capsys.readouterr().err.split())
