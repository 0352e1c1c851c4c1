"""`wasinfer deploy render` (the Kubernetes manifests of a wasinfer deployment, without Helm) and
`wasinfer deploy audit` (those manifests, or any, against the shipped Gatekeeper constraints).

Kept apart from main.py so `add_commands` is the one hook; the objects come from
wasinfer.deploy.render, the same ones the Helm chart in deploy/helm/wasinfer renders.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from wasinfer.cli.output import EXIT_BAD_INPUT, console, error
from wasinfer.fileio import atomic_write

if TYPE_CHECKING:
    from wasinfer.deploy.render import Extras, Manifest
    from wasinfer.deploy.values import Values

_ISVC_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")  # an InferenceService's name: a DNS-1035 label

# wasinfer.deploy (PyYAML, regopy: the registry extra) is imported by the commands, so that `wasinfer --help`
# and a base install do without it.


def _extras(args: argparse.Namespace) -> Extras:
    """The monitoring files: given ones must exist; otherwise those of a source checkout, when there."""
    from wasinfer.deploy.render import Extras, default_extras

    found = default_extras()
    dashboard, rules = found.dashboard, found.rules
    if args.dashboard:
        dashboard = Path(args.dashboard).read_text()
    if args.rules:
        rules = Path(args.rules).read_text()
    return Extras(dashboard, rules)


def cmd_render(args: argparse.Namespace) -> int:
    from wasinfer.deploy import render as rendering
    from wasinfer.deploy.values import ValuesError, load, parse_set

    try:
        values = load([Path(v) for v in args.values or []], parse_set(args.set or []))
        extras = _extras(args)
        kube = rendering.parse_kube_version(args.kube_version) if args.kube_version else \
            rendering.CURRENT_KUBE_VERSION
    except (ValuesError, rendering.KubeVersionError) as exc:
        error(str(exc))
        return EXIT_BAD_INPUT
    except OSError as exc:
        error(f'{exc.filename}: {exc.strerror}')
        return EXIT_BAD_INPUT
    if args.kserve_runtime:
        try:
            manifests = _kserve_manifests(values, args)
        except ValueError as exc:
            error(str(exc))
            return EXIT_BAD_INPUT
    elif args.cluster or args.inference_service:
        error("--cluster and --inference-service go with --kserve-runtime")
        return EXIT_BAD_INPUT
    else:
        manifests = rendering.render(values, extras, kube=kube)
    if args.output is None:
        if args.json:
            print(json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}, indent=2))
        else:
            print(rendering.to_yaml(manifests), end="")
        return 0
    directory = Path(args.output)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        error(f'{directory}: {exc.strerror}')
        return EXIT_BAD_INPUT
    written = []
    for manifest in manifests:
        name = rendering.file_name(manifest)
        if args.json:
            path = directory / (name.removesuffix(".yaml") + ".json")
            atomic_write(path, (json.dumps(manifest, indent=2) + "\n").encode())
        else:
            path = directory / name
            atomic_write(path, rendering.to_yaml([manifest]).encode())
        written.append(str(path))
    if args.json:
        print(json.dumps({"files": written}))
    else:
        for path_text in written:
            console.print(path_text, markup=False, highlight=False, soft_wrap=True)
    return 0


def _kserve_manifests(values: Values, args: argparse.Namespace) -> list[Manifest]:
    """--kserve-runtime: the KServe objects, with an InferenceService per --inference-service NAME=URI."""
    from wasinfer.deploy.kserve import OCI_PREFIX, render_kserve
    from wasinfer.registry.artifact import Reference

    services = []
    for item in args.inference_service or []:
        name, equals, uri = item.partition("=")
        if not equals or not _ISVC_NAME.fullmatch(name) or not uri:
            raise ValueError(f"--inference-service {item!r}: NAME=STORAGE_URI, NAME a DNS label (lowercase letters, "
                             "digits and '-', starting with a letter, at most 63)")
        if uri.startswith(OCI_PREFIX):
            Reference.parse(uri)  # the storage container's `wasinfer pull` would refuse it in the pod
        services.append((name, uri))
    return render_kserve(values, cluster=args.cluster, services=services)


def _manifest_files(names: list[str]) -> list[Path]:
    """Each name as given, a directory as its .yaml/.yml/.json files in name order: what `render -o DIR` wrote is
    audited as `audit DIR`."""
    paths: list[Path] = []
    for name in map(Path, names):
        paths.extend(sorted(p for p in name.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
                     if name.is_dir() else [name])
    return paths


def cmd_audit(args: argparse.Namespace) -> int:
    """Gatekeeper's decision on each object, evaluated here (regopy) before anything reaches a cluster."""
    import yaml

    from wasinfer.deploy.gatekeeper import DEFAULT_DIR, GatekeeperError, audit, load_constraints, load_templates
    from wasinfer.deploy.render import render
    from wasinfer.deploy.values import ValuesError, load, parse_set

    try:
        if args.files:
            objects = [doc for path in _manifest_files(args.files) for doc in yaml.safe_load_all(path.read_text())
                       if doc]
        else:
            objects = render(load([Path(v) for v in args.values or []], parse_set(args.set or [])), _extras(args))
        policy = Path(args.policy) if args.policy else DEFAULT_DIR
        labels = dict(item.partition("=")[::2] for item in args.namespace_label or ["wasinfer.io/inference=enabled"])
        found = audit(objects, load_templates(policy / "templates"), load_constraints(policy / "constraints"),
                      namespace_labels=labels)
    except (ValuesError, GatekeeperError, yaml.YAMLError) as exc:
        error(str(exc))
        return EXIT_BAD_INPUT
    except OSError as exc:
        error(f'{exc.filename}: {exc.strerror}')
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps([{"constraint": v.constraint, "object": v.object, "message": v.message} for v in found]))
    else:
        for violation in found:
            console.print(f"{violation.object}: {violation}", markup=False, highlight=False, soft_wrap=True)
        console.print(f"{len(objects)} objects, {len(found)} violations", markup=False, highlight=False)
    return 1 if found else 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `deploy` and its actions on the top-level `wasinfer` parser."""
    deploy = sub.add_parser("deploy", help="Kubernetes (K3s) manifests for a wasinfer deployment",
                            description="Kubernetes objects for serving models on K3s with crun + WasmEdge. "
                            "docs/deploy.md describes them and every value.")
    dsub = deploy.add_subparsers(dest="deploy_command", required=True, metavar="ACTION")
    p = dsub.add_parser(
        "render", help="print (or write) the manifests: RuntimeClass, ConfigMap, Service, Deployment, ...",
        description="Render the objects of a wasinfer deployment, the same the Helm chart deploy/helm/wasinfer "
        "renders from the same values: the wasmedge RuntimeClass, the ai-model-config ConfigMap the servers watch "
        "for the model version, the Service, the Deployment (50 replicas of `wasinfer serve`), its "
        "HorizontalPodAutoscaler and PodDisruptionBudget, and - when enabled - a ServiceMonitor or PodMonitor, "
        "the Grafana dashboard ConfigMap, a PrometheusRule and a batch Job that runs a model's Wasm image. "
        "Without --output: multi-document YAML on stdout, ready for `kubectl apply -f -`.")
    p.add_argument("-f", "--values", action="append", metavar="FILE",
                   help="a YAML or JSON values file (repeatable; later files win, as with helm -f); unknown keys "
                   "are refused. Defaults: deploy/helm/wasinfer/values.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="one scalar value, KEY dotted (replicas=3, image.tag=0.2.0, batch.enabled=true); VALUE typed "
                   "as Helm's --set does (true/false, null, integers, else a string); mappings and lists go in a "
                   "values file; applied after the files (repeatable)")
    p.add_argument("-o", "--output", metavar="DIR", help="write one file per object into DIR (kind-name.yaml) "
                   "instead of printing")
    p.add_argument("--dashboard", metavar="FILE", help="the Grafana dashboard JSON to wrap in a ConfigMap "
                   "(default: deploy/grafana/wasinfer-dashboard.json of a source checkout, when there)")
    p.add_argument("--rules", metavar="FILE", help="the Prometheus rule file to wrap in a PrometheusRule "
                   "(default: deploy/prometheus/wasinfer-rules.yaml of a source checkout, when there)")
    p.add_argument("--json", action="store_true", help="JSON instead of YAML: a v1 List on stdout, or one .json "
                   "file per object with --output (and the list of files written on stdout)")
    p.add_argument("--kube-version", metavar="X.Y", help="the cluster's Kubernetes version (1.20 or later; as "
                   "`kubectl version` prints it, v1.20.2 works too): API versions and fields it serves, as the chart "
                   "does through .Capabilities.KubeVersion - autoscaling/v2beta2 before 1.23, policy/v1beta1 on "
                   "1.20, and before 1.30 the server's --drain-delay-s instead of the preStop sleep action "
                   "(default: 1.30, which serves the newest form of each)")
    kserve = p.add_argument_group(
        "KServe", "wasinfer as a KServe serving runtime (docs/deploy.md \"KServe\"): instead of the objects above, "
        "a ServingRuntime named wasinfer that runs `wasinfer serve` on KServe's /mnt/models for InferenceServices "
        "of model format wasm (auto-selected), onnx or tflite (by runtime: wasinfer), Open Inference Protocol v2 "
        "over REST (8080) and gRPC (8081); and a ClusterStorageContainer that fetches storageUri oci://... with "
        "`wasinfer pull`. The image, resources, security context, pull secrets and scheduling come from the values")
    kserve.add_argument("--kserve-runtime", action="store_true", help="render the KServe objects")
    kserve.add_argument("--cluster", action="store_true", help="a ClusterServingRuntime (for every namespace) "
                        "instead of a ServingRuntime in the namespace it is applied to")
    kserve.add_argument("--inference-service", action="append", metavar="NAME=STORAGE_URI",
                        help="also an InferenceService NAME of model format wasm on the runtime, e.g. "
                        "digits=oci://registry.example.com/models/digits:1.0.0 (repeatable)")
    p.set_defaults(func=cmd_render)

    p = dsub.add_parser(
        "audit", help="check manifests against the Gatekeeper constraints in deploy/gatekeeper, here",
        description="Evaluate the ConstraintTemplates' Rego (in-process, as Gatekeeper would at admission) on the "
        "objects `deploy render` makes from the given values, or on YAML files: runtime class, resource requests "
        "and limits, allowed registries for images and models, models pinned by digest or signed. Prints each "
        "violation; exit 1 when there is any, 2 for bad input.")
    p.add_argument("files", nargs="*", metavar="FILE|DIR", help="multi-document YAML (or JSON) to check instead of "
                   "rendering; a directory: its .yaml, .yml and .json files, as `deploy render -o DIR` writes them")
    p.add_argument("-f", "--values", action="append", metavar="FILE", help="values files, as for render")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="one value, as for render")
    p.add_argument("--policy", metavar="DIR", help="a directory with templates/ and constraints/ (default: "
                   "deploy/gatekeeper of a source checkout)")
    p.add_argument("--namespace-label", action="append", metavar="KEY=VALUE",
                   help="a label of the objects' namespace, which constraints select on (default: "
                   "wasinfer.io/inference=enabled, the label the shipped constraints match)")
    p.add_argument("--json", action="store_true", help="the violations as a JSON list")
    p.set_defaults(func=cmd_audit, dashboard=None, rules=None)
