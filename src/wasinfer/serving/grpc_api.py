"""The v2 gRPC front end: `inference.GRPCInferenceService` on grpcio's threaded server.

The messages come from proto/grpc_service.proto, compiled into a private descriptor pool
(descriptors.py). Handlers run on grpcio's worker threads and call the blocking model manager
directly.

Two thread pools, so that health never waits behind inference: the methods that answer from
memory at once (CONTROL_METHODS: ServerLive, ServerReady, ModelReady, ServerMetadata,
RepositoryIndex, ModelStatistics) run on a small pool of their own (grpcio's per-handler `experimental_thread_pool`),
everything else on the main pool, whose threads may each wait for a model up to the request's
deadline. One model's calls may hold at most half of the main pool's threads (`thread_shares`;
more get RESOURCE_EXHAUSTED at once), so a model whose calls all wait leaves threads for the
others. ModelInfer's deadline is the client's (its gRPC deadline) or --deadline-ms, whichever is
sooner: a call that waited past it in grpcio's queue, or waits past it for a free model
instance, is answered DEADLINE_EXCEEDED without running.

One wrapper (`_handler`) gives every method what REST has too: the request id (`x-request-id`
metadata, else ModelInfer's "id", else a new one; answered as `x-request-id` trailing metadata),
the bearer token from `authorization` metadata for the methods that need one (auth.py), a log
line per refused or failed call, and INTERNAL with the request id, not grpcio's UNKNOWN with the
exception's text, when a handler has a bug.

Server reflection (grpc.reflection.v1alpha.ServerReflection, grpcio-reflection's servicer) lists
the three services and serves their descriptors from the same private pool, so `grpcurl -plaintext
HOST:PORT list` and `describe` work without the .protos at hand.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, json_format
from google.protobuf.message import DecodeError

from wasinfer.serving.auth import Tokens, check_bearer
from wasinfer.serving.breaker import BreakerOpen
from wasinfer.serving.descriptors import HEALTH_PROTO, _pool, messages, service_descriptor_set
from wasinfer.serving.errors import BadRequest, DeadlineExceeded, Internal, NotFound, ServingError, TooManyRequests
from wasinfer.serving.logs import accept_request_id, new_request_id
from wasinfer.serving.metrics import Metrics, Phases
from wasinfer.serving.models import LoadedModel, ModelManager
from wasinfer.serving.protocol import (
    EXTENSIONS,
    STREAMING_METHODS,
    UNSUPPORTED_EXTENSIONS,
    InferRequest,
    RequestedOutput,
    check_load_parameters,
    class_count,
    datatype_of,
    decode_raw,
    element_count,
    encode_raw,
    numpy_dtype,
    unsupported_extension,
)
from wasinfer.version import __version__

log = logging.getLogger("wasinfer.serving")

SERVICE = "inference.GRPCInferenceService"
HEALTH_SERVICE = "grpc.health.v1.Health"
# Answered from memory, never blocking: these run on their own threads, never queued behind inference.
CONTROL_METHODS = frozenset({"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "RepositoryIndex",
                             "ModelStatistics"})
CONTROL_WORKERS = 4
# grpcio's time_remaining() for a call whose client set no deadline is ~9.2e18 s; anything this far off is none.
NO_DEADLINE_SECONDS = 1e7

# Which InferTensorContents field carries each datatype (FP16 and BF16 have none: raw contents only).
CONTENTS_FIELDS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def health_handler(cache_dir: Path | None, not_ready: Callable[[], str],
                   control: futures.ThreadPoolExecutor) -> grpc.GenericRpcHandler:
    """grpc.health.v1.Health/Check, as Kubernetes' gRPC probes call it: the service "" is the server's liveness
    (SERVING while it answers), "inference.GRPCInferenceService" its readiness (NOT_SERVING while `not_ready`
    gives a reason: draining, a model it must serve not loaded yet); another name is NOT_FOUND, as the protocol
    says. Answered from memory on the control threads, never behind inference."""
    classes = messages(cache_dir, HEALTH_PROTO)
    request_class, response_class = classes["HealthCheckRequest"], classes["HealthCheckResponse"]
    serving, not_serving = (response_class.ServingStatus.Value(name) for name in ("SERVING", "NOT_SERVING"))

    def check(raw: bytes, context: grpc.ServicerContext) -> Any:
        try:
            service = request_class.FromString(raw).service
        except DecodeError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a HealthCheckRequest: {exc}")
        if service == "":
            return response_class(status=serving)
        if service == SERVICE:
            return response_class(status=not_serving if not_ready() else serving)
        context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}: ask for '' (live) or {SERVICE!r} "
                                                 "(ready)")

    handler = grpc.unary_unary_rpc_method_handler(check, response_serializer=response_class.SerializeToString)
    handler.experimental_thread_pool = control  # type: ignore[attr-defined]  # grpcio picks it per method
    return grpc.method_handlers_generic_handler(HEALTH_SERVICE, {"Check": handler})


@functools.cache
def reflection_pool(cache_dir: Path | None = None) -> descriptor_pool.DescriptorPool:
    """The services' descriptors and reflection's own, for the reflection servicer: a pool of its own, since
    the shared private pool (descriptors.py) must not depend on grpcio-reflection, and the default pool holds
    tritonclient's `inference.*` when a client shares the process (the tests)."""
    from grpc_reflection.v1alpha import reflection_pb2  # type: ignore[import-untyped]  # no stubs

    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(service_descriptor_set(cache_dir)).file:
        pool.Add(file)
    own = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(own)
    pool.Add(own)
    return pool


