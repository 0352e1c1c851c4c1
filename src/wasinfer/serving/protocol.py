"""KServe v2 tensors on the wire: datatypes, JSON and binary (raw) encodings, REST bodies.

Both front ends decode into `InferRequest` (numpy arrays by name) and encode from the
model's output arrays, so the two protocols accept and refuse exactly the same tensors.
Raw tensor bytes are little-endian and row-major; a BYTES element is a 4-byte
little-endian length followed by its bytes (the binary tensor data extension, and
gRPC's raw_input_contents / raw_output_contents).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
import numpy as np
import orjson

from wasinfer.serving.errors import BadRequest, TooLarge

# v2 datatype ↔ numpy dtype. BYTES is an object array of bytes; BF16 is ml_dtypes' bfloat16 (numpy has none),
# numbers in JSON, 2 raw bytes each (the upper half of a float32's bits).
BF16 = np.dtype(ml_dtypes.bfloat16)
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BF16": BF16, "BYTES": np.dtype(object),
}
# Keyed by dtype object (native byte order on every platform that runs wasm): dtype.name is slow.
_BY_DTYPE = {np.dtype(dtype.name): name for name, dtype in DATATYPES.items()}


def datatype_of(dtype: np.dtype | str) -> str:
    """The v2 datatype of a numpy dtype (strings of any kind are BYTES)."""
    found = _BY_DTYPE.get(dtype) if isinstance(dtype, np.dtype) else None
    if found is not None:
        return found
    dtype = np.dtype(dtype)
    if dtype.kind in "OUS":
        return "BYTES"
    try:
        return _BY_DTYPE[dtype.newbyteorder("=")]
    except KeyError:
        raise ValueError(f"numpy dtype {dtype} has no KServe v2 datatype") from None


def numpy_dtype(datatype: str, tensor: str) -> np.dtype:
    try:
        return DATATYPES[datatype]
    except KeyError:
        raise BadRequest(f"tensor {tensor!r}: unknown datatype {datatype!r}; expected one of "
                         f"{', '.join(DATATYPES)}") from None


def element_count(shape: Sequence[int], tensor: str) -> int:
    count = 1
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise BadRequest(f"tensor {tensor!r}: shape {list(shape)} must be a list of non-negative integers")
        count *= dim
    return count


@dataclass
class RequestedOutput:
    name: str
    binary: bool  # REST only: send this output in the binary tensor data extension
    classification: int = 0  # the classification extension: its top k classes instead of the tensor; 0: the tensor


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    datatypes: dict[str, str]  # as the client declared them, for messages in v2 terms
    outputs: list[RequestedOutput] | None  # None: every output
    id: str = ""
    binary_outputs: bool = False  # REST: default for outputs not listed (binary_data_output)
    parameters: dict[str, Any] = field(default_factory=dict)


# --- raw (binary) tensors -------------------------------------------------------------------


def decode_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview) -> np.ndarray:
    dtype = numpy_dtype(datatype, name)
    count = element_count(shape, name)
    if datatype == "BYTES":
        return _decode_bytes(name, shape, count, raw)
    if len(raw) != count * dtype.itemsize:
        raise BadRequest(f"input {name!r}: {len(raw)} bytes of data, but shape {list(shape)} of {datatype} "
                         f"needs {count * dtype.itemsize}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _decode_bytes(name: str, shape: Sequence[int], count: int, raw: bytes | memoryview) -> np.ndarray:
    items: list[bytes] = []
    view, pos = memoryview(raw), 0
    while pos < len(view):
        if pos + 4 > len(view):
            raise BadRequest(f"input {name!r}: BYTES data ends inside an element's 4-byte length")
        (size,) = struct.unpack_from("<I", view, pos)
        if pos + 4 + size > len(view):
            raise BadRequest(f"input {name!r}: BYTES element of {size} bytes runs past the end of the data")
        items.append(bytes(view[pos + 4:pos + 4 + size]))
        pos += 4 + size
    if len(items) != count:
        raise BadRequest(f"input {name!r}: {len(items)} BYTES elements, but shape {list(shape)} needs {count}")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(shape)


def encode_raw(array: np.ndarray) -> bytes:
    if array.dtype.kind in "OUS":
        parts = []
        for item in array.reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(data)) + data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


# --- JSON tensors ---------------------------------------------------------------------------


def decode_json(name: str, datatype: str, shape: Sequence[int], data: Any) -> np.ndarray:
    """`data` is row-major, flat or nested as the shape; either way its size must match."""
    dtype = numpy_dtype(datatype, name)
    count = element_count(shape, name)
    if not isinstance(data, list):
        data = [data]
    try:
        if datatype == "BYTES":
            nested = np.asarray(data, dtype=object)
            flat = nested.reshape(-1)
            array = np.empty(flat.size, dtype=object)
            array[:] = [item.encode() if isinstance(item, str) else _not_string(name, item) for item in flat]
        else:
            array = nested = _numbers(name, datatype, dtype, data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequest(f"input {name!r}: data is not a (regular) list of {datatype} values: {exc}") from None
    if nested.ndim > 1 and nested.shape != tuple(shape):
        # Flat data is any row-major list; nested data must nest as the shape does, or it means another tensor.
        raise BadRequest(f"input {name!r}: data is nested as {list(nested.shape)}, but shape is {list(shape)} "
                         "(send it flat, or nested exactly as the shape)")
    if array.size != count:
        raise BadRequest(f"input {name!r}: {array.size} values of data, but shape {list(shape)} needs {count}")
    return array.reshape(shape)


def _numbers(name: str, datatype: str, dtype: np.dtype, data: list[Any]) -> np.ndarray:
    """JSON numbers (and true/false) as `dtype`. numpy itself would also take strings, reading "nan" or "1e3"
    as numbers and every non-empty string ("false" too) as True, and None as NaN: the data is converted with
    numpy's own type discovery first, which keeps a string a string, so such data is refused instead."""
    found = np.asarray(data)
    if found.dtype.kind not in "biuf":
        if found.dtype.kind in "US":
            raise BadRequest(f"input {name!r}: strings are not {datatype} values; send JSON numbers"
                             f"{' or true/false' if datatype == 'BOOL' else ''}")
        for item in found.reshape(-1):  # an object array: Python ints past int64 are numbers, the rest not
            if type(item) not in (int, float, bool):
                raise BadRequest(f"input {name!r}: {datatype} data must be JSON numbers"
                                 f"{' or true/false' if datatype == 'BOOL' else ''}; got {_json_kind(item)}")
    if dtype.kind in "fb" or dtype == BF16 or (found.dtype.kind in "iub" and _fits(found, dtype)):
        return found.astype(dtype, copy=False)
    return np.asarray(data, dtype=dtype)  # out of range, or floats for integers: numpy's own conversion decides


