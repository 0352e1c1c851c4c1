"""wasinfer as a KServe serving runtime: the ServingRuntime (or ClusterServingRuntime) that runs
`wasinfer serve` for InferenceServices of model format wasm, onnx or tflite, the ClusterStorageContainer
that fetches `storageUri: oci://...` with `wasinfer pull`, and an example InferenceService.

Why the objects look as they do (KServe's conventions, docs/deploy.md "KServe"):

- KServe runs the storage initializer (an init container) with two arguments, the storageUri and
  /mnt/models, and mounts that directory read-only into the runtime's container. So the runtime serves
  /mnt/models (`--model-repository`): a directory holding model.wasm (or model.onnx, model.tflite) itself
  is served as the InferenceService's name (`--model-name {{.Name}}`, which KServe fills in), so that
  /v2/models/NAME/infer is the InferenceService's own path, as with KServe's built-in v2 runtimes; a
  directory laid out as a Triton-style repository (<name>/<version>/model.wasm) is served as it is.
- `oci://` URIs: a wasinfer model in a registry is an OCI *artifact* (a model.wasm layer, the source
  model, a signature referrer), not a container image, so KServe's own OCI modes (Modelcars, `native`,
  `fetch`: each reads an image's /models) cannot serve it. KServe hands a plain oci:// URI to the
  ClusterStorageContainer that claims its prefix where no OCI mode is configured (KServe's default), and
  `wasinfer pull URI DIR` takes exactly the two arguments KServe passes: it verifies digests and
  signatures as everywhere else.
- KServe routes HTTP to the runtime container's one declared port, 8080 (Knative allows one), and by
  its convention gRPC to 8081; both speak the Open Inference Protocol v2 (`protocolVersions` v2,
  grpc-v2). /metrics is on the HTTP port, named for KServe's metrics aggregation by the
  prometheus.kserve.io annotations.
- Models load before the ports open (`--model-control-mode none`): the pod turns ready only once its
  model serves, and a model that does not load fails the pod at once, naming it, instead of its first
  caller.
- onnx and tflite are claimed without autoSelect: an InferenceService picks wasinfer for them by
  `runtime:` (KServe's own runtimes claim those formats too); wasm is wasinfer's alone.
- The root filesystem is read-only as in the chart's Deployment: $WASINFER_HOME (the compiled-code
  cache, the --model-name links) and /tmp are emptyDirs.
"""

from __future__ import annotations

import copy

from wasinfer.deploy.render import MANAGED_BY, STATE_DIR, Manifest, image_reference, labels
from wasinfer.deploy.values import Values

API_VERSION = "serving.kserve.io/v1alpha1"  # ServingRuntime, ClusterServingRuntime, ClusterStorageContainer
ISVC_API_VERSION = "serving.kserve.io/v1beta1"
RUNTIME_NAME = "wasinfer"
STORAGE_CONTAINER_NAME = "wasinfer-oci"
MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts the storageUri's files
CONTAINER_NAME = "kserve-container"  # KServe merges an InferenceService's model spec into the container of this name
STORAGE_INITIALIZER = "storage-initializer"  # KServe recognises its init container by this name
HTTP_PORT, GRPC_PORT = 8080, 8081
NAME_PLACEHOLDER = "{{.Name}}"  # KServe puts the InferenceService's name here
MODEL_FORMATS = ("wasm", "onnx", "tflite")
AUTO_SELECTED = ("wasm",)
OCI_PREFIX = "oci://"


def server_args(values: Values) -> list[str]:
    return ["--model-repository", MODEL_DIR, "--model-name", NAME_PLACEHOLDER, "--model-control-mode", "none",
            "--host", "0.0.0.0", "--http-port", str(HTTP_PORT), "--grpc-port", str(GRPC_PORT),
            "--log-format", values["server"]["logFormat"], *values["server"]["extraArgs"]]