def add_reflection(server: grpc.Server, cache_dir: Path | None = None) -> None:
    """grpc.reflection.v1alpha.ServerReflection for `grpcurl list` / `describe`: the inference service, health
    and reflection itself."""
    from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped]

    reflection.enable_server_reflection((SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), server,
                                        pool=reflection_pool(cache_dir))


def _unsupported_handler(extension: str, control: futures.ThreadPoolExecutor,
                         stream: bool = False) -> grpc.RpcMethodHandler:
    """A method of a Triton extension wasinfer does not have: UNIMPLEMENTED naming the extension (grpcio's own
    answer, "Method not found!", says nothing a user can act on). Answered on the control threads."""

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, unsupported_extension(extension))

    handler = (grpc.stream_stream_rpc_method_handler(refuse) if stream
               else grpc.unary_unary_rpc_method_handler(refuse))
    handler.experimental_thread_pool = control  # type: ignore[attr-defined]  # grpcio picks it per method
    return handler


def service_methods(cache_dir: Path | None = None) -> dict[str, tuple[str, str]]:
    """Method name → (request message, response message), as the .proto declares them."""
    service = _pool(cache_dir).FindServiceByName(SERVICE)
    return {m.name: (m.input_type.name, m.output_type.name) for m in service.methods}


def decode_infer_request(request: Any) -> InferRequest:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: give one per input "
                         "(or none, and contents in every input)")
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    for index, tensor in enumerate(request.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
        if name in inputs:
            raise BadRequest(f"input {name!r} is given twice")
        if raw:
            inputs[name] = decode_raw(name, datatype, shape, raw[index])
        else:
            inputs[name] = _decode_contents(name, datatype, shape, tensor.contents)
        datatypes[name] = datatype
    outputs = [RequestedOutput(o.name, True, _class_count(o)) for o in request.outputs] or None
    return InferRequest(inputs, datatypes, outputs, request.id)


def _class_count(output: Any) -> int:
    """An InferRequestedOutputTensor's classification parameter (tritonclient sends int64_param)."""
    if "classification" not in output.parameters:
        return 0
    parameter = output.parameters["classification"]
    choice = parameter.WhichOneof("parameter_choice")
    return class_count(output.name, getattr(parameter, choice) if choice else None)


def _decode_contents(name: str, datatype: str, shape: list[int], contents: Any) -> np.ndarray:
    dtype = numpy_dtype(datatype, name)
    count = element_count(shape, name)
    if datatype not in CONTENTS_FIELDS:
        raise BadRequest(f"input {name!r}: {datatype} can only be sent in raw_input_contents")
    values = getattr(contents, CONTENTS_FIELDS[datatype])
    if len(values) != count:
        raise BadRequest(f"input {name!r}: {len(values)} values in contents, but shape {shape} needs {count}")
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
    else:
        try:
            array = _contents_array(values, dtype)
        except OverflowError as exc:
            raise BadRequest(f"input {name!r}: a value does not fit {datatype}: {exc}") from None
    return array.reshape(shape)


CONTENTS_SLICE = 65536  # values converted per step


def _contents_array(values: Any, dtype: np.dtype) -> np.ndarray:
    """A repeated numeric field as an array, a slice at a time. np.array() on the field itself reads it value
    by value through the sequence protocol in one call that holds the interpreter (a 48 MiB message for seconds,
    while health checks and every other request waited); a slice is a list, which numpy converts five times
    faster, and other threads run between slices."""
    if len(values) <= CONTENTS_SLICE:
        return np.array(values[:], dtype=dtype)
    array = np.empty(len(values), dtype=dtype)
    for start in range(0, len(values), CONTENTS_SLICE):
        array[start:start + CONTENTS_SLICE] = np.array(values[start:start + CONTENTS_SLICE], dtype=dtype)
    return array


class CallCounts:
    """Calls in progress per key (a model, a client address), at most `limit` for one key.

    A gRPC call keeps its thread while it waits for its model (up to its deadline), so without a
    cap a model whose runs loop (thread_shares: per model) or a client that keeps calls open
    (`--max-connections-per-client`: per client address) would soon hold every thread, and
    everyone else's calls would queue in grpcio's pool behind them. A call over the cap is
    refused at once with `refusal(key, held)`, a RESOURCE_EXHAUSTED."""

    def __init__(self, limit: int, refusal: Callable[[str, int], ServingError]):
        self.limit, self.refusal = max(1, limit), refusal
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._lock:
            held = self._held.get(key, 0)
            if held >= self.limit:
                raise self.refusal(key, held)
            self._held[key] = held + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._held[key] - 1
                if left:
                    self._held[key] = left
                else:
                    del self._held[key]


def thread_shares(limit: int) -> CallCounts:
    """The main pool's threads one model's calls may hold."""
    return CallCounts(limit, lambda model, held: TooManyRequests(
        f"model {model!r} already has {held} calls in progress, its share of the server's gRPC threads; retry later"))


class Call(NamedTuple):
    """What `_handler` read from a call's metadata for the method."""

    request_id: str
    authorization: bytes | None  # the `authorization` metadata, if sent


Handler = Callable[[Any, grpc.ServicerContext, Call], Any]


class InferenceServicer:
    """The service's handlers; each takes (request message, grpc context, Call)."""

    def __init__(self, manager: ModelManager, metrics: Metrics, cache_dir: Path | None = None,
                 tokens: Tokens | None = None, not_ready: Callable[[], str] = lambda: "", workers: int = 8):
        self.manager, self.metrics, self.m = manager, metrics, messages(cache_dir)
        self.shares = thread_shares(workers // 2)  # of the main pool's `workers` threads, per model
        self.not_ready = not_ready  # why the server must not take traffic (draining, no model yet); "" when it may
        tokens = tokens or Tokens()
        self.inference_token, self.management_token = tokens.inference, tokens.management

    def _inference(self, call: Call) -> None:
        if self.inference_token is not None:
            check_bearer(self.inference_token, call.authorization, "inference")

    def _management(self, call: Call) -> None:
        if self.management_token is not None:
            check_bearer(self.management_token, call.authorization, "management")

    def ServerLive(self, request: Any, context: grpc.ServicerContext, call: Call) -> Any:
        return self.m["ServerLiveResponse"](live=True)

    def ServerReady(self, request: Any, context: grpc.ServicerContext, call: Call) -> Any:
        return self.m["ServerReadyResponse"](ready=not self.not_ready())

    def ServerMetadata(self, request: Any, context: grpc.ServicerContext, call: Call) -> Any:
        self._inference(call)
        return self.m["ServerMetadataResponse"](name="wasinfer", version=__version__, extensions=EXTENSIONS)

    def ModelReady(self, request: Any, context: grpc.ServicerContext, call: Call) -> Any:
        self._inference(call)
        return self.m["ModelReadyResponse"](ready=self.manager.is_ready(request.name, request.version))

    def ModelMetadata(self, request: Any, context: grpc.ServicerContext, call: Call) -> Any:
        self._inference(call)
        model = self.manager.get(request.name, request.version)
        tensor = self.m["ModelMetadataResponse"].TensorMetadata
        return self.m["ModelMetadataResponse"](
            name=model.name, versions=model.versions, platform=model.platform,
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in model.inputs],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in model.outputs])

    def ModelInfer(self, request: Any, context: grpc.ServicerContext, call: Call) -> Any:
        started = time.perf_counter()
        model: LoadedModel | None = None
        try:
            self._inference(call)  # in here, so refused calls are counted like any other outcome
            model = self.manager.get(request.model_name, request.model_version)
            try:
                model.breaker.check()  # a model refused by its fault breaker: before the request is decoded
            except BreakerOpen as refused:
                with self.shares.hold(model.name):
                    time.sleep(refused.hold)
                raise
            left = context.time_remaining()  # the client's deadline
            if left <= 0:
                raise DeadlineExceeded(f"model {model.name!r} version {model.version}: the call waited for a server "
                                       "thread until its deadline passed and was not run")
            deadline = self.manager.deadline(left if left < NO_DEADLINE_SECONDS else None)
            decoding = time.perf_counter()
            infer = decode_infer_request(request)
            model.check(infer)
            phases = Phases(input=time.perf_counter() - decoding)
            with self.shares.hold(model.name):
                outputs = model.infer(infer.inputs, deadline, phases)
            encoding = time.perf_counter()
            response = self._response(model, infer, model.classified(infer, outputs))
            phases.output = time.perf_counter() - encoding
        except Exception as exc:
            outcome = exc.outcome if isinstance(exc, ServingError) else Internal.outcome
            self.metrics.request(model.name if model else "", model.version if model else "", "grpc", outcome,
                                 time.perf_counter() - started)
            raise
        self.metrics.request(model.name, model.version, "grpc", "ok", time.perf_counter() - started, phases)
        return response

    def ModelConfig(self, request: Any, context: grpc.ServicerContext, call: Call) -> Any:
        """The model configuration extension: the same configuration as REST's, as inference.ModelConfig."""
        self._inference(call)
        model = self.manager.get(request.name, request.version)
        return json_format.ParseDict({"config": model.triton_config()}, self.m["ModelConfigResponse"]())

    def ModelStatistics(self, request: Any, context: grpc.ServicerContext, call: Call) -> Any:
        """The statistics extension, from memory (no load): every model's, a model's versions', or one version's."""
        self._inference(call)
        stats = self.manager.statistics(request.name, request.version)
        return json_format.ParseDict({"model_stats": stats}, self.m["ModelStatisticsResponse"]())

    def _response(self, model: LoadedModel, request: InferRequest, outputs: dict[str, np.ndarray]) -> Any:
        names = [o.name for o in request.outputs] if request.outputs else list(outputs)
        tensor = self.m["ModelInferResponse"].InferOutputTensor
        return self.m["ModelInferResponse"](
            model_name=model.name, model_version=model.version, id=request.id,
            outputs=[tensor(name=n, datatype=datatype_of(outputs[n].dtype), shape=outputs[n].shape) for n in names],
            raw_output_contents=[encode_raw(outputs[n]) for n in names])

    def _check_repository(self, name: str) -> None:
        if name and name != self.manager.repository.root.name:
            raise NotFound(f"unknown repository {name!r}; this server has {self.manager.repository.root.name!r}")

    def RepositoryIndex(self, request: Any, context: grpc.ServicerContext, call: Call) -> Any:
        self._management(call)
        self._check_repository(request.repository_name)
        entry = self.m["RepositoryIndexResponse"].ModelIndex
        return self.m["RepositoryIndexResponse"](models=[entry(**row) for row in self.manager.index(request.ready)])

    def RepositoryModelLoad(self, request: Any, context: grpc.ServicerContext, call: Call) -> Any:
        self._management(call)
        self._check_repository(request.repository_name)
        check_load_parameters(request.parameters)
        self.manager.check_repository_api("load", request.model_name)
        self.manager.load(request.model_name)
        return self.m["RepositoryModelLoadResponse"]()

    def RepositoryModelUnload(self, request: Any, context: grpc.ServicerContext, call: Call) -> Any:
        self._management(call)
        self._check_repository(request.repository_name)
        self.manager.check_repository_api("unload", request.model_name)
        self.manager.unload(request.model_name)
        return self.m["RepositoryModelUnloadResponse"]()


