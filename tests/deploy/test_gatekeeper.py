"""The Gatekeeper templates' Rego, run in-process (rego-cpp) on good and bad objects in Gatekeeper's input shape.

Every assertion is on the exact messages a cluster would print, so a change in wording is a
deliberate change here too.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from wasinfer.deploy import gatekeeper
from wasinfer.deploy.gatekeeper import (
    DEFAULT_DIR,
    Constraint,
    GatekeeperError,
    Template,
    audit,
    evaluate,
    load_constraints,
    load_templates,
    matches,
    template_from_dict,
)

TEMPLATE_FILES = sorted((DEFAULT_DIR / "templates").glob("*.yaml"))
INFERENCE_NS = {"wasinfer.io/inference": "enabled"}
DIGEST = "sha256:" + "ab" * 32
SEED_RESOURCES = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "2000m", "memory": "2Gi"}}


@pytest.fixture(scope="module")
def templates() -> dict[str, Template]:
    return load_templates()


@pytest.fixture(scope="module")
def params() -> dict[str, dict[str, Any]]:
    """The shipped Constraints' parameters, by kind (the tests run the templates as deployed)."""
    return {c.kind: c.parameters for c in load_constraints()}


def container(name: str = "server", image: str = "registry.example.com/ai-inference-service:1.0.0",
              model: str | None = "/models/ai-model.wasm", resources: dict[str, Any] | None = None,
              env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "image": image,
                           "resources": copy.deepcopy(SEED_RESOURCES if resources is None else resources)}
    variables = [{"name": "MODEL_PATH", "value": model}] if model is not None else []
    out["env"] = variables + (env or [])
    return out


def pod_spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"runtimeClassName": "wasmedge", "containers": [container()]}
    spec.update(changes)
    return {k: v for k, v in spec.items() if v is not None}


def workload(kind: str, spec: dict[str, Any] | None = None, name: str = "ai-inference-service",
             labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
             pod_labels: dict[str, str] | None = None, namespace: str = "edge") -> dict[str, Any]:
    """A Pod, or a workload kind wrapping a pod template, around the same pod spec."""
    spec = pod_spec() if spec is None else spec
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels or {},
                                "annotations": annotations or {}}
    template = {"metadata": {"labels": pod_labels or {}}, "spec": spec}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
    if kind == "Job":
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": {"template": template}}
    if kind == "CronJob":
        return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata,
                "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}}}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": metadata,
            "spec": {"replicas": 50, "selector": {"matchLabels": {"app": "x"}}, "template": template}}


def config_map(data: dict[str, str], labels: dict[str, str] | None = None,
               annotations: dict[str, str] | None = None) -> dict[str, Any]:
    default_labels = {"app.kubernetes.io/part-of": "wasinfer", "app.kubernetes.io/component": "config"}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ai-model-config", "namespace": "edge",
                         "labels": default_labels if labels is None else labels, "annotations": annotations or {}},
            "data": data}


KINDS = ["Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"]
POD_PATH = {"Pod": "spec", "Deployment": "spec.template.spec", "StatefulSet": "spec.template.spec",
            "DaemonSet": "spec.template.spec", "Job": "spec.template.spec",
            "CronJob": "spec.jobTemplate.spec.template.spec"}


# --- structure -------------------------------------------------------------------------------------


