"""The Grafana dashboard of deploy/grafana as data: its queries, and what makes it importable.

A dashboard is only as good as its queries, and Grafana reports a broken one as an empty panel,
silently. Listing every query with the template variables filled in lets the tests run each one
against a real Prometheus scraping a real server, and the structural checks catch what Grafana
would refuse or render wrong on import (duplicate panel ids, panels with no place on the grid,
queries bound to a data source other than the dashboard's variable).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Grafana 9.0's model; older importers migrate panels in ways the checks here do not follow.
MIN_SCHEMA_VERSION = 36
DATASOURCE_VARIABLE = "datasource"
DATASOURCE_REF = "${" + DATASOURCE_VARIABLE + "}"
# $name, ${name}, ${name:format} and the deprecated [[name]]: the forms Grafana expands in a query.
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


class DashboardError(ValueError):
    """A dashboard file that is not a Grafana dashboard model (unreadable, or not an object)."""


@dataclass(frozen=True)
class PanelQuery:
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str


def load_dashboard(path: Path) -> dict[str, Any]:
    try:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DashboardError(f"{path}: {exc}") from None
    if not isinstance(dashboard, dict):
        raise DashboardError(f"{path}: a dashboard is a JSON object, not {type(dashboard).__name__}")
    return dashboard


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, the ones inside collapsed rows included (Grafana nests those in the row)."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []) if isinstance(panel, dict) else [])
    return found


def queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    return [PanelQuery(panel["id"], panel.get("title", ""), target.get("refId", ""), target["expr"])
            for panel in panels(dashboard) if panel.get("type") != "row"
            for target in panel.get("targets", []) if "expr" in target]


def expand(expr: str, values: dict[str, str]) -> str:
    """The query as Grafana sends it, with template variables replaced by `values`.

    Grafana's own built-ins ($__rate_interval, $__interval, ...) are variables like any other
    here: pass them in `values`. A variable with no value is an error, not left in place, so a
    query that would reach Prometheus as `$modle` is caught. `$1`, `$2`... are label_replace's
    capture references, not variables (no variable name starts with a digit): they stay.
    """

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[3]
        if name.isdigit():
            return match[0]
        if name not in values:
            raise KeyError(f"no value for template variable {name!r} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(value, expr)


def variable_names(dashboard: dict[str, Any]) -> set[str]:
    return {variable["name"] for variable in dashboard.get("templating", {}).get("list", [])}


def problems(dashboard: dict[str, Any]) -> list[str]:
    """What would make Grafana refuse the dashboard or show wrong or empty panels; [] when none."""
    found: list[str] = []
    if not isinstance(dashboard.get("schemaVersion"), int) or dashboard["schemaVersion"] < MIN_SCHEMA_VERSION:
        found.append(f"schemaVersion {dashboard.get('schemaVersion')!r} is not an integer >= {MIN_SCHEMA_VERSION}")
    for key in ("uid", "title"):
        if not isinstance(dashboard.get(key), str) or not dashboard[key]:
            found.append(f"the dashboard has no {key}")
    variables = dashboard.get("templating", {}).get("list", [])
    source = [v for v in variables if v.get("name") == DATASOURCE_VARIABLE]
    if not source or source[0].get("type") != "datasource" or source[0].get("query") != "prometheus":
        found.append(f"no '{DATASOURCE_VARIABLE}' variable of type datasource for Prometheus")
    known = variable_names(dashboard)
    for variable in variables:
        if variable.get("type") == "query" and variable.get("datasource", {}).get("uid") != DATASOURCE_REF:
            found.append(f"variable {variable.get('name')!r} does not query {DATASOURCE_REF}")
    seen: set[int] = set()
    for panel in panels(dashboard):
        name = f"panel {panel.get('id')!r} ({panel.get('title', '')!r})"
        if not isinstance(panel.get("id"), int) or panel["id"] in seen:
            found.append(f"{name}: its id is missing, not an integer, or used twice")
        else:
            seen.add(panel["id"])
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")) or grid["w"] < 1 or grid["h"] < 1 \
                or grid["x"] < 0 or grid["x"] + grid["w"] > 24:
            found.append(f"{name}: gridPos {grid!r} is not a place on the 24-column grid")
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        if not targets:
            found.append(f"{name}: no queries")
        if panel.get("datasource", {}).get("uid") != DATASOURCE_REF:
            found.append(f"{name}: its datasource is not {DATASOURCE_REF}")
        refs = [target.get("refId") for target in targets]
        if len(set(refs)) != len(refs) or not all(refs):
            found.append(f"{name}: refIds {refs!r} are missing or repeated")
        for target in targets:
            if not isinstance(target.get("expr"), str) or not target["expr"].strip():
                found.append(f"{name} {target.get('refId')}: no expr")
                continue
            if target.get("datasource", {}).get("uid") != DATASOURCE_REF:
                found.append(f"{name} {target.get('refId')}: its datasource is not {DATASOURCE_REF}")
            for match in _VARIABLE.finditer(target["expr"]):
                variable = match[1] or match[2] or match[3]
                if variable not in known and not variable.startswith("__") and not variable.isdigit():
                    found.append(f"{name} {target.get('refId')}: unknown template variable ${variable}")
    return found