def client_address(peer: str) -> str:
    """The client's address in grpcio's peer string ("ipv4:127.0.0.1:50123", "ipv6:[::1]:50123"), port dropped:
    one client, however many connections and ports it uses."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host, _, _ = rest.rpartition(":")
        return host.strip("[]") or rest
    return peer  # unix sockets and the like: the whole string


def client_calls(limit: int) -> CallCounts:
    """The gRPC side of `--max-connections-per-client`: calls in progress per client address.

    Why calls, not connections: grpcio accepts connections in its core, with no hook to refuse one from
    Python, and HTTP/2 multiplexes any number of calls over one connection; what a client holds of the
    server is the calls it has in flight (each keeps a thread while it waits for its model). So a client
    at the cap gets RESOURCE_EXHAUSTED at once for its next call, as a REST client gets 429 for its next
    connection; health and metadata calls count too, since they also take threads.
    """
    return CallCounts(limit, lambda client, held: TooManyRequests(
        f"this client already has {held} calls in progress, the most one client may have "
        "(--max-connections-per-client); retry when one has finished"))


def _handler(name: str, method: Handler, message: Any,
             clients: CallCounts | None = None) -> Callable[[bytes, grpc.ServicerContext], Any]:
    """grpcio's (request bytes, context) handler around a servicer method: request id, token, errors, logs.

    The request is parsed here rather than by grpcio's request_deserializer, whose failure is
    an INTERNAL "Exception deserializing request!": bytes that are not a `message` are the
    client's error, INVALID_ARGUMENT with protobuf's reason. A ServingError becomes the matching
    gRPC status (the REST front end maps the same errors).
    """
    body_id = name == "ModelInfer"
    parse = message.FromString

    def handle(raw: bytes, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        authorization = request_id = None
        for key, value in context.invocation_metadata():
            if key == "authorization":
                authorization = value.encode() if isinstance(value, str) else value
            elif key == "x-request-id":
                request_id = accept_request_id(value)
        request = None
        try:
            request = parse(raw)
        except DecodeError as exc:
            failure: ServingError | None = BadRequest(f"the {name} request is not valid protobuf for "
                                                      f"{message.DESCRIPTOR.name}: {exc}")
        else:
            failure = None
            if request_id is None and body_id:
                request_id = accept_request_id(request.id)
        request_id = request_id or new_request_id()
        context.set_trailing_metadata((("x-request-id", request_id),))
        try:
            if failure is not None:
                raise failure
            with clients.hold(client_address(context.peer())) if clients is not None else nullcontext():
                return method(request, context, Call(request_id, authorization))
        except Exception as exc:  # every failure is a status with a message, and a log line
            failure = exc if isinstance(exc, ServingError) else Internal(
                f"internal server error (request id {request_id}; the server log has the details)")
            _log_failure(name, request, failure, exc, request_id, started)
            context.abort(grpc.StatusCode[failure.grpc_code], failure.message)

    return handle


def _log_failure(name: str, request: Any, failure: ServingError, cause: Exception, request_id: str,
                 started: float) -> None:
    code = grpc.StatusCode[failure.grpc_code]
    # a fault breaker's refusals are refused requests (its opening was logged once, as a warning)
    level = logging.ERROR if code == grpc.StatusCode.INTERNAL else logging.WARNING if \
        code == grpc.StatusCode.UNAVAILABLE and not isinstance(failure, BreakerOpen) else logging.INFO
    if not log.isEnabledFor(level):
        return
    model = getattr(request, "model_name", None) or getattr(request, "name", None) or None
    version = getattr(request, "model_version", None) or getattr(request, "version", None) or None
    log.log(level, "%s: %s %s", name, code.name, failure.message, exc_info=cause if cause is not failure else None,
            extra={"request_id": request_id, "protocol": "grpc", "method": name, "model": model,
                   "version": version, "status": code.name,
                   "duration_ms": round((time.perf_counter() - started) * 1000, 3)})


def build_grpc_server(manager: ModelManager, metrics: Metrics, address: str, workers: int,
                      max_message_bytes: int, cache_dir: Path | None = None, tokens: Tokens | None = None,
                      tls: tuple[bytes, bytes] | None = None, not_ready: Callable[[], str] = lambda: "",
                      handshake_timeout: float | None = None, idle_timeout: float | None = None,
                      max_calls_per_client: int = 0, reuse_port: bool = False) -> tuple[grpc.Server, int]:
    """A started-to-be server bound to `address` (port 0: any free one); returns it and its port.

    `workers` threads serve inference and the other methods that may wait; CONTROL_METHODS get
    CONTROL_WORKERS threads of their own. `tls`: (certificate chain, private key) in PEM; the port
    then speaks TLS only. `not_ready`: why ServerReady must say false ("" when it may say true).
    `handshake_timeout`: seconds a new connection has to complete its handshake; `idle_timeout`: a
    connection with no call for that long is closed (clients reconnect on their next call); None:
    grpcio's defaults (120 s, never). `max_calls_per_client`: calls in progress one client address may have
    (client_calls; 0: no cap). `reuse_port`: bind with SO_REUSEPORT, beside the other worker processes of a node
    (serve --workers), which share the port's connections; otherwise a port already taken is an error.
    """
    servicer = InferenceServicer(manager, metrics, cache_dir, tokens, not_ready, workers)
    limits = ([("grpc.server_handshake_timeout_ms", int(handshake_timeout * 1000))] if handshake_timeout else []) + \
        ([("grpc.max_connection_idle_ms", int(idle_timeout * 1000))] if idle_timeout else [])
    classes = servicer.m
    control = futures.ThreadPoolExecutor(max_workers=CONTROL_WORKERS, thread_name_prefix="wasinfer-grpc-control")
    handlers = {}
    clients = client_calls(max_calls_per_client) if max_calls_per_client else None
    for name, (request, response) in service_methods(cache_dir).items():
        handle = _handler(name, getattr(servicer, name), classes[request], clients)
        if name in CONTROL_METHODS:
            handle.experimental_thread_pool = control  # type: ignore[attr-defined]  # grpcio picks it per method
        handlers[name] = grpc.unary_unary_rpc_method_handler(handle,
                                                             response_serializer=classes[response].SerializeToString)
    for extension, (methods, _) in UNSUPPORTED_EXTENSIONS.items():
        for name in methods:
            handlers[name] = _unsupported_handler(extension, control, stream=name in STREAMING_METHODS)
    health = health_handler(cache_dir, not_ready, control)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wasinfer-grpc"),
        handlers=[grpc.method_handlers_generic_handler(SERVICE, handlers), health],
        options=[("grpc.max_receive_message_length", max_message_bytes), ("grpc.max_send_message_length", -1),
                 ("grpc.so_reuseport", int(reuse_port)), *limits],
    )
    add_reflection(server, cache_dir)
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            cert, key = tls
            port = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    except RuntimeError as exc:  # grpcio's way of saying the address is taken or not ours
        port, reason = 0, str(exc).split(";")[0]
    else:
        reason = "no address bound"
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}: {reason}")
    return server, port
