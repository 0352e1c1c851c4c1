"""The seed's ConfigMap keys as desired state: every form of the source, checks, and the in-place update watch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wasinfer.serving.desired import (
    DesiredState,
    DesiredStateError,
    DesiredStateWatcher,
    load_desired,
    parse_duration,
)

SEED_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: ai-model-config
data:
  model_path: "/models/ai-model.wasm"
  model_version: "v1.0.0"
  model_update_interval: "5m"
  cache_enabled: "true"
"""
SEED_STATE = DesiredState("/models/ai-model.wasm", "v1.0.0", 300.0, True)


def mount(directory: Path, data: dict[str, str], generation: str) -> None:
    """Lay a ConfigMap volume out as the kubelet does: a timestamped dir, `..data` → it, key → `..data/key`,
    and an update as an atomic rename of a new `..data` symlink over the old one."""
    target = directory / f"..{generation}"
    target.mkdir(parents=True)
    for key, value in data.items():
        (target / key).write_text(value)
    staging = directory / "..data_tmp"
    staging.symlink_to(target.name)
    os.replace(staging, directory / "..data")
    for key in data:
        link = directory / key
        if not link.is_symlink():
            link.symlink_to(Path("..data") / key)


def test_the_seed_configmap_in_each_form(tmp_path: Path) -> None:
    manifest = tmp_path / "configmap.yaml"
    manifest.write_text(SEED_CONFIGMAP)
    assert load_desired(manifest, environ={}) == SEED_STATE
    plain = tmp_path / "desired.json"
    plain.write_text(json.dumps({"model_path": "/models/ai-model.wasm", "model_version": "v1.0.0",
                                 "model_update_interval": "5m", "cache_enabled": "true"}))
    assert load_desired(plain, environ={}) == SEED_STATE
    volume = tmp_path / "volume"
    mount(volume, {"model_path": "/models/ai-model.wasm", "model_version": "v1.0.0", "model_update_interval": "5m",
                   "cache_enabled": "true"}, "2026_12_01_00_00_00.1")
    assert load_desired(volume, environ={}) == SEED_STATE


def test_model_path_from_the_environment_wins(tmp_path: Path) -> None:
    manifest = tmp_path / "configmap.yaml"
    manifest.write_text(SEED_CONFIGMAP)
    state = load_desired(manifest, environ={"MODEL_PATH": "/models/other.wasm"})
    assert state.model_path == "/models/other.wasm" and state.model_version == "v1.0.0"


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300.0), ("90s", 90.0), ("1h30m", 5400.0), ("250ms", 0.25),
                                               ("12", 12.0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("data", "message"), [
    ({"model_path": "/m.wasm", "model_update_interval": "5 minutes"}, "is not a duration"),
    ({"model_path": "/m.wasm", "model_update_interval": "0s"}, "must be positive"),
    ({"model_path": "/m.wasm", "cache_enabled": "maybe"}, "is not a boolean"),
    ({"model_path": "/m.wasm", "model_versoin": "1.0.0"}, "unknown key(s) 'model_versoin'"),
    ({"model_version": "1.0.0"}, "no model_path"),
])
def test_bad_values_are_refused_with_the_reason(tmp_path: Path, data: dict[str, str], message: str) -> None:
    source = tmp_path / "desired.json"
    source.write_text(json.dumps(data))
    with pytest.raises(DesiredStateError) as caught:
        load_desired(source, environ={})
    assert message in str(caught.value) and str(source) in str(caught.value)


def test_the_watch_applies_an_in_place_configmap_update_and_keeps_the_last_good_state(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    mount(volume, {"model_path": "/models/a.wasm", "model_version": "1.0.0"}, "gen1")
    watcher = DesiredStateWatcher(volume, environ={})
    assert watcher.current == DesiredState("/models/a.wasm", "1.0.0")
    assert not watcher.check()  # nothing changed
    mount(volume, {"model_path": "/models/a.wasm", "model_version": "1.1.0"}, "gen2")
    assert watcher.check()
    assert watcher.current == DesiredState("/models/a.wasm", "1.1.0")
    mount(volume, {"model_path": "/models/a.wasm", "model_version": "1.2.0", "cache_enabled": "perhaps"}, "gen3")
    assert not watcher.check()
    assert watcher.last_error is not None and "is not a boolean" in watcher.last_error
    assert watcher.current.model_version == "1.1.0"  # the last good state stays
    mount(volume, {"model_path": "/models/a.wasm", "model_version": "1.2.0"}, "gen4")
    assert watcher.check()
    assert watcher.current.model_version == "1.2.0" and watcher.last_error is None
