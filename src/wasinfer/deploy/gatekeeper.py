"""Gatekeeper ConstraintTemplates and Constraints for inference workloads, evaluated in-process.

The YAML under deploy/gatekeeper/ is what a cluster applies; this module reads the same files and
runs each template's Rego with rego-cpp (`regopy`, the engine wasinfer's own model policies use)
on the input document Gatekeeper builds for an admission review:

    input.review.object      the object as submitted
    input.review.kind        {group, version, kind} (from its apiVersion and kind)
    input.review.name / namespace / operation
    input.parameters         the Constraint's spec.parameters ({} when it has none)

and reads the template's `violation` rule (a set of {"msg": ...}), as Gatekeeper does. So a test
here exercises the Rego a cluster will run, not a Python re-implementation of it. The templates
use Rego v1 (Gatekeeper >= 3.19, `code[].source.version: "v1"`), which is also rego-cpp's syntax.

`matches` applies a Constraint's `spec.match` (kinds, namespaces, excludedNamespaces,
namespaceSelector, labelSelector, scope) so that `audit` answers "which constraints would deny
this object" for a set of manifests, e.g. the output of `wasinfer deploy render`.

What this does not do: Gatekeeper's mutation, `data.inventory` (no template here needs synced
objects) and enforcementAction (every violation is reported; the cluster decides deny or warn).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from regopy import Interpreter, LogLevel, RegoError

from wasinfer.registry.policy import query_raw, rego_message

TARGET = "admission.k8s.gatekeeper.sh"
TEMPLATE_API = "templates.gatekeeper.sh/v1"
CONSTRAINT_API = "constraints.gatekeeper.sh/v1beta1"
# deploy/gatekeeper in a source checkout (the manifests are not part of the wheel)
DEFAULT_DIR = Path(__file__).resolve().parents[3] / "deploy" / "gatekeeper"


class GatekeeperError(Exception):
    """A template or constraint that Gatekeeper would refuse, or Rego that fails; the message names the file."""


@dataclass(frozen=True)
class Template:
    """One ConstraintTemplate: the Constraint kind it creates, its Rego, and its parameter schema."""

    name: str
    kind: str
    rego: str
    schema: dict[str, Any]
    path: Path | None = None

    @property
    def package(self) -> str:
        return self.kind.lower()


@dataclass(frozen=True)
class Constraint:
    """One Constraint: which template (kind), its name, what it matches and its parameters."""

    kind: str
    name: str
    match: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    enforcement_action: str = "deny"
    path: Path | None = None


@dataclass(frozen=True)
class Violation:
    """A message from one constraint on one object; str() is what Gatekeeper prints (`[name] msg`).

    The templates' messages start with the object's kind and name, so the object is not repeated."""

    constraint: str
    kind: str
    object: str  # Kind/namespace/name
    message: str

    def __str__(self) -> str:
        return f"[{self.constraint}] {self.message}"


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise GatekeeperError(f"{path}: cannot read it as YAML ({exc})") from None
    if not isinstance(document, dict):
        raise GatekeeperError(f"{path}: not a YAML mapping")
    return document


def _rego_of(target: Mapping[str, Any], where: str) -> str:
    """The Rego of a target: `code[engine=Rego].source.rego` (v1 syntax) — the only form accepted here,
    because rego-cpp speaks Rego v1 and a v0 `rego:` field would be read differently by the two engines."""
    for code in target.get("code") or []:
        if isinstance(code, dict) and code.get("engine") == "Rego":
            source = code.get("source")
            if not isinstance(source, dict) or not isinstance(source.get("rego"), str):
                raise GatekeeperError(f"{where}: code[engine=Rego] has no source.rego")
            if str(source.get("version")) != "v1":
                raise GatekeeperError(f"{where}: code[engine=Rego].source.version must be \"v1\" "
                                      "(Rego v1, what rego-cpp evaluates)")
            return str(source["rego"])
    if "rego" in target:
        raise GatekeeperError(f"{where}: a v0 `rego:` field; write Rego v1 under code[engine=Rego].source "
                              "with version \"v1\"")
    raise GatekeeperError(f"{where}: no code[engine=Rego] entry")


def template_from_dict(document: Mapping[str, Any], path: Path | None = None) -> Template:
    """Check the structure Gatekeeper requires of a ConstraintTemplate and extract its parts."""
    where = str(path or "ConstraintTemplate")
    if document.get("apiVersion") != TEMPLATE_API or document.get("kind") != "ConstraintTemplate":
        raise GatekeeperError(f"{where}: expected apiVersion {TEMPLATE_API}, kind ConstraintTemplate")
    name = str((document.get("metadata") or {}).get("name", ""))
    spec = document.get("spec") or {}
    crd = ((spec.get("crd") or {}).get("spec")) or {}
    kind = str((crd.get("names") or {}).get("kind", ""))
    if not kind:
        raise GatekeeperError(f"{where}: spec.crd.spec.names.kind is missing")
    if name != kind.lower():
        raise GatekeeperError(f"{where}: metadata.name {name!r} must be the kind lowercased ({kind.lower()!r})")
    schema = ((crd.get("validation") or {}).get("openAPIV3Schema")) or {}
    if not isinstance(schema, dict):
        raise GatekeeperError(f"{where}: spec.crd.spec.validation.openAPIV3Schema must be a mapping")
    targets = spec.get("targets") or []
    if len(targets) != 1 or not isinstance(targets[0], dict) or targets[0].get("target") != TARGET:
        raise GatekeeperError(f"{where}: spec.targets must be one target, {TARGET}")
    rego = _rego_of(targets[0], where)
    first = next((line.split() for line in rego.splitlines() if line.strip().startswith("package ")), None)
    if first is None or len(first) < 2 or first[1] != kind.lower():
        raise GatekeeperError(f"{where}: the Rego package must be {kind.lower()} (the kind lowercased)")
    return Template(name=name, kind=kind, rego=rego, schema=schema, path=path)


def load_template(path: Path) -> Template:
    return template_from_dict(_load_yaml(path), path)


def constraint_from_dict(document: Mapping[str, Any], path: Path | None = None) -> Constraint:
    where = str(path or "Constraint")
    if document.get("apiVersion") != CONSTRAINT_API:
        raise GatekeeperError(f"{where}: expected apiVersion {CONSTRAINT_API}")
    name = str((document.get("metadata") or {}).get("name", ""))
    if not name:
        raise GatekeeperError(f"{where}: metadata.name is missing")
    spec = document.get("spec") or {}
    parameters = spec.get("parameters") or {}
    match = spec.get("match") or {}
    if not isinstance(parameters, dict) or not isinstance(match, dict):
        raise GatekeeperError(f"{where}: spec.parameters and spec.match must be mappings")
    return Constraint(kind=str(document.get("kind", "")), name=name, match=match, parameters=parameters,
                      enforcement_action=str(spec.get("enforcementAction", "deny")), path=path)


def load_constraint(path: Path) -> Constraint:
    return constraint_from_dict(_load_yaml(path), path)


def load_templates(directory: Path = DEFAULT_DIR / "templates") -> dict[str, Template]:
    """Every `*.yaml` template in a directory, by kind."""
    out: dict[str, Template] = {}
    for path in sorted(directory.glob("*.yaml")):
        template = load_template(path)
        if template.kind in out:
            raise GatekeeperError(f"{path}: kind {template.kind} is also defined by {out[template.kind].path}")
        out[template.kind] = template
    if not out:
        raise GatekeeperError(f"{directory}: no ConstraintTemplate files")
    return out


def load_constraints(directory: Path = DEFAULT_DIR / "constraints") -> list[Constraint]:
    return [load_constraint(path) for path in sorted(directory.glob("*.yaml"))]


def review(obj: Mapping[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    """`input.review` as Gatekeeper's admission target builds it for an object."""
    api_version = str(obj.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    metadata = obj.get("metadata") or {}
    return {
        "kind": {"group": group, "version": version, "kind": str(obj.get("kind", ""))},
        "name": metadata.get("name", ""),
        "namespace": metadata.get("namespace", ""),
        "operation": operation,
        "object": dict(obj),
    }


def evaluate(template: Template, obj: Mapping[str, Any], parameters: Mapping[str, Any] | None = None,
             operation: str = "CREATE") -> list[str]:
    """The sorted messages of the template's `violation` set on one object ([] = admitted)."""
    where = str(template.path or template.kind)
    interpreter = Interpreter()
    interpreter.log_level = LogLevel.NONE
    interpreter.strict_built_in_errors = True  # fail closed, as wasinfer's model policies do
    try:
        interpreter.set_input({"review": review(obj, operation), "parameters": dict(parameters or {})})
        interpreter.add_module(f"{template.package}.rego", template.rego)
    except RegoError as exc:
        raise GatekeeperError(f"{where}: {rego_message(str(exc), template.rego)}") from None
    except (TypeError, ValueError) as exc:
        raise GatekeeperError(f"{where}: the object or parameters cannot be passed to Rego: {exc}") from None
    ok, text = query_raw(interpreter, f"data.{template.package}.violation")
    if not ok:
        raise GatekeeperError(f"{where}: evaluation failed (a built-in function raised an error)")
    if text.lstrip().startswith("("):
        raise GatekeeperError(f"{where}: {rego_message(text, template.rego)}")
    if text.strip() == "undefined":
        return []
    try:
        value = json.loads(text)["expressions"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        raise GatekeeperError(f"{where}: unexpected result from Rego: {text[:200]}") from None
    if not isinstance(value, list) or not all(isinstance(v, dict) and isinstance(v.get("msg"), str) for v in value):
        raise GatekeeperError(f"{where}: violation must be a set of {{\"msg\": string}}, got {text[:200]}")
    return sorted(v["msg"] for v in value)


def _selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise GatekeeperError(f"label selector operator {operator!r} is not one of In, NotIn, Exists, "
                                  "DoesNotExist")
    return True


def matches(constraint: Constraint, obj: Mapping[str, Any],
            namespace_labels: Mapping[str, str] | None = None) -> bool:
    """Whether a Constraint's spec.match selects an object (in a namespace with these labels)."""
    match = constraint.match
    kind = review(obj)["kind"]
    kinds = match.get("kinds")
    if kinds and not any(
        (kind["group"] in (entry.get("apiGroups") or [""]) or "*" in (entry.get("apiGroups") or []))
        and (kind["kind"] in (entry.get("kinds") or []) or "*" in (entry.get("kinds") or []))
        for entry in kinds
    ):
        return False
    metadata = obj.get("metadata") or {}
    namespace = str(metadata.get("namespace", ""))
    scope = match.get("scope", "*")
    if (scope == "Namespaced" and not namespace) or (scope == "Cluster" and namespace):
        return False
    if "namespaces" in match and namespace not in match["namespaces"]:
        return False
    if namespace in (match.get("excludedNamespaces") or []):
        return False
    if "namespaceSelector" in match and not _selector_matches(match["namespaceSelector"], namespace_labels or {}):
        return False
    return not ("labelSelector" in match and not _selector_matches(match["labelSelector"],
                                                                   metadata.get("labels") or {}))


def audit(objects: Iterable[Mapping[str, Any]], templates: Mapping[str, Template] | None = None,
          constraints: Iterable[Constraint] | None = None,
          namespace_labels: Mapping[str, str] | None = None) -> list[Violation]:
    """Every violation of every matching constraint on a set of objects (the shipped set by default)."""
    templates = load_templates() if templates is None else templates
    constraints = load_constraints() if constraints is None else list(constraints)
    objects = list(objects)
    out: list[Violation] = []
    for constraint in constraints:
        template = templates.get(constraint.kind)
        if template is None:
            raise GatekeeperError(f"{constraint.path or constraint.name}: no ConstraintTemplate for kind "
                                  f"{constraint.kind}")
        for obj in objects:
            if not matches(constraint, obj, namespace_labels):
                continue
            metadata = obj.get("metadata") or {}
            name = "/".join(p for p in (str(metadata.get("namespace", "")), str(metadata.get("name", ""))) if p)
            for message in evaluate(template, obj, constraint.parameters):
                out.append(Violation(constraint.name, constraint.kind, f"{obj.get('kind')}/{name}", message))
    return out