def _structural(schema: dict[str, Any], where: str) -> None:
    """Kubernetes' structural-schema rule Gatekeeper's generated CRD must obey: every node has a type
    (or is int-or-string)."""
    assert "type" in schema or schema.get("x-kubernetes-int-or-string") is True, f"{where}: no type"
    for name, sub in (schema.get("properties") or {}).items():
        _structural(sub, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        _structural(schema["items"], f"{where}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        _structural(schema["additionalProperties"], f"{where}{{}}")


def test_four_templates_ship() -> None:
    assert [p.name for p in TEMPLATE_FILES] == ["wasinferallowedregistries.yaml", "wasinferpinnedmodels.yaml",
                                               "wasinferresources.yaml", "wasinferruntimeclass.yaml"]


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=lambda p: p.stem)
def test_template_structure(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    assert document["apiVersion"] == "templates.gatekeeper.sh/v1"
    assert document["kind"] == "ConstraintTemplate"
    kind = document["spec"]["crd"]["spec"]["names"]["kind"]
    assert kind.startswith("Wasinfer")
    assert document["metadata"]["name"] == kind.lower()
    (target,) = document["spec"]["targets"]
    assert target["target"] == "admission.k8s.gatekeeper.sh"
    (code,) = target["code"]
    assert code["engine"] == "Rego" and code["source"]["version"] == "v1"
    rego = code["source"]["rego"]
    assert re.search(rf"^package {kind.lower()}$", rego, re.MULTILINE)
    assert re.search(r"^violation contains \{\"msg\": msg\} if \{", rego, re.MULTILINE)
    assert "import rego.v1" not in rego  # Gatekeeper rejects it under source.version v1
    schema = document["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"]
    jsonschema.Draft4Validator.check_schema(schema)
    _structural(schema, kind)
    assert schema["properties"], "a parameter schema with no parameters"


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=lambda p: p.stem)
def test_rego_parses_and_ignores_unrelated_objects(path: Path) -> None:
    template = gatekeeper.load_template(path)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {}}
    assert evaluate(template, service, {}) == []


def test_shared_helpers_are_identical_in_every_template(templates: dict[str, Template]) -> None:
    """The pod-spec and model-reference helpers are copied into each template (Gatekeeper has no
    cross-template import); this keeps the copies from drifting."""
    def block(rego: str, start: str) -> str:
        begin = rego.index(start)
        return rego[begin:rego.index("# ---", begin + len(start))]

    pods = {block(t.rego, "# --- where the pod spec lives") for t in templates.values()}
    assert len(pods) == 1
    models = {block(t.rego, "# --- model references") for t in templates.values() if "# --- model references" in t.rego}
    assert len(models) == 1
    assert sum("# --- model references" in t.rego for t in templates.values()) == 2


def test_constraints_match_templates_and_their_schemas(templates: dict[str, Template]) -> None:
    constraints = load_constraints()
    assert sorted(c.kind for c in constraints) == sorted(templates)
    for constraint in constraints:
        schema = {**templates[constraint.kind].schema, "$schema": "http://json-schema.org/draft-04/schema#"}
        jsonschema.validate(constraint.parameters, schema)
        kinds = {k for entry in constraint.match["kinds"] for k in entry["kinds"]}
        assert {"Pod", "Deployment", "Job"} <= kinds
        assert constraint.match["namespaceSelector"] == {"matchLabels": INFERENCE_NS}
        assert constraint.enforcement_action == "deny"


def test_seed_parameters(params: dict[str, dict[str, Any]]) -> None:
    assert params["WasinferRuntimeClass"] == {"allowed": ["wasmedge"]}
    assert params["WasinferResources"] == {"minCpuRequest": "500m", "minMemoryRequest": "512Mi",
                                           "maxCpuLimit": "2", "maxMemoryLimit": "2Gi"}
    assert params["WasinferAllowedRegistries"] == {"registries": ["registry.example.com"]}


def test_template_errors_name_the_problem() -> None:
    document = yaml.safe_load(TEMPLATE_FILES[-1].read_text())
    broken = copy.deepcopy(document)
    broken["spec"]["targets"][0]["code"][0]["source"]["rego"] += "\nviolation contains {\"msg\": x} if { x := }\n"
    template = template_from_dict(broken, Path("broken.yaml"))
    with pytest.raises(GatekeeperError, match=r"^broken\.yaml: .*line \d+"):
        evaluate(template, workload("Pod"), {})
    v0 = copy.deepcopy(document)
    v0["spec"]["targets"][0] = {"target": gatekeeper.TARGET, "rego": "package wasinferruntimeclass\n"}
    with pytest.raises(GatekeeperError, match="v0 `rego:` field"):
        template_from_dict(v0)
    renamed = copy.deepcopy(document)
    renamed["metadata"]["name"] = "other"
    with pytest.raises(GatekeeperError, match="must be the kind lowercased"):
        template_from_dict(renamed)


