"""A small subset of Go's text/template with Helm's functions: just what deploy/helm/wasinfer uses.

So the chart's templates are rendered and checked on every machine, Helm or not: actions with
`{{-`/`-}}` trimming, comments, if/else, with, range, define/include, pipelines, field chains on
`.` and `$`, and the functions quote, default, toYaml, toJson, indent, nindent, dict, and, or,
not, eq, ne, semverCompare (one comparison, as the chart's ">=1.23-0"), plus .Files.Get and
.Capabilities.KubeVersion. Anything else raises TemplateError, so a chart that outgrows this
subset fails loudly here (and the real-Helm test still covers it where helm is installed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class TemplateError(ValueError):
    pass


_ACTION = re.compile(r"\{\{(- )?(.*?)( -)?\}\}", re.DOTALL)
_SEMVER = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?")
_CONSTRAINT = re.compile(r"(>=|<=|>|<|=|!=)?\s*(.+)")
_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\(|\)|\||\$[A-Za-z0-9_.]*|\.[A-Za-z0-9_.]*|-?\d+|[A-Za-z_][A-Za-z0-9_]*)')


@dataclass
class _Node:
    kind: str  # text, action, if, with, range, define
    text: str = ""
    body: list[_Node] = field(default_factory=list)
    orelse: list[_Node] = field(default_factory=list)


def _lex(source: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", s) pieces, with the trim markers already applied to the text."""
    pieces: list[tuple[str, str]] = []
    position, trim_next = 0, False
    for match in _ACTION.finditer(source):
        text = source[position:match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        pieces.append(("text", text))
        body = match.group(2).strip()
        if not body.startswith("/*"):
            pieces.append(("action", body))
        elif not body.endswith("*/"):
            raise TemplateError(f"unclosed comment: {body[:40]!r}")
        trim_next, position = bool(match.group(3)), match.end()
    pieces.append(("text", source[position:].lstrip() if trim_next else source[position:]))
    return pieces


def _parse(pieces: list[tuple[str, str]]) -> list[_Node]:
    root: list[_Node] = []
    stack: list[tuple[_Node | None, list[_Node]]] = [(None, root)]
    for kind, text in pieces:
        block, out = stack[-1]
        if kind == "text":
            if text:
                out.append(_Node("text", text))
            continue
        word, _, rest = text.partition(" ")
        if word in ("if", "with", "range", "define"):
            node = _Node(word, rest.strip())
            out.append(node)
            stack.append((node, node.body))
        elif word == "else":
            if block is None or block.kind not in ("if", "with") or rest.strip():
                raise TemplateError(f"unsupported else: {text!r}")
            stack[-1] = (block, block.orelse)
        elif word == "end":
            if block is None:
                raise TemplateError("end without a block")
            stack.pop()
        else:
            out.append(_Node("action", text))
    if len(stack) != 1:
        raise TemplateError("a block is not closed with {{ end }}")
    return root


def _go_string(value: Any) -> str:
    """How Go's fmt prints a value that Helm read from YAML (numbers are float64 there)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        raise TemplateError(f"cannot print a {type(value).__name__} (use toYaml)")
    return str(value)


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, (dict, list)) and not value)


def _indent(width: int, text: Any) -> str:
    pad = " " * width
    return pad + str(text).replace("\n", "\n" + pad)


def _to_yaml(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return yaml.safe_dump(value, default_flow_style=False, sort_keys=True, allow_unicode=True).rstrip("\n")
    return _go_string(value)


def _semver(text: str) -> tuple[int, int, int]:
    """major.minor.patch of a version as Kubernetes reports it (v1.29.3-k3s1); pre-releases compare as releases."""
    match = _SEMVER.fullmatch(text.strip())
    if match is None:
        raise TemplateError(f"semverCompare: {text!r} is not a version")
    return int(match[1]), int(match[2] or 0), int(match[3] or 0)


def _semver_compare(constraint: str, version: str) -> bool:
    """Sprig's semverCompare for one comparison (no ranges, ||, ~ or ^: they raise)."""
    match = _CONSTRAINT.fullmatch(constraint.strip())
    if match is None or any(c in constraint for c in "|,~^*xX "):
        raise TemplateError(f"semverCompare constraint {constraint!r} is outside this subset")
    left, right = _semver(version), _semver(match[2])
    return {">=": left >= right, "<=": left <= right, ">": left > right, "<": left < right, "=": left == right,
            "!=": left != right, None: left == right}[match[1]]


class Files:
    """The chart's .Files: Get returns a file's text, or "" when it is not there (as Helm does)."""

    def __init__(self, chart: Path):
        self.chart = chart

    def Get(self, name: str) -> str:  # Helm's name
        path = self.chart / name
        return path.read_text() if path.is_file() else ""


class Chart:
    """A chart directory's templates, rendered as `helm template` would (no hooks, no subcharts)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.meta = yaml.safe_load((directory / "Chart.yaml").read_text())
        self.templates = {path.name: _parse(_lex(path.read_text()))
                          for path in sorted((directory / "templates").iterdir()) if path.suffix in (".yaml", ".tpl")}
        self.defines: dict[str, list[_Node]] = {}
        for nodes in self.templates.values():
            for node in nodes:
                if node.kind == "define":
                    self.defines[json.loads(node.text)] = node.body

    def render(self, values: dict[str, Any], release: str = "wasinfer", kube_version: str = "v1.30.0"
               ) -> dict[str, str]:
        """Each template's output, by file name (the _ files only define); `kube_version` as `helm template
        --kube-version` sets .Capabilities.KubeVersion."""
        major, minor, _ = _semver(kube_version)
        capabilities = {"KubeVersion": {"Version": kube_version, "GitVersion": kube_version, "Major": str(major),
                                        "Minor": str(minor)}}
        root = {"Values": values, "Release": {"Name": release, "Namespace": "default", "Service": "Helm"},
                "Capabilities": capabilities,
                "Chart": {"Name": self.meta["name"], "Version": self.meta["version"],
                          "AppVersion": self.meta.get("appVersion", "")},
                "Files": Files(self.directory)}
        return {name: self._run(nodes, root, root) for name, nodes in self.templates.items()
                if not name.startswith("_")}

    # --- execution -------------------------------------------------------------------------------

    def _run(self, nodes: list[_Node], dot: Any, root: Any) -> str:
        out = []
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                out.append(_go_string(self._pipeline(node.text, dot, root)))
            elif node.kind == "if":
                branch = node.body if _truthy(self._pipeline(node.text, dot, root)) else node.orelse
                out.append(self._run(branch, dot, root))
            elif node.kind == "with":
                value = self._pipeline(node.text, dot, root)
                out.append(self._run(node.body, value, root) if _truthy(value) else self._run(node.orelse, dot, root))
            elif node.kind == "range":
                items = self._pipeline(node.text, dot, root) or []
                if not isinstance(items, list):
                    raise TemplateError(f"range over a {type(items).__name__} is outside this subset")
                out.extend(self._run(node.body, item, root) for item in items)
        return "".join(out)

    def _pipeline(self, text: str, dot: Any, root: Any) -> Any:
        tokens = self._tokens(text)
        value, position = self._parse_pipeline(tokens, 0, dot, root)
        if position != len(tokens):
            raise TemplateError(f"unexpected {tokens[position]!r} in {text!r}")
        return value

    @staticmethod
    def _tokens(text: str) -> list[str]:
        tokens, position = [], 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if match is None:
                raise TemplateError(f"cannot read {text[position:]!r}")
            tokens.append(match.group(1))
            position = match.end()
        return tokens

    def _parse_pipeline(self, tokens: list[str], position: int, dot: Any, root: Any) -> tuple[Any, int]:
        value, position, piped = None, position, False
        while True:
            args: list[Any] = []
            head = tokens[position] if position < len(tokens) else ")"
            function = self._function(head) if re.fullmatch(r"[A-Za-z_]\w*", head) and head not in (
                "true", "false", "nil") else None
            if function is not None:
                position += 1
            while position < len(tokens) and tokens[position] not in ("|", ")"):
                operand, position = self._operand(tokens, position, dot, root)
                args.append(operand)
            if piped:
                args.append(value)
            if function is not None:
                value = function(*args)
            elif len(args) >= 2 and callable(args[0]):
                value = args[0](*args[1:])
            elif len(args) == 1:
                value = args[0]
            else:
                raise TemplateError(f"cannot evaluate {tokens!r}")
            if position < len(tokens) and tokens[position] == "|":
                position, piped = position + 1, True
                continue
            return value, position

    def _operand(self, tokens: list[str], position: int, dot: Any, root: Any) -> tuple[Any, int]:
        token = tokens[position]
        if token == "(":
            value, position = self._parse_pipeline(tokens, position + 1, dot, root)
            if position >= len(tokens) or tokens[position] != ")":
                raise TemplateError("unbalanced parentheses")
            return value, position + 1
        if token.startswith('"'):
            return json.loads(token), position + 1
        if re.fullmatch(r"-?\d+", token):
            return int(token), position + 1
        if token in ("true", "false"):
            return token == "true", position + 1
        if token.startswith("$"):
            return self._fields(root, token[1:]), position + 1
        if token.startswith("."):
            return self._fields(dot, token), position + 1
        raise TemplateError(f"unsupported operand {token!r}")

    @staticmethod
    def _fields(value: Any, chain: str) -> Any:
        for name in filter(None, chain.split(".")):
            if isinstance(value, dict):
                value = value.get(name)
            elif value is not None and hasattr(value, name):
                value = getattr(value, name)
            else:
                return None
        return value

    def _function(self, name: str) -> Callable[..., Any] | None:
        def include(template: str, dot: Any) -> str:
            if template not in self.defines:
                raise TemplateError(f"no template {template!r}")
            return self._run(self.defines[template], dot, dot)  # in a define, $ is its argument

        def make_dict(*pairs: Any) -> dict[str, Any]:
            return {str(pairs[i]): pairs[i + 1] for i in range(0, len(pairs), 2)}

        def and_(*args: Any) -> Any:
            for arg in args:
                if not _truthy(arg):
                    return arg
            return args[-1]

        def or_(*args: Any) -> Any:
            for arg in args:
                if _truthy(arg):
                    return arg
            return args[-1]

        functions: dict[str, Callable[..., Any]] = {
            "quote": lambda *v: " ".join(json.dumps(_go_string(x)) for x in v if x is not None),
            "default": lambda fallback, value=None: value if _truthy(value) else fallback,
            "toYaml": _to_yaml,
            "toJson": lambda v: json.dumps(v, ensure_ascii=False),
            "indent": _indent,
            "nindent": lambda width, text: "\n" + _indent(width, text),
            "dict": make_dict, "include": include, "and": and_, "or": or_,
            "not": lambda v: not _truthy(v),
            "eq": lambda a, *b: any(a == x for x in b),
            "ne": lambda a, b: a != b,
            "semverCompare": _semver_compare,
        }
        if name not in functions:
            raise TemplateError(f"function {name!r} is outside this subset")
        return functions[name]


def render_chart(directory: Path, values: dict[str, Any], release: str = "wasinfer",
                 kube_version: str = "v1.30.0") -> list[dict[str, Any]]:
    """The chart's objects, parsed, in template-file order (empty documents dropped, as Helm does)."""
    objects: list[dict[str, Any]] = []
    for text in Chart(directory).render(values, release, kube_version).values():
        objects.extend(document for document in yaml.safe_load_all(text) if document)
    return objects
