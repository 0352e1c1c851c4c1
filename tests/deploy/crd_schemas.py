"""Minimal JSON schemas of the Prometheus Operator kinds the chart renders, written by hand.

No PyPI package ships these CRDs' OpenAPI schemas as data (kubernetes-validate carries core kinds
only; cloudcoil-models-prometheus-operator has models generated from the CRDs, but installs a
pytest plugin that breaks every test run without its own test extras). So this is the subset of
monitoring.coreos.com/v1 that wasinfer uses, strict (unknown fields are errors) with the CRDs'
own field names and types; the names were checked once against those generated models.
"""

from __future__ import annotations

from typing import Any

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                                          r"(([0-9]+)s)?(([0-9]+)ms)?)$"}
_METADATA = {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"},
    "namespace": {"type": "string"}, "labels": _STRING_MAP, "annotations": _STRING_MAP}}
_SELECTOR = {"type": "object", "additionalProperties": False, "properties": {
    "matchLabels": _STRING_MAP, "matchExpressions": {"type": "array", "items": {"type": "object"}}}}
_ENDPOINT_COMMON = {
    "port": {"type": "string"}, "path": {"type": "string"}, "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
    "interval": _DURATION, "scrapeTimeout": _DURATION, "honorLabels": {"type": "boolean"},
    "params": {"type": "object"}, "relabelings": {"type": "array"}, "metricRelabelings": {"type": "array"},
}


def _kind(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
            "properties": {"apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": kind},
                           "metadata": _METADATA, "spec": spec}}


SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": _kind("ServiceMonitor", {
        "type": "object", "required": ["selector"], "additionalProperties": False, "properties": {
            "selector": _SELECTOR, "jobLabel": {"type": "string"},
            "namespaceSelector": {"type": "object"},
            "endpoints": {"type": "array", "items": {"type": "object", "additionalProperties": False, "properties": {
                **_ENDPOINT_COMMON, "targetPort": {"type": ["integer", "string"]}}}}}}),
    "PodMonitor": _kind("PodMonitor", {
        "type": "object", "required": ["selector"], "additionalProperties": False, "properties": {
            "selector": _SELECTOR, "jobLabel": {"type": "string"}, "namespaceSelector": {"type": "object"},
            "podMetricsEndpoints": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "properties": {
                    **_ENDPOINT_COMMON, "portNumber": {"type": "integer"}}}}}}),
    "PrometheusRule": _kind("PrometheusRule", {
        "type": "object", "additionalProperties": False, "properties": {"groups": {"type": "array", "items": {
            "type": "object", "required": ["name"], "additionalProperties": False, "properties": {
                "name": {"type": "string", "minLength": 1}, "interval": _DURATION, "query_offset": _DURATION,
                "limit": {"type": "integer"}, "labels": _STRING_MAP,
                "partial_response_strategy": {"type": "string"},
                "rules": {"type": "array", "items": {
                    "type": "object", "required": ["expr"], "additionalProperties": False,
                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}], "properties": {
                        "alert": {"type": "string"}, "record": {"type": "string"},
                        "expr": {"type": ["integer", "string"]}, "for": _DURATION, "keep_firing_for": _DURATION,
                        "labels": _STRING_MAP, "annotations": _STRING_MAP}}}}}}}}),
}