# --- WasinferRuntimeClass ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_runtime_class(kind: str, templates: dict[str, Template], params: dict[str, dict[str, Any]]) -> None:
    template, p = templates["WasinferRuntimeClass"], params["WasinferRuntimeClass"]
    assert evaluate(template, workload(kind), p) == []
    assert evaluate(template, workload(kind, pod_spec(runtimeClassName=None)), p) == [
        f"{kind} ai-inference-service: {POD_PATH[kind]}.runtimeClassName is not set; inference workloads must "
        "use one of: wasmedge"]
    assert evaluate(template, workload(kind, pod_spec(runtimeClassName="runc")), p) == [
        f'{kind} ai-inference-service: runtimeClassName "runc" is not allowed; inference workloads must use one '
        "of: wasmedge"]


def test_runtime_class_defaults_and_label_selection(templates: dict[str, Template]) -> None:
    template = templates["WasinferRuntimeClass"]
    runc = workload("Deployment", pod_spec(runtimeClassName="runc"))
    assert evaluate(template, runc, {}) == [  # no parameters: wasmedge
        'Deployment ai-inference-service: runtimeClassName "runc" is not allowed; inference workloads must use '
        "one of: wasmedge"]
    assert evaluate(template, runc, {"allowed": ["wasmedge", "runc"]}) == []
    assert evaluate(template, runc, {"allowed": []}) == [
        'Deployment ai-inference-service: runtimeClassName "runc" is not allowed; inference workloads must use '
        "one of: (none)"]
    selected = {"inferenceLabels": {"app.kubernetes.io/part-of": "wasinfer"}}
    assert evaluate(template, runc, selected) == []  # not an inference workload
    labelled = workload("Deployment", pod_spec(runtimeClassName="runc"),
                        pod_labels={"app.kubernetes.io/part-of": "wasinfer"})
    assert len(evaluate(template, labelled, selected)) == 1
    on_object = workload("Job", pod_spec(runtimeClassName=None), labels={"app.kubernetes.io/part-of": "wasinfer"})
    assert len(evaluate(template, on_object, selected)) == 1


# --- WasinferResources --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_resources_good(kind: str, templates: dict[str, Template], params: dict[str, dict[str, Any]]) -> None:
    assert evaluate(templates["WasinferResources"], workload(kind), params["WasinferResources"]) == []


def _resources_messages(templates: dict[str, Template], params: dict[str, dict[str, Any]],
                        resources: dict[str, Any], kind: str = "Deployment") -> list[str]:
    obj = workload(kind, pod_spec(containers=[container(resources=resources)]))
    return evaluate(templates["WasinferResources"], obj, params["WasinferResources"])


def test_resources_missing(templates: dict[str, Template], params: dict[str, dict[str, Any]]) -> None:
    no_limits = {"requests": {"cpu": "500m", "memory": "512Mi"}}
    assert _resources_messages(templates, params, no_limits) == [
        'Deployment ai-inference-service: container "server" has no cpu limit',
        'Deployment ai-inference-service: container "server" has no memory limit']
    assert _resources_messages(templates, params, {}, kind="Job") == [
        'Job ai-inference-service: container "server" has no cpu limit',
        'Job ai-inference-service: container "server" has no cpu request',
        'Job ai-inference-service: container "server" has no memory limit',
        'Job ai-inference-service: container "server" has no memory request']


