"""A model's serving settings: `<repository>/<model>/config.json`, in Triton's field names.

Triton keeps these in `config.pbtxt`; we read the same fields from JSON so that a Triton user
recognises them, and we refuse what we do not implement instead of ignoring it (a typo in
`max_queue_delay_microseconds` must not silently turn batching off):

    {
      "max_batch_size": 16,                     # largest batch a dynamic batch may form
      "dynamic_batching": {"max_queue_delay_microseconds": 2000},
      "instance_count": 2,                      # concurrent runs (instances) of this model
      "max_concurrency": 64                     # requests in flight (running + queued); more get 429
    }

Every field is optional; the server's command-line defaults fill the gaps. The file applies to
every version of the model and is read when a version loads, so an edit takes effect at the
next explicit load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

CONFIG_FILE = "config.json"
_FIELDS = {"max_batch_size", "dynamic_batching", "instance_count", "max_concurrency"}
_BATCHING_FIELDS = {"max_queue_delay_microseconds"}


class ConfigError(ValueError):
    """config.json is unreadable or holds a field or value we do not accept."""


@dataclass(frozen=True)
class ModelConfig:
    max_batch_size: int | None = None  # None: the module's compiled --max-batch
    batching_delay_us: int | None = None  # None: no dynamic batching; 0: batch only what is already queued
    instance_count: int | None = None  # None: the server's --pool-size
    max_concurrency: int | None = None  # None: the server's --max-concurrency (0 there: unlimited)


def load_model_config(model_dir: Path) -> ModelConfig:
    """The model's config.json, checked; an absent file is the empty config."""
    path = model_dir / CONFIG_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ModelConfig()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    return parse_model_config(data, str(path))


def parse_model_config(data: Any, where: str = CONFIG_FILE) -> ModelConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a JSON object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; known: "
                          f"{', '.join(sorted(_FIELDS))}")
    delay = None
    if "dynamic_batching" in data:
        batching = data["dynamic_batching"]
        if not isinstance(batching, dict):
            raise ConfigError(f"{where}: \"dynamic_batching\" must be an object")
        unknown = sorted(set(batching) - _BATCHING_FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown dynamic_batching field(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(sorted(_BATCHING_FIELDS))}")
        delay = _integer(batching, "max_queue_delay_microseconds", where, minimum=0) or 0
    return ModelConfig(max_batch_size=_integer(data, "max_batch_size", where, minimum=1),
                       batching_delay_us=delay,
                       instance_count=_integer(data, "instance_count", where, minimum=1),
                       max_concurrency=_integer(data, "max_concurrency", where, minimum=1))


def _integer(data: dict[str, Any], key: str, where: str, minimum: int) -> int | None:
    if key not in data:
        return None
    value = data[key]
    if type(value) is not int or value < minimum:
        raise ConfigError(f"{where}: {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class ServingDefaults:
    """The server-wide settings (command-line flags) that a model's config.json may override."""

    pool_size: int = 1  # instances per model
    batching_delay_us: int | None = None  # --batch-delay-us: dynamic batching for every model that can batch
    max_concurrency: int = 0  # per model, requests in flight; 0: unlimited
    max_tensor_elements: int = 1 << 24  # per input tensor; bigger ones are refused before they reach a model


@dataclass(frozen=True)
class ModelSettings:
    """What one loaded model runs with: its config.json over the server's defaults."""

    instance_count: int
    max_batch: int | None  # largest batch a request or a dynamic batch may have; None: no limit of ours
    batching_delay_us: int | None
    max_concurrency: int
    max_tensor_elements: int


def settings_for(config: ModelConfig, defaults: ServingDefaults, compiled_max_batch: int | None) -> ModelSettings:
    """Merge, refusing a max_batch_size the module cannot run (its batch is fixed when it is compiled)."""
    max_batch = compiled_max_batch
    if config.max_batch_size is not None:
        if compiled_max_batch is not None and config.max_batch_size > compiled_max_batch:
            raise ConfigError(f"{CONFIG_FILE}: max_batch_size {config.max_batch_size} is over the module's "
                              f"compiled --max-batch {compiled_max_batch}")
        max_batch = config.max_batch_size
    delay = config.batching_delay_us if config.batching_delay_us is not None else defaults.batching_delay_us
    return ModelSettings(instance_count=config.instance_count or defaults.pool_size, max_batch=max_batch,
                         batching_delay_us=delay, max_concurrency=config.max_concurrency or defaults.max_concurrency,
                         max_tensor_elements=defaults.max_tensor_elements)
