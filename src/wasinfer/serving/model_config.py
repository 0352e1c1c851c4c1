"""A model's serving settings: `<repository>/<model>/config.json` or Triton's `config.pbtxt`, in Triton's terms.

A Triton model repository keeps them in `config.pbtxt`, protobuf text format of Triton's
`inference.ModelConfig`; it is parsed with protobuf's own text format against that message as
proto/model_config.proto declares it, which holds only the fields wasinfer honours (so that a
config from Triton's own example repositories, such as densenet_onnx's with its inputs' `format`
and `reshape`, serves unchanged). A field it does not declare (`optimization`,
`sequence_batching`, an input's `is_shape_tensor` ...) is refused by name instead of being
ignored: a config that asks for what we do not do must not load as if it had not asked. The
same fields in JSON, with two of our own, make `config.json`:

    {
      "max_batch_size": 16,                     # largest batch a dynamic batch may form; 0: not batched
      "dynamic_batching": {"max_queue_delay_microseconds": 2000},
      "instance_count": 2,                      # concurrent runs (instances); or Triton's "instance_group"
      "max_concurrency": 64,                    # requests in flight (running + queued); more get 429
      "fault_breaker": {"faults": 5, "runs": 10, "open_ms": 1000, "max_open_ms": 30000}   # or false: off
    }

Every field is optional; the server's command-line defaults fill the gaps. A model has one of
the two files, not both. The file applies to every version of the model and is read when a
version loads, so an edit takes effect at the next explicit load.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import text_format

from wasinfer.serving.breaker import DEFAULT_BREAKER, BreakerConfigError, BreakerSettings
from wasinfer.serving.descriptors import MODEL_CONFIG_PROTO, messages

CONFIG_FILE = "config.json"
PBTXT_FILE = "config.pbtxt"
LABELS_FILE = "labels.txt"  # the labels of a model whose config names none (classification extension)
_FIELDS = {"max_batch_size", "dynamic_batching", "instance_count", "instance_group", "max_concurrency",
           "fault_breaker"}
_BATCHING_FIELDS = {"max_queue_delay_microseconds"}
_GROUP_FIELDS = {"name", "kind", "count"}
_KINDS = ("KIND_AUTO", "KIND_CPU")  # wasinfer's instances run on the CPU
# Triton's platform and backend names of the formats wasinfer serves (repository.py picks the file).
PLATFORMS = {"wasinfer_wasm", "onnxruntime_onnx", "tensorflow_lite"}
BACKENDS = {"wasinfer", "onnxruntime", "tflite"}


class ConfigError(ValueError):
    """config.json or config.pbtxt is unreadable or holds a field or value we do not accept."""


@dataclass(frozen=True)
class TensorConfig:
    """An `input` or `output` entry: checked against the module's own tensor when a version loads."""

    name: str
    datatype: str  # v2 name ("FP32", "BYTES"); "" when the entry gives none
    dims: tuple[int, ...]  # without the batch when max_batch_size > 0; -1: a size known at run time
    label_filename: str = ""  # outputs: labels for the classification extension
    reshape: tuple[int, ...] | None = None  # the model's own shape (without the batch, like dims); None: dims
    format: str = ""  # inputs: FORMAT_NONE, FORMAT_NCHW or FORMAT_NHWC (informational, as in Triton)

    @property
    def model_dims(self) -> tuple[int, ...]:
        """The shape the model's tensor has (without the batch when max_batch_size > 0): reshape's, else dims."""
        return self.reshape if self.reshape is not None else self.dims


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions on disk are served (Triton's version_policy): all, the latest n, or specific ones."""

    kind: str  # "all", "latest" or "specific"
    latest: int = 1
    versions: tuple[int, ...] = ()

    def select(self, versions: Iterable[int]) -> list[int]:
        ordered = sorted(versions)
        if self.kind == "latest":
            return ordered[-self.latest:]
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered

    def as_json(self) -> dict[str, Any]:
        if self.kind == "latest":
            return {"latest": {"num_versions": self.latest}}
        if self.kind == "specific":
            return {"specific": {"versions": list(self.versions)}}
        return {"all": {}}


@dataclass(frozen=True)
class ModelConfig:
    max_batch_size: int | None = None  # None: the module's compiled --max-batch; 0: the server does not batch
    batching_delay_us: int | None = None  # None: no dynamic batching; 0: batch only what is already queued
    preferred_batch_sizes: tuple[int, ...] = ()  # a dynamic batch runs once the largest is queued
    instance_count: int | None = None  # None: the server's --pool-size
    max_concurrency: int | None = None  # None: the server's --max-concurrency (0 there: unlimited)
    inputs: tuple[TensorConfig, ...] = ()  # empty: not declared (the module's own are served)
    outputs: tuple[TensorConfig, ...] = ()
    version_policy: VersionPolicy | None = None  # None: every version on disk is served
    fault_breaker: BreakerSettings | None = None  # None: the server's --fault-breaker (breaker.py)
    source: str = CONFIG_FILE  # the file it came from, for messages

    def labels_file(self, output: str) -> str:
        """The output's label_filename, else the model directory's labels.txt (which may not exist)."""
        return next((t.label_filename for t in self.outputs if t.name == output and t.label_filename), LABELS_FILE)


def load_model_config(model_dir: Path, cache_dir: Path | None = None) -> ModelConfig:
    """The model's config.json or config.pbtxt, checked; neither is the empty config. `cache_dir`: where the
    compiled .protos are kept (descriptors.py)."""
    json_path, pbtxt_path = model_dir / CONFIG_FILE, model_dir / PBTXT_FILE
    raw_json, raw_pbtxt = _read(json_path), _read(pbtxt_path)
    if raw_json is not None and raw_pbtxt is not None:
        raise ConfigError(f"{model_dir}: has both {CONFIG_FILE} and {PBTXT_FILE}; keep one")
    if raw_pbtxt is not None:
        return parse_pbtxt(raw_pbtxt, str(pbtxt_path), model_dir.name, cache_dir)
    if raw_json is None:
        return ModelConfig()
    try:
        data = orjson.loads(raw_json)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{json_path}: not valid JSON: {exc}") from None
    return parse_model_config(data, str(json_path))


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None


def parse_model_config(data: Any, where: str = CONFIG_FILE) -> ModelConfig:
    """config.json's object, checked field by field."""
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
    max_batch = _integer(data, "max_batch_size", where, minimum=0)
    if max_batch == 0 and delay is not None:
        raise ConfigError(f"{where}: dynamic_batching needs a max_batch_size > 0 (0: the model is not batched)")
    count = _integer(data, "instance_count", where, minimum=1)
    if "instance_group" in data:
        if count is not None:
            raise ConfigError(f"{where}: give \"instance_count\" or \"instance_group\", not both")
        count = _json_groups(data["instance_group"], where)
    breaker = None
    if "fault_breaker" in data:
        try:
            breaker = BreakerSettings.from_json(data["fault_breaker"], where)
        except BreakerConfigError as exc:
            raise ConfigError(str(exc)) from None
    return ModelConfig(max_batch_size=max_batch, batching_delay_us=delay, instance_count=count,
                       max_concurrency=_integer(data, "max_concurrency", where, minimum=1), fault_breaker=breaker,
                       source=where)


def _json_groups(groups: Any, where: str) -> int:
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
        raise ConfigError(f"{where}: \"instance_group\" must be a non-empty list of objects such as "
                          "{\"count\": 2, \"kind\": \"KIND_CPU\"}")
    counted = []
    for index, group in enumerate(groups):
        unknown = sorted(set(group) - _GROUP_FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown instance_group[{index}] field(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(sorted(_GROUP_FIELDS))}")
        counted.append((str(group.get("kind", "KIND_AUTO")), _integer(group, "count", where, 1) or 1))
    return _instances(counted, where)


def _instances(groups: Sequence[tuple[str, int]], where: str) -> int:
    """The groups' instances added up, as Triton does; a group for another device is refused by its kind."""
    for index, (kind, _) in enumerate(groups):
        if kind not in _KINDS:
            raise ConfigError(f"{where}: instance_group[{index}] kind {kind} is not supported: wasinfer runs its "
                              f"instances on the CPU ({' or '.join(_KINDS)})")
    return sum(count for _, count in groups)


def _integer(data: dict[str, Any], key: str, where: str, minimum: int) -> int | None:
    if key not in data:
        return None
    value = data[key]
    if type(value) is not int or value < minimum:
        raise ConfigError(f"{where}: {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


# --- config.pbtxt ------------------------------------------------------------------------------

_UNKNOWN_FIELD = re.compile(r'^(\d+):(\d+) : Message type "inference\.(\w+)" has no field named "(\w+)"')
# TYPE_STRING is v2's BYTES; every other TYPE_X is X.
_V2_TYPES = {"TYPE_STRING": "BYTES"}


def parse_pbtxt(text: bytes, where: str = PBTXT_FILE, model: str = "", cache_dir: Path | None = None) -> ModelConfig:
    """A Triton config.pbtxt, parsed by protobuf's text format against inference.ModelConfig, then checked."""
    classes = messages(cache_dir, MODEL_CONFIG_PROTO)
    config = classes["ModelConfig"]()
    try:
        text_format.Parse(text.decode("utf-8", errors="replace"), config)
    except text_format.ParseError as exc:
        unknown = _UNKNOWN_FIELD.match(str(exc))
        if unknown:
            line, _, message, field = unknown.groups()
            known = ", ".join(f.name for f in classes[message].DESCRIPTOR.fields)
            raise ConfigError(f"{where}:{line}: field {field!r} of {message} is not supported by wasinfer (not "
                              f"honoured, so refused rather than ignored); {message} takes: {known}") from None
        raise ConfigError(f"{where}: not a valid Triton model configuration: {exc}") from None
    if config.name and model and config.name != model:
        raise ConfigError(f"{where}: name {config.name!r} is not the model's directory name {model!r}")
    if config.platform and config.platform not in PLATFORMS:
        raise ConfigError(f"{where}: platform {config.platform!r} is not one wasinfer serves; it serves "
                          f"{', '.join(sorted(PLATFORMS))} (from model.wasm, model.onnx, model.tflite)")
    if config.backend and config.backend not in BACKENDS:
        raise ConfigError(f"{where}: backend {config.backend!r} is not one wasinfer serves; it serves "
                          f"{', '.join(sorted(BACKENDS))} (from model.wasm, model.onnx, model.tflite)")
    max_batch = config.max_batch_size
    if max_batch < 0:
        raise ConfigError(f"{where}: max_batch_size must be >= 0, got {max_batch}")
    delay: int | None = None
    preferred: tuple[int, ...] = ()
    if config.HasField("dynamic_batching"):
        if max_batch == 0:
            raise ConfigError(f"{where}: dynamic_batching needs a max_batch_size > 0 (0: the model is not batched)")
        delay = config.dynamic_batching.max_queue_delay_microseconds
        preferred = tuple(config.dynamic_batching.preferred_batch_size)
        wrong = [size for size in preferred if not 1 <= size <= max_batch]
        if wrong:
            raise ConfigError(f"{where}: dynamic_batching preferred_batch_size {wrong} outside 1..{max_batch} "
                              "(max_batch_size)")
    groups = [(g.DESCRIPTOR.fields_by_name["kind"].enum_type.values_by_number[g.kind].name, g.count or 1)
              for g in config.instance_group]
    if any(g.count < 0 for g in config.instance_group):
        raise ConfigError(f"{where}: an instance_group count is negative")
    policy = None
    choice = config.version_policy.WhichOneof("policy_choice") if config.HasField("version_policy") else None
    if choice == "latest":
        if config.version_policy.latest.num_versions < 1:
            raise ConfigError(f"{where}: version_policy latest num_versions must be >= 1")
        policy = VersionPolicy("latest", latest=config.version_policy.latest.num_versions)
    elif choice == "specific":
        versions = tuple(config.version_policy.specific.versions)
        if not versions or min(versions) < 1:
            raise ConfigError(f"{where}: version_policy specific versions must be positive version numbers, got "
                              f"{list(versions)}")
        policy = VersionPolicy("specific", versions=versions)
    elif choice == "all":
        policy = VersionPolicy("all")
    return ModelConfig(max_batch_size=max_batch, batching_delay_us=delay, preferred_batch_sizes=preferred,
                       instance_count=_instances(groups, where) if groups else None,
                       inputs=tuple(_tensor(t, where, "input") for t in config.input),
                       outputs=tuple(_tensor(t, where, "output") for t in config.output),
                       version_policy=policy, source=where)


def _tensor(tensor: Any, where: str, kind: str) -> TensorConfig:
    if not tensor.name:
        raise ConfigError(f"{where}: an {kind} has no name")
    type_name = tensor.DESCRIPTOR.fields_by_name["data_type"].enum_type.values_by_number[tensor.data_type].name
    datatype = "" if type_name == "TYPE_INVALID" else _V2_TYPES.get(type_name, type_name.removeprefix("TYPE_"))
    reshape = tuple(tensor.reshape.shape) if tensor.HasField("reshape") else None
    dims = tuple(tensor.dims)
    if reshape is not None:
        if any(d < 1 for d in reshape) or any(d < -1 or d == 0 for d in dims):
            raise ConfigError(f"{where}: {kind} {tensor.name!r}: reshape {list(reshape)} must be sizes >= 1 and dims "
                              f"{list(dims)} sizes >= 1 or -1")
        if -1 not in dims and math.prod(dims) != math.prod(reshape):
            raise ConfigError(f"{where}: {kind} {tensor.name!r}: dims {list(dims)} ({math.prod(dims)} elements) "
                              f"cannot be reshaped to {list(reshape)} ({math.prod(reshape)} elements)")
    layout = ""
    if kind == "input":
        layout = tensor.DESCRIPTOR.fields_by_name["format"].enum_type.values_by_number[tensor.format].name
    return TensorConfig(tensor.name, datatype, dims, getattr(tensor, "label_filename", ""), reshape, layout)


def config_type(datatype: str) -> str:
    """A v2 datatype as Triton's model configuration names it (BYTES is TYPE_STRING)."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def check_tensors(config: ModelConfig, kind: str, declared: Sequence[TensorConfig],
                  module: Sequence[tuple[str, str, Sequence[int]]], batched: bool) -> None:
    """The config's inputs (or outputs) against the module's (name, v2 datatype, dims: its shape with -1 for
    run-time sizes, without the batch when `batched`, max_batch_size > 0): names, datatypes and dims must agree.
    Inputs must all be declared when any is; outputs may be a subset, as in Triton."""
    if not declared:
        return
    found = {name: (datatype, list(shape)) for name, datatype, shape in module}
    names = [t.name for t in declared]
    unknown = [n for n in names if n not in found]
    missing = [n for n in found if n not in names] if kind == "input" else []
    if unknown or missing:
        said = ([f"names {', '.join(map(repr, unknown))}, which the module does not have"] if unknown else []) + (
            [f"leaves out {', '.join(map(repr, missing))}"] if missing else [])
        raise ConfigError(f"{config.source}: {kind} {' and '.join(said)}; the module's {kind}s are "
                          f"{', '.join(map(repr, found))}")
    for index, tensor in enumerate(declared):
        datatype, dims = found[tensor.name]
        if tensor.datatype and tensor.datatype != datatype:
            raise ConfigError(f"{config.source}: {kind}[{index}] ({tensor.name!r}) data_type "
                              f"{config_type(tensor.datatype)} is not the module's {config_type(datatype)}")
        batch = " (without the batch: max_batch_size > 0)" if batched else ""
        if tensor.reshape is None and list(tensor.dims) != dims:
            raise ConfigError(f"{config.source}: {kind}[{index}] ({tensor.name!r}) dims {list(tensor.dims)} are not "
                              f"the module's {dims}{batch}")
        # reshape names the module's shape; a size the module leaves to run time (-1) takes the one reshape gives
        if tensor.reshape is not None and (len(tensor.reshape) != len(dims) or any(
                d not in (-1, r) for r, d in zip(tensor.reshape, dims, strict=False))):
            raise ConfigError(f"{config.source}: {kind}[{index}] ({tensor.name!r}) reshape {list(tensor.reshape)} is "
                              f"not the module's shape {dims}{batch}")


@dataclass(frozen=True)
class ServingDefaults:
    """The server-wide settings (command-line flags) that a model's config.json may override."""

    pool_size: int = 1  # instances per model
    batching_delay_us: int | None = None  # --batch-delay-us: dynamic batching for every model that can batch
    max_concurrency: int = 0  # per model, requests in flight; 0: unlimited
    max_tensor_elements: int = 1 << 24  # per input tensor; bigger ones are refused before they reach a model
    fault_breaker: BreakerSettings = DEFAULT_BREAKER  # --fault-breaker


@dataclass(frozen=True)
class ModelSettings:
    """What one loaded model runs with: its config.json or config.pbtxt over the server's defaults."""

    instance_count: int
    max_batch: int | None  # largest batch a request or a dynamic batch may have; None: no limit of ours
    batching_delay_us: int | None  # None: no dynamic batching
    preferred_batch: int | None  # a dynamic batch runs once this many samples are queued; None: max_batch
    max_concurrency: int
    max_tensor_elements: int
    fault_breaker: BreakerSettings = DEFAULT_BREAKER


def settings_for(config: ModelConfig, defaults: ServingDefaults, compiled_max_batch: int | None) -> ModelSettings:
    """Merge, refusing a max_batch_size the module cannot run (its batch is fixed when it is compiled)."""
    max_batch = compiled_max_batch
    if config.max_batch_size:
        if compiled_max_batch is not None and config.max_batch_size > compiled_max_batch:
            raise ConfigError(f"{config.source}: max_batch_size {config.max_batch_size} is over the module's "
                              f"compiled --max-batch {compiled_max_batch}")
        max_batch = config.max_batch_size
    delay = config.batching_delay_us if config.batching_delay_us is not None else defaults.batching_delay_us
    if config.max_batch_size == 0:  # Triton's "not batched": no dynamic batching, whatever --batch-delay-us says
        delay = None
    return ModelSettings(instance_count=config.instance_count or defaults.pool_size, max_batch=max_batch,
                         batching_delay_us=delay, preferred_batch=max(config.preferred_batch_sizes, default=None),
                         max_concurrency=config.max_concurrency or defaults.max_concurrency,
                         max_tensor_elements=defaults.max_tensor_elements,
                         fault_breaker=defaults.fault_breaker if config.fault_breaker is None
                         else config.fault_breaker)