def test_resources_bounds(templates: dict[str, Template], params: dict[str, dict[str, Any]]) -> None:
    over = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "3", "memory": "4Gi"}}
    assert _resources_messages(templates, params, over, kind="Pod") == [
        'Pod ai-inference-service: container "server" cpu limit 3 is above the maximum 2',
        'Pod ai-inference-service: container "server" memory limit 4Gi is above the maximum 2Gi']
    inverted = {"requests": {"cpu": "1500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    assert _resources_messages(templates, params, inverted) == [
        'Deployment ai-inference-service: container "server" cpu request 1500m is above its limit 1']
    small = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    assert _resources_messages(templates, params, small) == [
        'Deployment ai-inference-service: container "server" cpu request 250m is below the minimum 500m',
        'Deployment ai-inference-service: container "server" memory request 256Mi is below the minimum 512Mi']


def test_resources_init_containers_are_checked(templates: dict[str, Template],
                                               params: dict[str, dict[str, Any]]) -> None:
    init = container(name="fetch-model", model=None, resources={"limits": {"cpu": "4", "memory": "512Mi"}})
    obj = workload("Deployment", pod_spec(initContainers=[init]))
    assert evaluate(templates["WasinferResources"], obj, params["WasinferResources"]) == [
        'Deployment ai-inference-service: initContainer "fetch-model" cpu limit 4 is above the maximum 2',
        'Deployment ai-inference-service: initContainer "fetch-model" has no cpu request',
        'Deployment ai-inference-service: initContainer "fetch-model" has no memory request']


# (limit, allowed under max 2 CPUs / 2Gi): Kubernetes quantity forms, and both sides of each boundary
CPU_LIMITS = [("2", True), ("2000m", True), (2, True), (1.5, True), ("1.5", True), ("2.", True), (".5", True),
              ("2e0", True), ("2001m", False), ("2.001", False), ("3", False), ("2000001u", False),
              ("2000000000n", True), ("1E", False), ("+2", True)]
MEMORY_LIMITS = [("2Gi", True), ("2048Mi", True), ("2097152Ki", True), ("2049Mi", False), ("2G", True),
                 ("2.2G", False), ("1e9", True), ("3e9", False), ("2147483648", True), ("2147483649", False),
                 ("0.001Ti", True), ("1Ti", False), ("2000M", True), ("2100000k", True), ("3000000k", False)]


@pytest.mark.parametrize(("limit", "ok"), CPU_LIMITS, ids=[str(q) for q, _ in CPU_LIMITS])
def test_cpu_quantities(limit: Any, ok: bool, templates: dict[str, Template],
                        params: dict[str, dict[str, Any]]) -> None:
    resources = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": limit, "memory": "2Gi"}}
    expected = [] if ok else [f'Deployment ai-inference-service: container "server" cpu limit {limit} is above '
                              "the maximum 2"]
    assert _resources_messages(templates, params, resources) == expected


@pytest.mark.parametrize(("limit", "ok"), MEMORY_LIMITS, ids=[str(q) for q, _ in MEMORY_LIMITS])
def test_memory_quantities(limit: str, ok: bool, templates: dict[str, Template],
                           params: dict[str, dict[str, Any]]) -> None:
    resources = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": limit}}
    expected = [] if ok else [f'Deployment ai-inference-service: container "server" memory limit {limit} is above '
                              "the maximum 2Gi"]
    assert _resources_messages(templates, params, resources) == expected


@pytest.mark.parametrize("bad", ["lots", "2 Gi", "1e3Mi", "-1", "2gi", "1.2.3", ""])
def test_not_a_quantity(bad: str, templates: dict[str, Template], params: dict[str, dict[str, Any]]) -> None:
    resources = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": bad}}
    assert _resources_messages(templates, params, resources) == [
        f'Deployment ai-inference-service: container "server" memory limit "{bad}" is not a Kubernetes quantity']


def test_bad_parameters_fail_closed(templates: dict[str, Template]) -> None:
    assert evaluate(templates["WasinferResources"], workload("Pod"), {"maxCpuLimit": "two"}) == [
        'parameter maxCpuLimit "two" is not a Kubernetes quantity']


# --- WasinferAllowedRegistries ------------------------------------------------------------------------

ALLOWED = "registry.example.com"


def _registry_messages(templates: dict[str, Template], obj: dict[str, Any],
                       registries: list[str] | None = None) -> list[str]:
    chosen = [ALLOWED] if registries is None else registries
    return evaluate(templates["WasinferAllowedRegistries"], obj, {"registries": chosen})


@pytest.mark.parametrize("kind", KINDS)
def test_registries_good(kind: str, templates: dict[str, Template], params: dict[str, dict[str, Any]]) -> None:
    assert evaluate(templates["WasinferAllowedRegistries"], workload(kind), params["WasinferAllowedRegistries"]) == []


@pytest.mark.parametrize(("image", "repository"), [
    ("nginx", "docker.io/library/nginx"),
    ("nginx:1.27", "docker.io/library/nginx"),
    ("docker.io/nginx", "docker.io/library/nginx"),
    ("acme/app:1", "docker.io/acme/app"),
    ("ghcr.io/someone/ai-inference-service:latest", "ghcr.io/someone/ai-inference-service"),
    ("registry.example.com.evil.io/ai-inference-service", "registry.example.com.evil.io/ai-inference-service"),
    ("localhost:5000/ai@" + DIGEST, "localhost:5000/ai"),
])
def test_foreign_images(image: str, repository: str, templates: dict[str, Template]) -> None:
    obj = workload("Deployment", pod_spec(containers=[container(image=image)]))
    assert _registry_messages(templates, obj) == [
        f'Deployment ai-inference-service: container "server" image "{image}" ({repository}) is not from an allowed '
        "registry (registry.example.com)"]


def test_registry_prefixes(templates: dict[str, Template]) -> None:
    def admitted(image: str, registries: list[str]) -> bool:
        return not _registry_messages(templates, workload("Pod", pod_spec(containers=[container(image=image)])),
                                      registries)

    assert admitted("nginx:1.27", ["docker.io/library"])
    assert not admitted("acme/nginx", ["docker.io/library"])
    assert admitted("ghcr.io/acme/models/x:1", ["ghcr.io/acme/"])
    assert admitted("ghcr.io/acme/x@" + DIGEST, ["ghcr.io/acme"])
    assert not admitted("ghcr.io/acmeevil/x:1", ["ghcr.io/acme"])  # whole path components only
    assert admitted("registry.example.com:5000/x", ["registry.example.com:5000"])
    assert not admitted("registry.example.com:5000/x", ["registry.example.com"])
    assert not admitted("registry.example.com/x", [])


def test_registries_init_and_ephemeral_containers(templates: dict[str, Template]) -> None:
    spec = pod_spec(initContainers=[container(name="init", image="busybox", model=None)],
                    ephemeralContainers=[{"name": "debug", "image": "quay.io/debug/shell"}])
    assert _registry_messages(templates, workload("Pod", spec)) == [
        'Pod ai-inference-service: ephemeralContainer "debug" image "quay.io/debug/shell" (quay.io/debug/shell) is '
        "not from an allowed registry (registry.example.com)",
        'Pod ai-inference-service: initContainer "init" image "busybox" (docker.io/library/busybox) is not from an '
        "allowed registry (registry.example.com)"]


@pytest.mark.parametrize("model", ["/models/ai-model.wasm", "./ai-model.wasm", "ai-model:v1.0.0",
                                   "registry.example.com/models/ai-model:v1.0.0",
                                   "oci://registry.example.com/models/ai-model@" + DIGEST])
def test_model_paths_admitted(model: str, templates: dict[str, Template]) -> None:
    """Files on the node and local-store names are not pulled; registry references from allowed hosts pass."""
    obj = workload("Deployment", pod_spec(containers=[container(model=model)]))
    assert _registry_messages(templates, obj) == []


@pytest.mark.parametrize(("model", "repository"), [
    ("ghcr.io/someone/ai-model:v1.0.0", "ghcr.io/someone/ai-model"),
    ("oci://ghcr.io/someone/ai-model:v1.0.0", "ghcr.io/someone/ai-model"),
    ("oci://ai-model:v1", "docker.io/library/ai-model"),
    ("localhost:5000/ai-model@" + DIGEST, "localhost:5000/ai-model"),
])
def test_foreign_model_paths(model: str, repository: str, templates: dict[str, Template]) -> None:
    obj = workload("Job", pod_spec(containers=[container(model=model)]))
    assert _registry_messages(templates, obj) == [
        f'Job ai-inference-service: container "server" MODEL_PATH "{model}" ({repository}) is not from an allowed '
        "registry (registry.example.com)"]


def test_model_config_maps(templates: dict[str, Template]) -> None:
    foreign = {"model_path": "ghcr.io/someone/ai-model", "model_version": "v1.0.0"}
    assert _registry_messages(templates, config_map(foreign)) == [
        'ConfigMap ai-model-config: model_path "ghcr.io/someone/ai-model" (ghcr.io/someone/ai-model) is not from an '
        "allowed registry (registry.example.com)"]
    assert _registry_messages(templates, config_map(foreign, labels={})) == []  # not a model config
    seed = {"model_path": "/models/ai-model.wasm", "model_version": "v1.0.0", "model_update_interval": "5m",
            "cache_enabled": "true"}
    assert _registry_messages(templates, config_map(seed)) == []
    custom = {"registries": [ALLOWED], "modelConfigLabels": {"wasinfer.io/model-config": "true"}}
    labelled = config_map(foreign, labels={"wasinfer.io/model-config": "true"})
    assert len(evaluate(templates["WasinferAllowedRegistries"], labelled, custom)) == 1


# --- WasinferPinnedModels -----------------------------------------------------------------------------

TRUST_ENV = [{"name": "WASINFER_TRUST_MODE", "value": "require"},
             {"name": "WASINFER_TRUST_KEYS", "value": "/etc/wasinfer/keys"}]
VERIFIED = {"wasinfer.io/signature-verified": "true", "wasinfer.io/trust-mode": "require"}


def _pinned(templates: dict[str, Template], obj: dict[str, Any], parameters: dict[str, Any] | None = None
            ) -> list[str]:
    return evaluate(templates["WasinferPinnedModels"], obj, {"allowSigned": True} if parameters is None else parameters)


@pytest.mark.parametrize("kind", ["Pod", "Deployment", "Job"])
def test_unpinned_model_tag(kind: str, templates: dict[str, Template]) -> None:
    model = "registry.example.com/models/ai-model:v1.0.0"
    assert _pinned(templates, workload(kind, pod_spec(containers=[container(model=model)]))) == [
        f'{kind} ai-inference-service: container "server" MODEL_PATH "{model}" is not pinned by digest (@sha256:...) '
        "and signatures are not enforced"]


@pytest.mark.parametrize("model", ["registry.example.com/models/ai-model@" + DIGEST,
                                   "registry.example.com/models/ai-model:v1.0.0@" + DIGEST,
                                   "oci://registry.example.com/models/ai-model@" + DIGEST,
                                   "/models/ai-model.wasm", "ai-model"])
def test_pinned_or_not_pulled(model: str, templates: dict[str, Template]) -> None:
    assert _pinned(templates, workload("Deployment", pod_spec(containers=[container(model=model)])), {}) == []


def test_short_or_uppercase_digest_is_not_a_pin(templates: dict[str, Template]) -> None:
    for digest in ("sha256:abc", "sha256:" + "AB" * 32, "sha512:" + "ab" * 64):
        model = f"registry.example.com/m@{digest}"
        assert len(_pinned(templates, workload("Pod", pod_spec(containers=[container(model=model)])))) == 1


def test_signature_enforced_tags(templates: dict[str, Template]) -> None:
    model = "registry.example.com/models/ai-model:v1.0.0"
    signed = workload("Deployment", pod_spec(containers=[container(model=model, env=TRUST_ENV)]))
    assert _pinned(templates, signed) == []
    assert len(_pinned(templates, signed, {"allowSigned": False})) == 1  # digests only
    warn_only = workload("Deployment", pod_spec(containers=[container(model=model, env=[
        {"name": "WASINFER_TRUST_MODE", "value": "warn"}, TRUST_ENV[1]])]))
    assert len(_pinned(templates, warn_only)) == 1
    no_keys = workload("Deployment", pod_spec(containers=[container(model=model, env=TRUST_ENV[:1])]))
    assert len(_pinned(templates, no_keys)) == 1
    annotated = workload("Deployment", pod_spec(containers=[container(model=model)]), annotations=VERIFIED)
    assert _pinned(templates, annotated) == []
    half = workload("Deployment", pod_spec(containers=[container(model=model)]),
                    annotations={"wasinfer.io/signature-verified": "true"})
    assert len(_pinned(templates, half)) == 1


def test_pinned_config_maps(templates: dict[str, Template]) -> None:
    path = "registry.example.com/models/ai-model"
    assert _pinned(templates, config_map({"model_path": path})) == [
        'ConfigMap ai-model-config: model_path "registry.example.com/models/ai-model" is not pinned by digest '
        "(@sha256:...) and signatures are not enforced"]
    # model_version picks the tag the server pulls, so a digest in model_path is not a pin next to it
    assert _pinned(templates, config_map({"model_path": f"{path}@{DIGEST}", "model_version": "v1.0.0"})) == [
        'ConfigMap ai-model-config: model_version "v1.0.0" selects a tag of '
        f'"{path}@{DIGEST}"; pin it by digest (model_version: sha256:...) or enforce signatures']
    assert _pinned(templates, config_map({"model_path": path, "model_version": DIGEST})) == []
    assert _pinned(templates, config_map({"model_path": f"{path}@{DIGEST}"})) == []
    assert _pinned(templates, config_map({"model_path": path, "model_version": "v1"}, annotations=VERIFIED)) == []
    assert _pinned(templates, config_map({"model_path": path}, labels={})) == []


# --- matching, audit, and the manifests wasinfer renders ----------------------------------------------


def test_constraint_match() -> None:
    (runtime,) = [c for c in load_constraints() if c.kind == "WasinferRuntimeClass"]
    deployment = workload("Deployment")
    assert matches(runtime, deployment, INFERENCE_NS)
    assert not matches(runtime, deployment, {"team": "web"})
    assert not matches(runtime, config_map({}), INFERENCE_NS)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "edge"}}
    assert not matches(runtime, service, INFERENCE_NS)
    expressions = Constraint("WasinferRuntimeClass", "x", match={
        "namespaceSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["edge"]}]},
        "excludedNamespaces": ["kube-system"], "labelSelector": {"matchLabels": {"app": "ai"}}})
    labelled = workload("Pod", labels={"app": "ai"})
    assert matches(expressions, labelled, {"tier": "edge"})
    assert not matches(expressions, labelled, {"tier": "core"})
    assert not matches(expressions, workload("Pod"), {"tier": "edge"})
    assert not matches(expressions, workload("Pod", labels={"app": "ai"}, namespace="kube-system"), {"tier": "edge"})