def _fits(found: np.ndarray, dtype: np.dtype) -> bool:
    if not found.size:
        return True
    limits = np.iinfo(dtype)
    return bool(limits.min <= found.min() and found.max() <= limits.max)


def _json_kind(item: Any) -> str:
    return "null" if item is None else "an object" if isinstance(item, dict) else "a string" if \
        isinstance(item, str) else "a list" if isinstance(item, list) else type(item).__name__


def _not_string(name: str, item: Any) -> bytes:
    raise BadRequest(f"input {name!r}: BYTES data must be strings, got {type(item).__name__}")


def json_data(array: np.ndarray) -> Any:
    """What goes in an output's "data": flat, numbers as numbers, BYTES as text."""
    flat = array.reshape(-1)
    if array.dtype.kind in "OUS":
        return [item.decode(errors="replace") if isinstance(item, bytes) else str(item) for item in flat]
    if array.dtype == BF16:  # JSON numbers: float32 holds every bfloat16 exactly
        return flat.astype(np.float32)
    return flat


# --- REST bodies ----------------------------------------------------------------------------


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value


def _string(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"{what}: \"{key}\" must be a string")
    return value


DEFAULT_MAX_JSON_VALUES = 1 << 20
_COUNT_SLICE = 1 << 20  # bytes counted per call, so that a count of a big body lets other threads run between


