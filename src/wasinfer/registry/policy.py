"""Rego policies on model versions, evaluated in-process (rego-cpp through PyPI `regopy`; no OPA server).

A policy directory holds Rego v1 modules (`*.rego`) and, optionally, data documents (`*.json`,
merged into `data`; the default set keeps its thresholds in `settings.json` so they can be
changed without editing Rego). Each module is one policy:

    package wasinfer.<name>          # its own package, under wasinfer.
    import rego.v1
    deny contains msg if { ... }     # a set of messages; any message denies the model
    warn contains msg if { ... }     # optional; reported, never denies

The input document is `policy_input(artifact, verdict)` (fields listed there). Policies run on
push and on load; `wasinfer policy test POLICY_DIR MODEL` prints each decision.

Evaluation fails closed: a module that does not parse, that calls an unknown function, or whose
built-in call raises (strict built-in errors are on) is a `PolicyError` naming the file, never a
silently skipped rule — a policy that quietly stopped denying would be worse than none.

The shipped default set (`DEFAULT_POLICY_DIR`): size (deny over 100 MiB, module + source),
accuracy (deny below 0.5 when an accuracy is recorded), signature (deny unsigned when
`require_signed` is true; warn otherwise), format (deny formats other than wasm and sources other
than onnx/tflite). $WASINFER_POLICY_DIR picks another directory; `off` disables policy.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import regopy
from regopy import Interpreter, LogLevel, RegoError

from wasinfer.registry.artifact import ANNOTATIONS, ModelArtifact
from wasinfer.registry.trust import Verdict

DEFAULT_POLICY_DIR = Path(__file__).parent / "policies"
ENV_POLICY_DIR = "WASINFER_POLICY_DIR"
_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([A-Za-z_][A-Za-z0-9_.]*)", re.MULTILINE)
_ERROR_AT = re.compile(r"\(error (\d+):")  # then <length-prefixed file name>|<byte offset>|<length>
_ERROR_MSG = re.compile(r"\(errormsg (\d+):")  # then the length-prefixed message


class PolicyError(Exception):
    """A policy set that cannot be evaluated (bad file, bad input); the message names the file."""


@dataclass(frozen=True)
class Decision:
    """One rule of one policy file: `deny` (allowed when it produced no message) or `warn` (always allowed)."""

    policy: str  # the file name, e.g. size.rego
    rule: str  # deny | warn
    allowed: bool
    messages: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "rule": self.rule, "allowed": self.allowed, "messages": list(self.messages)}


def _ops(artifact: ModelArtifact, stats: dict[str, Any]) -> list[str]:
    """Op types: from the metadata when it records them, else from the ONNX source when it travels along.

    The module's metadata records counts, not op types (as of schema 1), so without a source
    layer the list is empty — policies on ops must treat [] as "unknown", not as "none".
    """
    ops = stats.get("ops")
    if isinstance(ops, list):
        return sorted({str(op) for op in ops})
    if artifact.source is not None and artifact.source_format == "onnx":
        try:
            import onnx

            model = onnx.load_from_string(artifact.source)
        except Exception:  # a source that does not parse yields no ops; its digest still identifies it
            return []
        names = {node.op_type for node in model.graph.node}
        for function in model.functions:
            names.update(node.op_type for node in function.node)
        return sorted(names)
    return []


def policy_input(artifact: ModelArtifact, verdict: Verdict | None = None) -> dict[str, Any]:
    """The input document policies see.

    name, version, format ("wasm"), size_bytes (module + source), wasm_bytes, source_bytes,
    source_format (or null), source_digest ("sha256:...", from the annotation or the metadata),
    ops (op types; [] when unknown), accuracy (float or null), signed (a trusted key verified the
    signature), signer (that key's id, or null), quantisation (compile option, else "none"),
    max_batch, producer, inputs/outputs ([{name, dtype, shape}]), annotations (all of them).
    """
    metadata = artifact.metadata
    accuracy_text = artifact.annotations.get(ANNOTATIONS["accuracy"])
    accuracy: float | None = None
    if accuracy_text is not None:
        try:
            accuracy = float(accuracy_text)
        except ValueError:
            # refuse rather than pass null: a junk value must not slip past an accuracy floor
            raise PolicyError(f"the {ANNOTATIONS['accuracy']} annotation {accuracy_text!r} is not a number") from None
    source_digest = artifact.annotations.get(ANNOTATIONS["source_digest"])
    if source_digest is None and metadata.source_sha256:
        source_digest = f"sha256:{metadata.source_sha256}"
    options = metadata.compile_options or {}
    quantisation = options.get("quantisation", options.get("quantization")) or "none"
    signed = verdict is not None and verdict.verified
    source_bytes = len(artifact.source) if artifact.source is not None else 0
    return {
        "name": artifact.name or metadata.name,
        "version": artifact.version,
        "format": "wasm",
        "size_bytes": len(artifact.wasm) + source_bytes,
        "wasm_bytes": len(artifact.wasm),
        "source_bytes": source_bytes,
        "source_format": artifact.source_format if artifact.source is not None else (metadata.source_format or None),
        "source_digest": source_digest,
        "ops": _ops(artifact, metadata.stats or {}),
        "accuracy": accuracy,
        "signed": signed,
        "signer": verdict.signer if signed and verdict is not None else None,
        "quantisation": str(quantisation),
        "max_batch": metadata.max_batch,
        "producer": metadata.producer,
        "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in metadata.inputs],
        "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in metadata.outputs],
        "annotations": dict(artifact.annotations),
    }


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def rego_message(error: str, source: str) -> str:
    """rego-cpp reports errors as an S-expression; keep the message and turn the offset into line:column."""
    messages = [error[m.end():m.end() + int(m[1])] for m in _ERROR_MSG.finditer(error)]
    text = "; ".join(dict.fromkeys(m.strip() for m in messages)) or error.strip().splitlines()[0]
    at = _ERROR_AT.search(error)
    where = re.match(r"\|(\d+)\|", error[at.end() + int(at[1]):]) if at else None
    if where:
        offset = int(where[1])
        line = source.count("\n", 0, offset) + 1
        column = offset - (source.rfind("\n", 0, offset) + 1) + 1
        text += f" (line {line}, column {column})"
    return text


def query_raw(interpreter: Interpreter, query: str) -> tuple[bool, str]:
    """(ok, text) of a query. regopy's own `query` raises an unhelpful JSONDecodeError when the result
    is an error, so this reads the raw output through the same C API it uses."""
    from regopy.rego_shared import rego_free_output, rego_output_ok, rego_output_string, rego_query

    impl = rego_query(interpreter._impl, query)
    try:
        return bool(rego_output_ok(impl)), str(rego_output_string(impl))
    finally:
        rego_free_output(impl)


def load_policy_files(policy_dir: Path) -> list[tuple[Path, str, str]]:
    """(path, package, source) of each policy file, checked for the layout evaluation relies on."""
    if not policy_dir.is_dir():
        raise PolicyError(f"{policy_dir}: not a directory of .rego policies")
    files = sorted(policy_dir.glob("*.rego"))
    if not files:
        raise PolicyError(f"{policy_dir}: no .rego policy files")
    out: list[tuple[Path, str, str]] = []
    seen: dict[str, Path] = {}
    for path in files:
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{path.name}: cannot read it ({exc})") from None
        match = _PACKAGE.search(source)
        if match is None:
            raise PolicyError(f"{path.name}: no package declaration (expected `package wasinfer.<name>`)")
        package = match[1]
        if not package.startswith("wasinfer.") or package == "wasinfer.settings":
            raise PolicyError(f"{path.name}: package {package} must be wasinfer.<name> "
                              "(wasinfer.settings is reserved for data)")
        if package in seen:
            raise PolicyError(f"{path.name}: package {package} is also declared by {seen[package].name}; "
                              "each policy file needs a package of its own")
        seen[package] = path
        out.append((path, package, source))
    return out


def load_policy_data(policy_dir: Path) -> dict[str, Any]:
    """The `*.json` data documents of a policy directory, merged (later files win on conflicts)."""
    data: dict[str, Any] = {}
    for path in sorted(policy_dir.glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PolicyError(f"{path.name}: not a JSON data document ({exc})") from None
        if not isinstance(document, dict):
            raise PolicyError(f"{path.name}: a data document must be a JSON object")
        _merge(data, document)
    return data


def evaluate(policy_dir: Path, input: dict[str, Any], data: dict[str, Any] | None = None) -> list[Decision]:
    """Every policy file's `deny` (and `warn`, when it says something) on `input`, in file-name order.

    `data` is merged over the directory's own *.json documents (so a caller can override a
    threshold without copying the directory).
    """
    policies = load_policy_files(policy_dir)
    merged = _merge(load_policy_data(policy_dir), data or {})
    interpreter = Interpreter()
    interpreter.log_level = LogLevel.NONE  # rego-cpp otherwise prints its errors to stdout, into --json output
    interpreter.strict_built_in_errors = True  # fail closed: a built-in error is an error, not an undefined rule
    try:
        if merged:
            interpreter.add_data(merged)
        interpreter.set_input(input)
    except (RegoError, TypeError, ValueError) as exc:
        raise PolicyError(f"the policy input or data cannot be passed to Rego: {exc}") from None
    for path, _, source in policies:
        try:
            interpreter.add_module(path.name, source)
        except RegoError as exc:
            raise PolicyError(f"{path.name}: {rego_message(str(exc), source)}") from None

    decisions: list[Decision] = []
    for path, package, source in policies:
        ok, text = query_raw(interpreter, f"data.{package}")
        if not ok:
            raise PolicyError(f"{path.name}: evaluation failed (a built-in function raised an error, e.g. wrong "
                              "argument types; rego-cpp gives no detail)")
        if text.lstrip().startswith("("):
            raise PolicyError(f"{path.name}: {rego_message(text, source)}")
        if text.strip() == "undefined":
            raise PolicyError(f"{path.name}: package {package} defines neither deny nor warn")
        try:
            document = json.loads(text)["expressions"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise PolicyError(f"{path.name}: unexpected result from Rego: {text[:200]}") from None
        if not isinstance(document, dict) or ("deny" not in document and "warn" not in document):
            raise PolicyError(f"{path.name}: package {package} defines neither deny nor warn")
        for rule in ("deny", "warn"):
            if rule not in document:
                continue
            value = document[rule]
            if not isinstance(value, list):
                raise PolicyError(f"{path.name}: {rule} must be a set of messages "
                                  f"(Rego v1: `{rule} contains msg if {{ ... }}`), not {json.dumps(value)[:80]}")
            messages = [m if isinstance(m, str) else json.dumps(m, sort_keys=True) for m in value]
            if rule == "deny":
                decisions.append(Decision(path.name, "deny", not messages, messages))
            elif messages:
                decisions.append(Decision(path.name, "warn", True, messages))
    return decisions


def allowed(decisions: list[Decision]) -> bool:
    return all(d.allowed for d in decisions)


def denials(decisions: list[Decision]) -> list[str]:
    """`file: message` for each denial: what a refused push or load reports."""
    return [f"{d.policy}: {m}" for d in decisions if not d.allowed for m in d.messages]


def check(artifact: ModelArtifact, verdict: Verdict | None, policy_dir: Path,
          data: dict[str, Any] | None = None) -> list[Decision]:
    """Evaluate a policy directory on an artifact: the push and load path (`policy_dir_from_env()` picks it)."""
    return evaluate(policy_dir, policy_input(artifact, verdict), data)


def policy_dir_from_env() -> Path | None:
    """$WASINFER_POLICY_DIR: a directory, `off` (no policy), or unset (the shipped default set)."""
    value = os.environ.get(ENV_POLICY_DIR, "").strip()
    if value.lower() == "off":
        return None
    return Path(value).expanduser() if value else DEFAULT_POLICY_DIR


REGOPY_VERSION = regopy.__version__