def test_audit_reports_every_constraint() -> None:
    bad = workload("Deployment", pod_spec(runtimeClassName=None, containers=[container(
        image="nginx", model="ghcr.io/someone/model:v1", resources={"limits": {"cpu": "2", "memory": "2Gi"}})]))
    found = audit([bad], namespace_labels=INFERENCE_NS)
    assert sorted({v.constraint for v in found}) == ["wasinfer-allowed-registries", "wasinfer-pinned-models",
                                                     "wasinfer-resources", "wasinfer-runtime-class"]
    assert len(found) == 6  # image and model registry, pin, two requests, runtime class
    assert {v.object for v in found} == {"Deployment/edge/ai-inference-service"}
    printed = {str(v) for v in found}
    assert ('[wasinfer-allowed-registries] Deployment ai-inference-service: container "server" image "nginx" '
            "(docker.io/library/nginx) is not from an allowed registry (registry.example.com)") in printed
    assert audit([bad], namespace_labels={}) == []  # not an inference namespace


def _seed_objects() -> list[dict[str, Any]]:
    """The seed's Deployment and ConfigMap as written there (deploy step 2 and 3)."""
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "ai-inference-service", "namespace": "edge"},
                  "spec": {"replicas": 50, "template": {"spec": {
                      "runtimeClassName": "wasmedge",
                      "containers": [{"name": "ai-inference-service",
                                      "image": "registry.example.com/ai-inference-service:latest",
                                      "resources": copy.deepcopy(SEED_RESOURCES),
                                      "env": [{"name": "MODEL_PATH", "value": "/models/ai-model.wasm"}]}]}}}}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ai-model-config", "namespace": "edge"},
                 "data": {"model_path": "/models/ai-model.wasm", "model_version": "v1.0.0",
                          "model_update_interval": "5m", "cache_enabled": "true"}}
    return [deployment, configmap]