def check_json_values(body: bytes, end: int, limit: int) -> None:
    """Refuse, before parsing, a JSON text (`body[:end]`) that could hold more than `limit` values.

    Parsing costs time and memory per value, not per byte: orjson makes a Python object of every
    number (32 bytes each, for "1," two bytes of body) and holds the GIL throughout, so a 60 MiB
    body once took a gigabyte and stalled every other request, health checks too, for seconds.
    Every value but the first of an array follows a comma, so the commas bound the values (a
    string's commas count too: the bound errs on the safe side). A text shorter than `limit` cannot
    have that many and is not counted; a longer one is counted in slices.
    """
    if end <= limit:
        return
    commas = 0
    for start in range(0, end, _COUNT_SLICE):
        commas += body.count(b",", start, min(end, start + _COUNT_SLICE))
        if commas >= limit:
            raise TooLarge(f"the request's JSON has more than {limit} values (commas; --max-json-values): send "
                           "large tensors as binary data (the binary tensor data extension), which is not parsed")


def parse_rest_request(body: bytes, header_length: int | None,
                       max_json_values: int = DEFAULT_MAX_JSON_VALUES) -> InferRequest:
    """The JSON body, followed (binary tensor data extension) by the inputs' raw bytes."""
    if header_length is not None and not 0 < header_length <= len(body):
        raise BadRequest(f"Inference-Header-Content-Length {header_length} is outside the body's "
                         f"{len(body)} bytes")
    check_json_values(body, len(body) if header_length is None else header_length, max_json_values)
    header = body if header_length is None else memoryview(body)[:header_length]
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    request = _object(document, "the request")
    raw_inputs = request.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("the request needs \"inputs\": a non-empty list of tensors")
    binary = memoryview(body)[header_length:] if header_length is not None else memoryview(b"")
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    position = 0
    for index, raw in enumerate(raw_inputs):
        tensor = _object(raw, f"inputs[{index}]") if type(raw) is not dict else raw
        name, datatype = tensor.get("name"), tensor.get("datatype")
        if type(name) is not str:  # the messages' f-strings are built only when one is sent
            name = _string(tensor, "name", f"inputs[{index}]")
        if type(datatype) is not str:
            datatype = _string(tensor, "datatype", f"input {name!r}")
        shape = tensor.get("shape")
        if not isinstance(shape, list):
            raise BadRequest(f"input {name!r}: \"shape\" must be a list of integers")
        for dim in shape:
            if type(dim) is not int:  # JSON's 4.0 is the integer 4 (JSON Schema says so too): accept it as such
                shape = [int(d) if type(d) is float and d.is_integer() else d for d in shape]
                break
        if name in inputs:
            raise BadRequest(f"input {name!r} is given twice")
        own = tensor.get("parameters")
        size = _object(own, f"input {name!r}: parameters").get("binary_data_size") if own else None
        if size is not None:
            if type(size) is not int or size < 0 or position + size > len(binary):
                raise BadRequest(f"input {name!r}: binary_data_size {size} does not fit the {len(binary)} "
                                 f"bytes of binary data after the JSON header")
            inputs[name] = decode_raw(name, datatype, shape, binary[position:position + size])
            position += size
        elif "data" in tensor:
            inputs[name] = decode_json(name, datatype, shape, tensor["data"])
        else:
            raise BadRequest(f"input {name!r} has neither \"data\" nor a binary_data_size parameter")
        datatypes[name] = datatype
    if position != len(binary):
        raise BadRequest(f"{len(binary) - position} bytes of binary data after the JSON header belong to no input")
    parameters = _object(request.get("parameters") or {}, "parameters")
    outputs = None
    if request.get("outputs") is not None:
        if not isinstance(request["outputs"], list):
            raise BadRequest("\"outputs\" must be a list")
        outputs = [_requested_output(index, raw, parameters) for index, raw in enumerate(request["outputs"])]
    request_id = request.get("id", "")
    return InferRequest(inputs, datatypes, outputs, request_id if isinstance(request_id, str) else str(request_id),
                        bool(parameters.get("binary_data_output", False)), parameters)