def serving_runtime(values: Values, cluster: bool = False, managed_by: str = MANAGED_BY) -> Manifest:
    """The ServingRuntime (namespaced) or ClusterServingRuntime (every namespace) named `wasinfer`."""
    container: Manifest = {
        "name": CONTAINER_NAME,
        "image": image_reference(values["image"]),
        "imagePullPolicy": values["image"]["pullPolicy"],
        "command": ["wasinfer", "serve"],
        "args": server_args(values),
        "ports": [{"containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": [{"name": "WASINFER_HOME", "value": STATE_DIR}],
        "resources": copy.deepcopy(values["resources"]),
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": HTTP_PORT},
                           "periodSeconds": 5, "failureThreshold": 3},
        "securityContext": copy.deepcopy(values["securityContext"]),
        "volumeMounts": [{"name": "state", "mountPath": STATE_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    spec: Manifest = {
        "supportedModelFormats": [{"name": name, "version": "1", "autoSelect": name in AUTO_SELECTED,
                                   **({"priority": 1} if name in AUTO_SELECTED else {})} for name in MODEL_FORMATS],
        "protocolVersions": ["v2", "grpc-v2"],
        "multiModel": False,
        "annotations": {"prometheus.kserve.io/port": str(HTTP_PORT), "prometheus.kserve.io/path": "/metrics"},
        "containers": [container],
        "volumes": [{"name": "state", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
    }
    if values["imagePullSecrets"]:
        spec["imagePullSecrets"] = [{"name": name} for name in values["imagePullSecrets"]]
    for key in ("nodeSelector", "tolerations", "affinity"):
        if values[key]:
            spec[key] = copy.deepcopy(values[key])
    return {"apiVersion": API_VERSION, "kind": "ClusterServingRuntime" if cluster else "ServingRuntime",
            "metadata": {"name": RUNTIME_NAME, "labels": labels(values, "kserve-runtime", managed_by)},
            "spec": spec}


def storage_container(values: Values, managed_by: str = MANAGED_BY) -> Manifest:
    """The ClusterStorageContainer for oci:// URIs: `wasinfer pull URI /mnt/models` in KServe's init container
    (KServe appends the two arguments), from the server's own image."""
    container: Manifest = {
        "name": STORAGE_INITIALIZER,
        "image": image_reference(values["image"]),
        "imagePullPolicy": values["image"]["pullPolicy"],
        "command": ["wasinfer", "pull"],
        # the pull's trust state, on the one writable mount (the root filesystem is read-only); a dot directory
        # is no model name, so the runtime never takes it for one
        "env": [{"name": "WASINFER_HOME", "value": f"{MODEL_DIR}/.wasinfer"}],
        "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "securityContext": copy.deepcopy(values["securityContext"]),
    }
    return {"apiVersion": API_VERSION, "kind": "ClusterStorageContainer",
            "metadata": {"name": STORAGE_CONTAINER_NAME, "labels": labels(values, "kserve-storage", managed_by)},
            "spec": {"container": container, "supportedUriFormats": [{"prefix": OCI_PREFIX}]}}


def inference_service(name: str, storage_uri: str, model_format: str = "wasm", managed_by: str = MANAGED_BY
                      ) -> Manifest:
    """An InferenceService that serves `storage_uri` with the wasinfer runtime (named, so that onnx and
    tflite come here too, not to another runtime that claims them)."""
    if model_format not in MODEL_FORMATS:
        raise ValueError(f"model format {model_format!r}: wasinfer serves {', '.join(MODEL_FORMATS)}")
    return {"apiVersion": ISVC_API_VERSION, "kind": "InferenceService",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": managed_by}},
            "spec": {"predictor": {"model": {"modelFormat": {"name": model_format}, "runtime": RUNTIME_NAME,
                                             "protocolVersion": "v2", "storageUri": storage_uri}}}}


def render_kserve(values: Values, cluster: bool = False, services: list[tuple[str, str]] | None = None,
                  managed_by: str = MANAGED_BY) -> list[Manifest]:
    """The runtime, the oci:// storage container, and an InferenceService per (name, storageUri), in the order
    `kubectl apply` wants them."""
    return [storage_container(values, managed_by), serving_runtime(values, cluster, managed_by),
            *(inference_service(name, uri, managed_by=managed_by) for name, uri in services or [])]