def test_seed_manifests_pass_all_constraints() -> None:
    objects = _seed_objects()
    constraints = load_constraints()
    assert all(matches(c, objects[0], INFERENCE_NS) for c in constraints)
    assert audit(objects, namespace_labels=INFERENCE_NS) == []
    objects[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "2500m"
    assert [v.constraint for v in audit(objects, namespace_labels=INFERENCE_NS)] == ["wasinfer-resources"]


def test_rendered_manifests_pass_all_constraints() -> None:
    """`wasinfer deploy render`'s default output is admitted by every shipped constraint."""
    render = pytest.importorskip("wasinfer.deploy.render", reason="wasinfer.deploy.render is not there")
    values = pytest.importorskip("wasinfer.deploy.values", reason="wasinfer.deploy.values is not there")
    objects = render.render(values.defaults(), render.default_extras())
    constraints = load_constraints()
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert len(deployments) == 1
    assert all(matches(c, deployments[0], INFERENCE_NS) for c in constraints)
    assert any(o["kind"] == "ConfigMap" and o["metadata"]["name"] == "ai-model-config" for o in objects)
    assert audit(objects, namespace_labels=INFERENCE_NS) == []
    # and the same objects with a foreign, unpinned model are refused (the constraints saw them)
    for obj in objects:
        if obj["kind"] == "ConfigMap" and "model_path" in obj.get("data", {}):
            obj["data"]["model_path"] = "ghcr.io/someone/ai-model"
    assert sorted(v.constraint for v in audit(objects, namespace_labels=INFERENCE_NS)) == [
        "wasinfer-allowed-registries", "wasinfer-pinned-models"]


def test_cli_audit_passes_the_rendered_deployment_and_names_a_violation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wasinfer.cli.main import main

    assert main(["deploy", "audit"]) == 0
    assert "0 violations" in capsys.readouterr().out
    assert main(["deploy", "audit", "--set", "runtimeClass.name=runc"]) == 1
    out = capsys.readouterr().out
    assert 'runtimeClassName "runc" is not allowed' in out and "1 violations" in out
    pod = tmp_path / "pod.yaml"
    pod.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: edge}\n"
                   "spec: {runtimeClassName: wasmedge, containers: [{name: c, image: nginx}]}\n")
    assert main(["deploy", "audit", str(pod), "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert {v["constraint"] for v in found} >= {"wasinfer-resources", "wasinfer-allowed-registries"}
    assert main(["deploy", "audit", str(tmp_path / "missing.yaml")]) == 2


def test_cli_audit_checks_the_directory_render_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`deploy render -o manifests/` then `deploy audit manifests/`: it said `manifests: Is a directory`."""
    from wasinfer.cli.main import main

    assert main(["deploy", "render", "--set", "runtimeClass.name=runc", "-o", str(tmp_path / "manifests")]) == 0
    written = len(list((tmp_path / "manifests").iterdir()))
    capsys.readouterr()
    assert main(["deploy", "audit", str(tmp_path / "manifests")]) == 1
    out = capsys.readouterr().out
    assert 'runtimeClassName "runc" is not allowed' in out and f"{written} objects, 1 violations" in out