def _requested_output(index: int, raw: Any, parameters: dict[str, Any]) -> RequestedOutput:
    tensor = _object(raw, f"outputs[{index}]")
    name = _string(tensor, "name", f"outputs[{index}]")
    own = tensor.get("parameters")
    if not own:  # the common {"name": ...}: no f-strings to build for messages that are not sent
        return RequestedOutput(name, bool(parameters.get("binary_data_output", False)))
    own = _object(own, f"output {name!r}: parameters")
    return RequestedOutput(name, bool(own.get("binary_data", parameters.get("binary_data_output", False))),
                           class_count(name, own.get("classification", 0)))


def class_count(output: str, value: Any) -> int:
    """The classification parameter of a requested output: a positive integer (0 or absent: none)."""
    if type(value) is not int or value < 0:
        raise BadRequest(f"output {output!r}: the classification parameter must be a positive integer (how many "
                         f"classes), got {value!r}")
    return value


def classify(array: np.ndarray, k: int, labels: list[str] | None, batched: bool) -> np.ndarray:
    """The top `k` classes of a numeric output as Triton's classification extension gives them: BYTES
    "value:index" or "value:index:label", highest first (ties: the lower index first), the value as C's %f for
    floats. A batched output gives k per sample ([batch, k]), any other the whole tensor's k ([k])."""
    rows = array.reshape(array.shape[0], -1) if batched and array.ndim else array.reshape(1, -1)
    k = min(k, rows.shape[1])
    floats = rows.dtype.kind == "f"
    result = np.empty((rows.shape[0], k), dtype=object)
    for row, values in enumerate(rows):
        for column, index in enumerate(np.argsort(-values.astype(np.float64), kind="stable")[:k]):
            value = f"{float(values[index]):f}" if floats else str(int(values[index]))
            label = labels[index] if labels is not None and index < len(labels) else ""
            result[row, column] = f"{value}:{index}{':' + label if label else ''}".encode()
    return result if batched and array.ndim else result.reshape(k)


def encode_rest_response(model_name: str, version: str, request: InferRequest,
                         outputs: dict[str, np.ndarray]) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it."""
    wanted = request.outputs or [RequestedOutput(name, request.binary_outputs) for name in outputs]
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for output in wanted:
        array = outputs[output.name]
        tensor: dict[str, Any] = {"name": output.name, "datatype": datatype_of(array.dtype),
                                  "shape": list(array.shape)}
        if output.binary:
            blob = encode_raw(array)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = json_data(array)
        tensors.append(tensor)
    document: dict[str, Any] = {"model_name": model_name, "model_version": version, "outputs": tensors}
    if request.id:
        document["id"] = request.id
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


# --- extensions ------------------------------------------------------------------------------

EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "model_repository", "statistics"]
# Triton's extensions wasinfer does not have, by the gRPC method or REST route (under /v2) that belongs to each:
# a client (tritonclient, perf_analyzer) gets UNIMPLEMENTED / 501 naming the extension, not "method not found"
UNSUPPORTED_EXTENSIONS = {
    "trace": (("TraceSetting",), ("trace",)),
    "logging": (("LogSettings",), ("logging",)),
    "system shared memory": (("SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister"),
                             ("systemsharedmemory",)),
    "CUDA shared memory": (("CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister"),
                           ("cudasharedmemory",)),
    "streaming (ModelStreamInfer)": (("ModelStreamInfer",), ()),
}
STREAMING_METHODS = frozenset({"ModelStreamInfer"})  # bidirectional streams: refused as one


def unsupported_extension(extension: str) -> str:
    """What a call of an extension wasinfer does not have is answered."""
    return (f"Triton's {extension} extension is not supported by wasinfer; the server's extensions are "
            f"{', '.join(EXTENSIONS)} (docs/serving.md)")


def check_load_parameters(parameters: Any) -> None:
    """Triton lets a load carry a model config or files; wasinfer loads what is on disk, and says so."""
    refused = sorted(key for key in parameters if key == "config" or key.startswith("file:"))
    if refused:
        raise BadRequest(f"load parameters {refused} are not supported: wasinfer loads the model files that are in "
                         "the repository; copy new versions there and load again")
