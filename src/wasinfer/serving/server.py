"""One server process: REST (uvicorn, on its own event-loop thread) and gRPC (grpcio's threads)
over one model manager and one set of metrics. Each model runs in execution slots of its own
(models.py); a load executor does lazy loads, and rest.py parses big bodies on a thread of its own.

`Server.start()` binds both ports before it returns (port 0 picks a free one; `http_port`
and `grpc_port` say which), so a caller can connect at once. `stop()` drains: readiness answers
503 / not ready at once (and, for `drain_delay_seconds`, everything else is still served, so a
load balancer that polls readiness stops sending traffic first); then both ports refuse new
connections and calls while the requests in flight finish, for at most the grace period, which
by default outlasts the per-call deadline so that no request in flight is cut off. The CLI runs
it until SIGINT/SIGTERM; tests run it in-process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import threading
import time
from collections.abc import MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn

from wasinfer.runtime import CompiledCache
from wasinfer.serving.auth import Tokens, check_tls_files
from wasinfer.serving.breaker import DEFAULT_BREAKER, BreakerSettings
from wasinfer.serving.connections import DEFAULT_HEADER_TIMEOUT, ConnectionLimits, guarded_protocol
from wasinfer.serving.control import (
    DEFAULT_MODE,
    DEFAULT_POLL_SECONDS,
    MODES,
    RepositoryPoller,
    StartupError,
    load_at_startup,
)
from wasinfer.serving.desired import ConfigMapRef
from wasinfer.serving.guests import GuestConfig, Guests
from wasinfer.serving.kube_source import open_source
from wasinfer.serving.metrics import Metrics
from wasinfer.serving.model_config import ServingDefaults
from wasinfer.serving.models import ModelManager
from wasinfer.serving.openapi import document_json
from wasinfer.serving.protocol import DEFAULT_MAX_JSON_VALUES
from wasinfer.serving.repository import Repository
from wasinfer.serving.rest import Receive, RestApp, Scope, Send
from wasinfer.serving.updater import (
    CanaryPolicy,
    DesiredStateLoop,
    Fetcher,
    ModelUpdater,
    fetch_file,
    model_name_of,
)

if TYPE_CHECKING:
    import grpc

log = logging.getLogger("wasinfer.serving")

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
# gRPC's main thread pool. A call holds its thread while it waits for its model (models run on threads of
# their own), so waiting is what these threads mostly do: many cost little (they start as calls need them),
# and one model's calls may hold half of them (grpc_api.thread_shares) before more are refused.
GRPC_WORKERS = 256
GRACE_BEYOND_DEADLINE = 5.0  # the default grace period: the deadline plus this (a call may start just before stop)
DEFAULT_GRACE = 30.0  # with no deadline
DEFAULT_DEMOTE_AFTER = 0.010  # a run this long is 5x the normal model's of the chaos suite, and rare in small models


def default_pool_size() -> int:
    """Instances per model: one per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class ServerConfig:
    model_repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int | None = 8001  # None: no gRPC
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    pool_size: int = 0  # 0: one instance per core
    cache_dir: Path | None = None  # compiled-code cache; None: compile on every load
    # Bearer tokens (auth.py; None leaves that plane open), TLS for both ports (both files or neither),
    # one log line per request (logs.py).
    inference_token: str | None = None
    management_token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    access_log: bool = False
    batch_delay_us: int | None = None  # dynamic batching for every model that can batch; None: per config.json
    max_concurrency: int = 0  # per model, requests in flight; 0: unlimited
    max_tensor_elements: int = 1 << 24
    max_json_values: int = DEFAULT_MAX_JSON_VALUES  # per REST request's JSON, counted before it is parsed
    memory_budget_bytes: int = 0  # loaded models' total; 0: no budget (nothing is evicted)
    # Per wasm call and per wasm instance; None turns each off. A call past the deadline is stopped
    # and answered 504 / DEADLINE_EXCEEDED; the interrupt checks that make it possible cost a few
    # percent (see make_engine), so None also compiles without them. ONNX Runtime (and LiteRT)
    # models run native code that cannot be interrupted this way: they have neither limit.
    deadline_seconds: float | None = 30.0
    # A run on a model's threads that has used this many seconds of CPU gives way to shorter runs (its
    # thread drops to nice 19: workers.py); None: runs keep their priority however long they take.
    demote_after_seconds: float | None = DEFAULT_DEMOTE_AFTER
    # A model whose recent runs mostly fault is refused for a while (breaker.py); config.json's "fault_breaker" wins.
    fault_breaker: BreakerSettings = DEFAULT_BREAKER
    instance_memory_bytes: int | None = 1 << 30
    # The seed's ConfigMap (desired.py): one model kept at its desired version, updated in place.
    desired_state: Path | ConfigMapRef | None = None  # a file or mounted directory; k8s://: the API
    fetcher: Fetcher | None = None  # where a desired version comes from; None: model_path is a file
    canary: CanaryPolicy | None = None  # new versions bake on a share of the traffic first; None: swap at once
    guests: GuestConfig | None = None  # WASI-NN guest programs at /v2/guests/{name}/run (guests.py); None: none
    # Shutdown (stop(), SIGTERM): readiness goes 503 for drain_delay_seconds while everything else is served,
    # then requests in flight get shutdown_grace_seconds to finish (None: the deadline + 5 s, see grace()).
    drain_delay_seconds: float = 0.0
    shutdown_grace_seconds: float | None = None
    # Connections (connections.py): a request's headers must arrive within header_timeout_seconds of the
    # connection (or of the request's first byte), and its body may not pause that long; an idle keep-alive
    # connection closes after idle_timeout_seconds (uvicorn's keep-alive timeout; gRPC's max connection idle);
    # max_connections_per_client 0: no cap.
    header_timeout_seconds: float | None = DEFAULT_HEADER_TIMEOUT
    idle_timeout_seconds: float = 5.0
    max_connections_per_client: int = 0
    # Model control (control.py): when models load; --load-model's names (explicit); whether a model that fails its
    # start-up load stops the start; how often the poll mode reads the repository.
    model_control_mode: str = DEFAULT_MODE
    load_models: tuple[str, ...] = ()
    exit_on_error: bool = True
    repository_poll_seconds: float = DEFAULT_POLL_SECONDS
    # One worker process of a node (supervisor.py): REST on the supervisor's listening socket (this inherited
    # descriptor) instead of binding, gRPC bound beside the other workers (SO_REUSEPORT), the metrics shared with
    # them through metrics_dir, and every REST answer naming the worker in X-Wasinfer-Worker. None/"": one process.
    http_fd: int | None = None
    grpc_reuse_port: bool = False
    metrics_dir: Path | None = None
    worker_tag: str = ""

    def grace(self) -> float:
        """Seconds requests in flight get to finish on stop: by default longer than any wasm call may run."""
        if self.shutdown_grace_seconds is not None:
            return self.shutdown_grace_seconds
        return self.deadline_seconds + GRACE_BEYOND_DEADLINE if self.deadline_seconds else DEFAULT_GRACE


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_socket(host: str, port: int, option: int = socket.SO_REUSEADDR, inheritable: bool = True) -> socket.socket:
    """A TCP socket bound to (host, port) with `option` set: for REST, SO_REUSEADDR and inheritable (the supervisor
    hands it to its workers)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, option, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(inheritable)
    return sock


class WorkerTagged:
    """The REST app with X-Wasinfer-Worker on every answer: which worker process of the node answered (its index
    and pid), for a client or a test that wants to know. Only worker processes wrap their app in it."""

    def __init__(self, app: RestApp, tag: str):
        self.app, self.header = app, (b"x-wasinfer-worker", tag.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def tagged(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], self.header]
            await send(message)

        await self.app(scope, receive, tagged)


class Server:
    def __init__(self, config: ServerConfig):
        self.config = config
        pool_size = config.pool_size or default_pool_size()
        self.metrics = Metrics()
        if config.metrics_dir is not None:
            self.metrics.share(config.metrics_dir)
        cache = CompiledCache(config.cache_dir) if config.cache_dir is not None else None
        defaults = ServingDefaults(pool_size=pool_size, batching_delay_us=config.batch_delay_us,
                                   max_concurrency=config.max_concurrency,
                                   max_tensor_elements=config.max_tensor_elements,
                                   fault_breaker=config.fault_breaker)
        self.manager = ModelManager(Repository(config.model_repository), self.metrics, pool_size, cache,
                                    defaults=defaults, memory_budget_bytes=config.memory_budget_bytes,
                                    deadline_seconds=config.deadline_seconds,
                                    memory_limit_bytes=config.instance_memory_bytes,
                                    demote_after_seconds=config.demote_after_seconds,
                                    lazy=config.model_control_mode == "lazy", control_mode=config.model_control_mode)
        if config.model_control_mode not in MODES:
            raise ValueError(f"model control mode {config.model_control_mode!r}: one of {', '.join(MODES)}")
        if config.memory_budget_bytes and config.model_control_mode != "lazy":
            raise ValueError("a memory budget evicts models that their next request loads again: it needs "
                             f"--model-control-mode lazy, not {config.model_control_mode}")
        self.poller: RepositoryPoller | None = None
        self.load_failures: dict[str, str] = {}  # model → why its start-up load failed (exit_on_error off)
        self.load_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="wasinfer-load")
        self.tokens = Tokens.of(config.inference_token, config.management_token)
        if (config.tls_cert is None) != (config.tls_key is None):
            raise ValueError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
        self.guests = Guests(config.guests) if config.guests is not None and config.guests.guests else None
        self.draining = threading.Event()  # set by stop(): readiness answers 503 / not ready from then on
        self._ready_while_draining = False  # stop(keep_ready=True): a worker retired by a rolling restart
        self.app = RestApp(self.manager, self.metrics, self.load_executor, config.max_body_bytes,
                           document_json(self.tokens), self.tokens, config.access_log, guests=self.guests,
                           not_ready=self.not_ready, max_json_values=config.max_json_values)
        self.http_port = self.grpc_port = 0
        self._grpc: grpc.Server | None = None  # grpcio is imported only when gRPC is served (~15 MiB)
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.updates: DesiredStateLoop | None = None

    def not_ready(self) -> str:
        """Why the server must not take traffic, "" when it may (/v2/health/ready, gRPC ServerReady).

        Not while it drains (stop()). With --desired-state it is ready once its model serves a version,
        as in the seed (a probe that said ready while nothing is served would route traffic to a pod that
        can only fail it); a later update that fails leaves the serving version, and readiness, as they
        are. Without one, the models the control mode loads at start-up have loaded before the ports open
        (control.py), so the server is ready as soon as it listens. Liveness never waits."""
        if self.draining.is_set() and not self._ready_while_draining:
            return "the server is shutting down"
        if self.updates is None:
            return ""
        status = self.updates.updater.status
        if status.version is not None:
            return ""
        return f"model {self.updates.updater.name!r} is not served yet" + (f": {status.reason}" if status.reason
                                                                            else "")

    def start(self, timeout: float = 30.0) -> None:
        config = self.config
        if config.desired_state is not None:  # serve the desired version before the ports open
            watcher = open_source(config.desired_state)
            updater = ModelUpdater(self.manager, self.metrics, model_name_of(watcher.current.model_path),
                                   config.fetcher or fetch_file, canary=config.canary)
            self.updates = DesiredStateLoop(watcher, updater).start()
        # Before the ports open: a client never sees a model "not loaded" that start-up is about to load.
        skip = frozenset({self.updates.updater.name}) if self.updates is not None else frozenset()
        try:
            self.load_failures = load_at_startup(self.manager, config.model_control_mode, config.load_models,
                                                 config.exit_on_error, skip)
        except StartupError:
            if self.updates is not None:
                self.updates.stop()
            raise
        if config.model_control_mode == "poll":
            self.poller = RepositoryPoller(self.manager, config.repository_poll_seconds, skip).start()
        tls = None
        if config.tls_cert is not None and config.tls_key is not None:
            check_tls_files(config.tls_cert, config.tls_key)
            tls = (Path(config.tls_cert).read_bytes(), Path(config.tls_key).read_bytes())
        if config.http_fd is None:
            sock = bind_socket(config.host, config.http_port)
        else:  # the supervisor's socket: every worker accepts from its one queue (supervisor.py)
            sock = socket.socket(fileno=config.http_fd)
        self.http_port = sock.getsockname()[1]
        if config.grpc_port is not None:
            from wasinfer.serving.grpc_api import build_grpc_server

            try:
                server, self.grpc_port = build_grpc_server(
                    self.manager, self.metrics, _address(config.host, config.grpc_port),
                    workers=GRPC_WORKERS,
                    max_message_bytes=config.max_body_bytes, cache_dir=config.cache_dir, tokens=self.tokens, tls=tls,
                    not_ready=self.not_ready, handshake_timeout=config.header_timeout_seconds,
                    idle_timeout=config.idle_timeout_seconds, max_calls_per_client=config.max_connections_per_client,
                    reuse_port=config.grpc_reuse_port)
            except OSError:
                sock.close()
                raise
            server.start()
            self._grpc = server
        # No lifespan, access log, Server header or X-Forwarded-* rewriting: nothing here uses them, and
        # each is work on every request (--access-log is the app's own). No logging config of uvicorn's own:
        # its lines go to the root logger, in the server's format (logs.py). The TLS context applies to
        # the pre-bound socket too (uvicorn passes it to create_server). httptools, with the header deadline
        # and connection cap of connections.py.
        limits = ConnectionLimits(header_timeout=config.header_timeout_seconds or None,
                                  max_per_client=config.max_connections_per_client)
        app = self.app if not config.worker_tag else WorkerTagged(self.app, config.worker_tag)
        # ws="none": the API has no WebSocket route, and uvicorn's default imports the websockets package (~2 MiB
        # of the server's resident memory, docs/performance.md "Install size and server memory")
        uv_config = uvicorn.Config(app, http=guarded_protocol(limits, self.draining), ws="none", lifespan="off",
                                   access_log=False, proxy_headers=False, log_level="warning", log_config=None,
                                   timeout_keep_alive=math.ceil(config.idle_timeout_seconds),
                                   timeout_graceful_shutdown=math.ceil(config.grace()), server_header=False,
                                   ssl_certfile=config.tls_cert, ssl_keyfile=config.tls_key)
        self._uvicorn = uvicorn.Server(uv_config)
        loop_factory = uv_config.get_loop_factory()

        def serve() -> None:
            loop = loop_factory() if loop_factory is not None else asyncio.new_event_loop()
            try:
                assert self._uvicorn is not None
                loop.run_until_complete(self._uvicorn.serve(sockets=[sock]))
                # Requests cancelled when the grace period ran out send their 503 in their next step: let them.
                pending = asyncio.all_tasks(loop)
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=1))
            finally:
                loop.close()

        self._thread = threading.Thread(target=serve, name="wasinfer-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._uvicorn.started:
            if not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the HTTP server stopped while starting (see the log above)")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the HTTP server did not start within {timeout} s")
            time.sleep(0.005)

    def stop(self, grace: float | None = None, drain_delay: float | None = None, keep_ready: bool = False) -> None:
        """Drain, then stop: see the module's docstring. `grace`: seconds for the requests in flight (default:
        the config's grace()); REST and gRPC drain side by side, so the whole stop takes at most the drain
        delay plus `grace` (and a second). `drain_delay` (default: the config's) and `keep_ready` are for a
        worker that a rolling restart retires while the others serve on: readiness stays as it is, and for the
        delay it keeps answering, each answer closing its connection, so keep-alive clients move to another."""
        grace = self.config.grace() if grace is None else grace
        drain_delay = self.config.drain_delay_seconds if drain_delay is None else drain_delay
        self._ready_while_draining = keep_ready
        self.draining.set()
        if drain_delay > 0 and self._thread is not None:
            log.info("draining: %s for %g s before new connections are refused",
                     "answers close their connections" if keep_ready else "readiness answers 503", drain_delay)
            time.sleep(drain_delay)
        if self.updates is not None:
            self.updates.stop()
        if self.poller is not None:
            self.poller.stop()
        ends = time.monotonic() + grace + 1
        grpc_stopped = None
        if self._grpc is not None:
            grpc_stopped = self._grpc.stop(grace)  # refuses new calls now, cancels what still runs after `grace`
            self._grpc = None
        if self._uvicorn is not None:
            self._uvicorn.config.timeout_graceful_shutdown = math.ceil(grace)  # read when its shutdown starts
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(max(0.0, ends - time.monotonic()))
            self._thread = None
        if grpc_stopped is not None:
            grpc_stopped.wait(max(0.0, ends - time.monotonic()))
        self.load_executor.shutdown(wait=False, cancel_futures=True)
        self.app.parse_executor.shutdown(wait=False, cancel_futures=True)
        if self.guests is not None:
            self.guests.close()
        self.metrics.unshare()  # the last counts, for the node's /metrics after this worker exits

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
