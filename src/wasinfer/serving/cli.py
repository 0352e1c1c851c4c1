"""`wasinfer serve`: start the server, say where it listens, run until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from wasinfer.serving.desired import DesiredState
    from wasinfer.serving.server import ServerConfig
    from wasinfer.serving.updater import CanaryPolicy, Fetched

EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from wasinfer.serving.breaker import BreakerSettings

    _add_security_and_log_arguments(parser)  # argument groups: listed after the options below in --help
    _add_connection_arguments(parser)
    _add_guest_arguments(parser)
    _add_control_arguments(parser)
    parser.add_argument("--model-repository", metavar="DIR",
                        help="models as DIR/<name>/<version>/model.wasm (or model.onnx, model.tflite); default: "
                        "the built-in digits demo, compiled into $WASINFER_HOME/repository")
    parser.add_argument("--model-name", metavar="NAME",
                        help="serve a --model-repository DIR that holds one model's files itself (DIR/model.wasm, "
                        "model.onnx or model.tflite, and its config.pbtxt or config.json) as model NAME, version 1: "
                        "KServe's model directory (/mnt/models, the files of the InferenceService's storageUri), "
                        "with the InferenceService's name. A DIR laid out as a repository is served as it is")
    parser.add_argument("--desired-state", metavar="PATH", default=os.environ.get("WASINFER_DESIRED_STATE"),
                        help="serve one model kept at the version a config says, in the seed's ConfigMap keys "
                        "(model_path, model_version, model_update_interval, cache_enabled; MODEL_PATH in the "
                        "environment wins): a mounted ConfigMap directory, a ConfigMap manifest, a YAML/JSON "
                        "mapping, or k8s://NAMESPACE/CONFIGMAP: the ConfigMap watched through the Kubernetes API "
                        "(a change arrives within a second, not at the kubelet's next volume sync; the pod's service "
                        "account, else $KUBECONFIG or ~/.kube/config). Changes apply without a restart; a version "
                        "that fails its warm-up is refused "
                        "and the old one keeps serving. Also $WASINFER_DESIRED_STATE")
    canary = parser.add_argument_group(
        "canary (with --desired-state)", "A new version first takes a share of the default-version traffic for a "
        "bake window; it is rolled back at once if it fails more than the allowed share of its requests (500s and "
        "deadlines) or its p99 exceeds a multiple of the serving version's, and promoted when the window holds.")
    canary.add_argument("--canary-percent", type=float, default=0.0, metavar="P",
                        help="share of the traffic for a new version, 0-100 (default 0: swap at once)")
    canary.add_argument("--canary-bake-seconds", type=float, default=60.0, metavar="S", help="default 60")
    canary.add_argument("--canary-max-error-rate", type=float, default=0.01, metavar="R",
                        help="largest share of failed requests, 0-1 (default 0.01)")
    canary.add_argument("--canary-max-p99-factor", type=float, default=2.0, metavar="F",
                        help="largest p99 as a multiple of the serving version's (default 2)")
    parser.add_argument("--workers", default="1", metavar="N|auto",
                        help="worker processes, each a whole server on the same ports (REST: one shared listening "
                        "socket; gRPC: SO_REUSEPORT), for the cores one process cannot use: auto is one per core. "
                        "The compiled-code cache, one desired-state fetch per version, /metrics and "
                        "--memory-budget-mb are the node's; SIGHUP restarts the workers one at a time. Default 1 "
                        "(one process, no supervisor). See docs/serving.md")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, default=8000, metavar="PORT",
                        help="REST port (default 8000; 0 picks a free one)")
    parser.add_argument("--grpc-port", type=int, default=8001, metavar="PORT",
                        help="gRPC port (default 8001; 0 picks a free one; -1 turns gRPC off)")
    parser.add_argument("--max-body-bytes", type=int, default=64 * 1024 * 1024, metavar="N",
                        help="largest request body (REST) or message (gRPC) accepted; larger get 413 / "
                        "RESOURCE_EXHAUSTED (default 64 MiB)")
    parser.add_argument("--pool-size", type=int, default=0, metavar="N",
                        help="instances per model, i.e. concurrent inferences per model: its own execution slots, "
                        "so a slow or hostile model never takes another's (default: one per core; a model's "
                        "config.json \"instance_count\" or config.pbtxt instance_group overrides it). See "
                        "docs/serving.md")
    parser.add_argument("--batch-delay-us", type=int, default=None, metavar="US",
                        help="turn on dynamic batching for every model that can batch: a batch runs when it is "
                        "full or its oldest request has waited US microseconds (0: batch only what queued while "
                        "the instances were busy). Default: off, except for models whose config.json or "
                        "config.pbtxt has dynamic_batching; never for one whose max_batch_size is 0")
    parser.add_argument("--max-concurrency", type=int, default=0, metavar="N",
                        help="requests in flight per model (running or queued); more get 429 / "
                        "RESOURCE_EXHAUSTED (default 0: unlimited; config.json \"max_concurrency\" overrides)")
    parser.add_argument("--max-tensor-elements", type=int, default=1 << 24, metavar="N",
                        help="largest input tensor, in elements; bigger ones get 400 (default 16777216)")
    parser.add_argument("--max-json-values", type=int, default=1 << 20, metavar="N",
                        help="most values (counted by their commas, before parsing) in a REST request's JSON; more "
                        "get 413. Parsing makes a Python object of every value and holds the interpreter while it "
                        "runs, so large tensors belong in the binary tensor data extension (default 1048576)")
    parser.add_argument("--memory-budget-mb", type=int, default=0, metavar="MB",
                        help="memory for loaded models; loading one over it evicts the least recently used "
                        "(their next request reloads them). With --workers, the node's, split evenly between them. "
                        "Default 0: no budget")
    parser.add_argument("--deadline-ms", type=int, default=30_000, metavar="MS",
                        help="every request's deadline, from its arrival, not counting its model's cold start "
                        "(gRPC: the client's own deadline when sooner): a request still waiting for its model's "
                        "instances then gets 504 / DEADLINE_EXCEEDED without running, and a wasm run past it is "
                        "stopped (only that request fails). Default 30000; 0 turns it off, which also compiles "
                        "models without the interruption checks (faster on compute-heavy models). ONNX Runtime "
                        "and TFLite runs cannot be stopped: the deadline bounds only their wait")
    parser.add_argument("--demote-after-ms", type=float, default=10.0, metavar="MS",
                        help="a run that has used this much CPU time drops to the lowest CPU priority (nice 19), "
                        "so that shorter runs of every model, and health checks, go first while it finishes; on "
                        "an otherwise idle machine it runs as fast as before. Default 10; 0: never "
                        "(docs/serving.md)")
    parser.add_argument("--fault-breaker", default=BreakerSettings().shown(), metavar="SPEC",
                        help="refuse a model's requests without running them (503 / UNAVAILABLE naming the faults, "
                        "answered after HOLD-MS so that clients retrying in a loop slow down) for OPEN-MS once "
                        "FAULTS of its last RUNS runs trapped, exhausted their stack, hit their memory cap or ran "
                        "past their deadline; then let one trial request through, which closes the breaker if it "
                        "succeeds and opens it again for twice as long (up to MAX-OPEN-MS) if it faults. SPEC: "
                        "'off', or any of faults=FAULTS,runs=RUNS,open-ms=OPEN-MS,max-open-ms=MAX-OPEN-MS,"
                        "hold-ms=HOLD-MS (default "
                        f"{BreakerSettings().shown()}; config.json \"fault_breaker\" overrides). See docs/serving.md")
    parser.add_argument("--instance-memory-mb", type=int, default=1024, metavar="MB",
                        help="most linear memory one wasm model instance may have: a model that needs more fails "
                        "to load, one that grows past it fails its request (500 / INTERNAL). Default 1024; 0: no "
                        "cap beyond WebAssembly's own 4 GiB")


def _add_security_and_log_arguments(parser: argparse.ArgumentParser) -> None:
    from wasinfer.serving.auth import INFERENCE_TOKEN_ENV, MANAGEMENT_TOKEN_ENV
    from wasinfer.serving.logs import FORMATS, LEVELS

    security = parser.add_argument_group(
        "security", "Bearer tokens (read from files or the environment, never from the command line, where ps "
        "shows them; a file wins over the variable) and TLS. A missing or wrong token gets 401 / UNAUTHENTICATED. "
        "Health (/v2/health/live, /v2/health/ready, gRPC ServerLive/ServerReady), /metrics and /v2/openapi.json "
        "stay open whatever is set; a token that is not set leaves its endpoints open.")
    security.add_argument("--inference-token-file", metavar="FILE",
                          help="require 'Authorization: Bearer <token>' (gRPC: authorization metadata) with the "
                          "token in FILE for inference and metadata: /v2, /v2/models/... (infer, metadata, "
                          f"ready); also ${INFERENCE_TOKEN_ENV}")
    security.add_argument("--management-token-file", metavar="FILE",
                          help="the same for the model repository API: /v2/repository/... (index, load, unload); "
                          f"also ${MANAGEMENT_TOKEN_ENV}")
    security.add_argument("--tls-cert", metavar="FILE", help="serve REST (https) and gRPC over TLS with this PEM "
                          "certificate chain (needs --tls-key)")
    security.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    logs = parser.add_argument_group("logging", "Logs go to stderr. Refused requests log at info, failed ones at "
                                     "warning/error, each with its request id (the client's X-Request-ID / "
                                     "x-request-id, else the request's \"id\", else a new one; answers carry it).")
    logs.add_argument("--log-format", choices=FORMATS, default="text",
                      help="text lines, or one JSON object per line (default text)")
    logs.add_argument("--log-level", choices=LEVELS, default="info", help="default info")
    logs.add_argument("--access-log", action="store_true",
                      help="one line per request (method, path, status, duration, request id); off by default, "
                      "as it costs more than a small model's inference")


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    connections = parser.add_argument_group(
        "connections and shutdown", "SIGTERM (or Ctrl+C) drains the server: readiness (/v2/health/ready, gRPC "
        "ServerReady) answers 503 / not ready at once; after --drain-delay-s both ports refuse new connections "
        "and calls, and the requests in flight get the grace period to finish before the process exits (5 s "
        "later, with code 1, if a call that cannot be interrupted is still running).")
    connections.add_argument("--shutdown-grace-s", type=float, default=None, metavar="S",
                             help="longest the requests in flight may take to finish on shutdown (default: "
                             "--deadline-ms plus 5 s, i.e. 35; 30 with no deadline)")
    connections.add_argument("--drain-delay-s", type=float, default=0.0, metavar="S",
                             help="on shutdown, keep serving this long with readiness answering 503, so that a "
                             "load balancer polling it stops sending traffic first (default 0)")
    connections.add_argument("--header-timeout-s", type=float, default=10.0, metavar="S",
                             help="a REST connection must send a request's headers within S seconds of opening "
                             "(or of the request's first byte), and its body may not pause for S seconds, else it "
                             "gets 408 and is closed; also gRPC's handshake timeout (default 10; 0: no limit)")
    connections.add_argument("--idle-timeout-s", type=float, default=5.0, metavar="S",
                             help="close a connection idle this long between requests (REST keep-alive; gRPC: "
                             "no call in flight; default 5)")
    connections.add_argument("--max-connections-per-client", type=int, default=0, metavar="N",
                             help="open REST connections one client address may hold (more are answered 429 and "
                             "closed), and gRPC calls in progress (more get RESOURCE_EXHAUSTED); default 0: no cap; "
                             "behind a proxy every client has the proxy's address")


def _add_control_arguments(parser: argparse.ArgumentParser) -> None:
    from wasinfer.serving.control import DEFAULT_MODE, DEFAULT_POLL_SECONDS, MODES

    control = parser.add_argument_group(
        "model control", "When models load, as Triton's options: lazy (the default here) loads a model on its first "
        "request; none (Triton's default) loads every model at start-up, before the ports open; explicit loads the "
        "--load-model names at start-up and the rest through the repository API; poll is none, then follows the "
        "repository on disk. Outside lazy a request never loads a model (503 until it is loaded), and a model "
        "that fails its start-up load stops the start (exit 2 naming it) unless --exit-on-error false. "
        "See docs/serving.md")
    control.add_argument("--model-control-mode", choices=MODES, default=DEFAULT_MODE,
                         help=f"default {DEFAULT_MODE}")
    control.add_argument("--load-model", action="append", default=[], metavar="NAME",
                         help="with --model-control-mode explicit: load NAME at start-up ('*': every model); "
                         "repeatable")
    control.add_argument("--exit-on-error", type=_boolean, default=True, metavar="true|false",
                         help="exit (code 2) when a model fails its start-up load (default true); false: start "
                         "anyway, the model unavailable with its reason in the repository index")
    control.add_argument("--repository-poll-secs", type=float, default=DEFAULT_POLL_SECONDS, metavar="S",
                         help=f"with --model-control-mode poll: how often the repository is read (default "
                         f"{DEFAULT_POLL_SECONDS:g})")


def _boolean(value: str) -> bool:
    """Triton's spelling of a flag's value: --exit-on-error=false."""
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not true or false")


def _add_guest_arguments(parser: argparse.ArgumentParser) -> None:
    guests = parser.add_argument_group(
        "WASI-NN guests", "WasmEdge-style WASI-NN programs, one fresh instance per request: POST "
        "/v2/guests/NAME/run with the program's stdin as the body answers its stdout (application/octet-stream) "
        "and its exit code in X-Guest-Exit-Code; 422 if it exits with another code than 0, 504 past "
        "--guest-timeout-s, 500 if it traps. See docs/wasi-nn.md")
    guests.add_argument("--guest", action="append", default=[], metavar="'NAME=APP.wasm [ARG...]'",
                        help="serve the WASI command APP.wasm as NAME, with the arguments after it (split as a shell "
                        "would) as its command line, e.g. --guest 'classify=app.wasm --top 5' (repeatable)")
    guests.add_argument("--nn-preload", action="append", default=[], metavar="ALIAS:ENCODING:TARGET:PATH",
                        help="a model every guest may load with load_by_name(ALIAS), as WasmEdge's --nn-preload "
                        "(ENCODING onnx, tensorflowlite, autodetect or wasinfer; TARGET cpu, gpu, auto); repeatable")
    guests.add_argument("--guest-memory-mb", type=int, default=1024, metavar="MB",
                        help="cap on each guest's linear memory (default 1024; 0: WebAssembly's own 4 GiB)")
    guests.add_argument("--guest-timeout-s", type=float, default=30.0, metavar="S",
                        help="longest a guest may run (default 30; 0: no limit)")


def _guest_config(args: argparse.Namespace, workers: int) -> Any:
    """The GuestConfig of the guest flags (None without --guest); ValueError says what is wrong."""
    from wasinfer.runtime.wasi_nn import compile_guest, parse_preloads
    from wasinfer.serving.guests import GuestConfig

    if not args.guest:
        if args.nn_preload:
            raise ValueError("--nn-preload is for guests: give one with --guest NAME=APP.wasm")
        return None
    if args.guest_memory_mb < 0 or args.guest_timeout_s < 0:
        raise ValueError("--guest-memory-mb and --guest-timeout-s must not be negative")
    guests: list[tuple[str, Path]] = []
    arguments: dict[str, tuple[str, ...]] = {}
    for spec in args.guest:
        try:
            first, *rest = shlex.split(spec) or [""]
        except ValueError as exc:  # an unclosed quote
            raise ValueError(f"--guest {spec!r}: {exc}") from None
        name, sep, path = first.partition("=")
        if not sep or not name or not path or "/" in name:
            raise ValueError(f"--guest {spec!r}: expected NAME=APP.wasm [ARG...] (NAME without '/')")
        if not Path(path).is_file():
            raise ValueError(f"--guest {name}: {path}: no such file")
        if name in dict(guests):
            raise ValueError(f"--guest {name}: given twice")
        compile_guest(Path(path))  # GuestError, a ValueError, for a module that cannot run here
        guests.append((name, Path(path)))
        arguments[name] = tuple(rest)
    memory = args.guest_memory_mb << 20 if args.guest_memory_mb else None
    return GuestConfig(tuple(guests), parse_preloads(args.nn_preload), memory, args.guest_timeout_s or None,
                       workers=workers, arguments=arguments)


def _security_config(args: argparse.Namespace, errors: Console) -> dict[str, Any] | None:
    """The ServerConfig fields of the security flags, or None (after saying why) when they cannot be used."""
    from wasinfer.serving.auth import INFERENCE_TOKEN_ENV, MANAGEMENT_TOKEN_ENV, Tokens, check_tls_files, read_token

    try:
        inference = read_token(args.inference_token_file, INFERENCE_TOKEN_ENV)
        management = read_token(args.management_token_file, MANAGEMENT_TOKEN_ENV)
        Tokens.of(inference, management)
        if (args.tls_cert is None) != (args.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if args.tls_cert is not None:
            check_tls_files(args.tls_cert, args.tls_key)
    except ValueError as exc:
        errors.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        return None
    return {"inference_token": inference, "management_token": management, "access_log": args.access_log,
            "tls_cert": Path(args.tls_cert) if args.tls_cert else None,
            "tls_key": Path(args.tls_key) if args.tls_key else None}


def run(args: argparse.Namespace, home: Path, console: Console, errors: Console) -> int:
    from wasinfer.serving.breaker import BreakerConfigError, BreakerSettings
    from wasinfer.serving.control import StartupError
    from wasinfer.serving.demo import prepare_demo_repository
    from wasinfer.serving.desired import DesiredStateError, desired_source
    from wasinfer.serving.server import Server, ServerConfig

    for flag, value, minimum in (("--batch-delay-us", args.batch_delay_us, 0), ("--max-concurrency",
                                 args.max_concurrency, 0), ("--max-tensor-elements", args.max_tensor_elements, 1),
                                 ("--max-json-values", args.max_json_values, 1),
                                 ("--memory-budget-mb", args.memory_budget_mb, 0), ("--deadline-ms",
                                 args.deadline_ms, 0), ("--demote-after-ms", args.demote_after_ms, 0),
                                 ("--instance-memory-mb", args.instance_memory_mb, 0),
                                 ("--shutdown-grace-s", args.shutdown_grace_s, 0), ("--drain-delay-s",
                                 args.drain_delay_s, 0), ("--header-timeout-s", args.header_timeout_s, 0),
                                 ("--idle-timeout-s", args.idle_timeout_s, 1),
                                 ("--max-connections-per-client", args.max_connections_per_client, 0)):
        if value is not None and value < minimum:
            errors.print(f"[red]error:[/] {flag} must be at least {minimum}, got {value}", markup=True)
            return EXIT_BAD_INPUT
    if args.model_name and not args.model_repository:
        errors.print("[red]error:[/] --model-name names the model of a --model-repository DIR that holds one model's "
                     "files (KServe's /mnt/models): give that DIR", markup=True)
        return EXIT_BAD_INPUT
    if args.load_model and args.model_control_mode != "explicit":
        errors.print("[red]error:[/] --load-model needs --model-control-mode explicit", markup=True)
        return EXIT_BAD_INPUT
    if args.memory_budget_mb and args.model_control_mode != "lazy":
        errors.print("[red]error:[/] --memory-budget-mb evicts models that their next request loads again: it needs "
                     "--model-control-mode lazy", markup=True)
        return EXIT_BAD_INPUT
    try:
        fault_breaker = BreakerSettings.parse(args.fault_breaker)
    except BreakerConfigError as exc:
        errors.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    if args.repository_poll_secs <= 0:
        errors.print("[red]error:[/] --repository-poll-secs must be more than 0", markup=True)
        return EXIT_BAD_INPUT
    secured = _security_config(args, errors)
    if secured is None:
        return EXIT_BAD_INPUT
    from wasinfer.serving.server import default_pool_size
    from wasinfer.serving.supervisor import workers_for

    try:
        workers = workers_for(args.workers)
        guests = _guest_config(args, args.pool_size or default_pool_size())
    except ValueError as exc:
        from rich.markup import escape

        errors.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    from wasinfer.serving.logs import configure as configure_logs

    configure_logs(args.log_format, args.log_level)
    example = None
    if not 0 <= args.canary_percent <= 100 or args.canary_bake_seconds < 0 or not 0 <= args.canary_max_error_rate <= 1 \
            or args.canary_max_p99_factor <= 0:
        errors.print("[red]error:[/] canary settings out of range: --canary-percent 0-100, --canary-bake-seconds >= 0, "
                     "--canary-max-error-rate 0-1, --canary-max-p99-factor > 0", markup=True)
        return EXIT_BAD_INPUT
    try:
        desired = desired_source(args.desired_state) if args.desired_state else None
    except DesiredStateError as exc:
        from rich.markup import escape

        errors.print(f"[red]error:[/] --desired-state {escape(str(exc))}", markup=True)
        return EXIT_BAD_INPUT
    if isinstance(desired, Path) and not desired.exists():
        errors.print(f"[red]error:[/] --desired-state {desired}: no such file or directory", markup=True)
        return EXIT_BAD_INPUT
    if desired is not None and not args.model_repository:  # its versions live beside the demo, not in it
        repository = home / "desired"
        repository.mkdir(parents=True, exist_ok=True)
    elif args.model_repository:
        repository = Path(args.model_repository)
        if not repository.is_dir():
            errors.print(f"[red]error:[/] {repository}: not a directory", markup=True)
            return EXIT_BAD_INPUT
        from wasinfer.serving.repository import holds_model, single_model_repository

        if args.model_name and holds_model(repository):
            try:
                repository = single_model_repository(repository, args.model_name, home / "model-name")
            except ValueError as exc:
                from rich.markup import escape

                errors.print(f"[red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
                return EXIT_BAD_INPUT
    else:
        with console.status("preparing the demo model (trained and compiled on first use)"):
            repository, request, label = prepare_demo_repository(home)
        example = (request, label)
    config = ServerConfig(repository, host=args.host, http_port=args.http_port,
                          grpc_port=None if args.grpc_port < 0 else args.grpc_port,
                          max_body_bytes=args.max_body_bytes, pool_size=args.pool_size, cache_dir=home / "cache",
                          batch_delay_us=args.batch_delay_us, max_concurrency=args.max_concurrency,
                          max_tensor_elements=args.max_tensor_elements, max_json_values=args.max_json_values,
                          memory_budget_bytes=args.memory_budget_mb * 1024 * 1024,
                          deadline_seconds=args.deadline_ms / 1000 if args.deadline_ms else None,
                          demote_after_seconds=args.demote_after_ms / 1000 if args.demote_after_ms else None,
                          fault_breaker=fault_breaker,
                          instance_memory_bytes=args.instance_memory_mb * 1024 * 1024 if args.instance_memory_mb
                          else None, desired_state=desired, fetcher=fetch_desired if desired else None,
                          canary=_canary_policy(args), shutdown_grace_seconds=args.shutdown_grace_s,
                          drain_delay_seconds=args.drain_delay_s, header_timeout_seconds=args.header_timeout_s or None,
                          idle_timeout_seconds=args.idle_timeout_s,
                          max_connections_per_client=args.max_connections_per_client,
                          model_control_mode=args.model_control_mode, load_models=tuple(args.load_model),
                          exit_on_error=args.exit_on_error, repository_poll_seconds=args.repository_poll_secs)
    config = dataclasses.replace(config, **secured, guests=guests)
    if workers > 1:
        return _run_workers(config, workers, args, console, errors, example)
    server = Server(config)
    # Caught from before the ports open: a SIGTERM that comes as soon as the server answers must
    # drain it, not kill the process mid-request.
    stop, restore = catch_stop_signals()
    try:
        server.start()
    except OSError as exc:
        restore()
        errors.print(f"[red]error:[/] cannot listen on {args.host} (REST port {args.http_port}, gRPC port {args.grpc_port}): {' '.join(str(exc).split())}", markup=True, soft_wrap=True)  # noqa: E501
        return EXIT_BAD_INPUT
    except (DesiredStateError, StartupError) as exc:
        restore()
        from rich.markup import escape

        errors.print(f"[red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    console.print(f"wasinfer serving {repository}", markup=False, highlight=False, soft_wrap=True)
    if server.updates is not None:
        status, name = server.updates.updater.status, server.updates.updater.name
        console.print(f"  model {name!r} from {server.updates.watcher.current.model_path}: "
                      + (f"serving {status.label} as version {status.served_as} (repository directory {status.version})"
                         if status.state == "serving"
                         else f"not serving yet: {status.reason}"), markup=False, highlight=False, soft_wrap=True)
    for name, reason in server.load_failures.items():  # --exit-on-error false
        console.print(f"  model {name!r} failed to load (unavailable): {reason}", markup=False, highlight=False,
                      soft_wrap=True)
    _announce(config, args, server.http_port, server.grpc_port, console, example,
              secured["inference_token"] is not None)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        restore()
    server.stop()
    exit_even_if_work_is_stuck(errors)
    return 0


def _announce(config: ServerConfig, args: argparse.Namespace, http_port: int, grpc_port: int, console: Console,
              example: tuple[Any, int] | None, token_env: bool) -> None:
    """Where the server listens (and, for the demo, a request to try), then how to stop it."""
    from wasinfer.serving.demo import DEMO_MODEL, curl_command

    guests = config.guests
    authority = f"[{args.host}]" if ":" in args.host else args.host
    scheme = "https" if config.tls_cert else "http"
    console.print(f"  REST  {scheme}://{authority}:{http_port}/v2  (OpenAPI: /v2/openapi.json, metrics: "
                  "/metrics)", markup=False, highlight=False, soft_wrap=True)
    if guests is not None:
        console.print(f"  WASI-NN guests: POST {scheme}://{authority}:{http_port}/v2/guests/{{"
                      f"{','.join(name for name, _ in guests.guests)}}}/run", markup=False, highlight=False,
                      soft_wrap=True)
    if config.grpc_port is not None:
        console.print(f"  gRPC  {authority}:{grpc_port}  (inference.GRPCInferenceService"
                      f"{', TLS' if config.tls_cert else ''})", markup=False,
                      highlight=False, soft_wrap=True)
    if example is not None:
        request, label = example
        console.print(f"\nTry it (a held-out handwritten {label}; the answer's \"data\" is the predicted digit):",
                      markup=False, highlight=False, soft_wrap=True)
        print(curl_command(args.host, http_port, DEMO_MODEL, request, cacert=args.tls_cert,
                           token_file=args.inference_token_file, token_env=token_env), flush=True)
    console.print("Press Ctrl+C to stop.", markup=False, highlight=False, soft_wrap=True)


def _run_workers(config: ServerConfig, workers: int, args: argparse.Namespace, console: Console, errors: Console,
                 example: tuple[Any, int] | None) -> int:
    """--workers N: the supervisor (supervisor.py) until SIGINT/SIGTERM; SIGHUP restarts the workers in turn."""
    from rich.markup import escape

    from wasinfer.serving.supervisor import StartupFailed, Supervisor

    supervisor = Supervisor(config, workers, args.log_format, args.log_level)
    stop, restore = catch_stop_signals()
    hup = threading.Event()
    previous_hup = signal.signal(signal.SIGHUP, lambda signum, frame: hup.set())
    try:
        try:
            supervisor.start()
        except OSError as exc:
            errors.print(f"[red]error:[/] cannot listen on {args.host} (REST port {args.http_port}, gRPC port {args.grpc_port}): {' '.join(str(exc).split())}", markup=True, soft_wrap=True)  # noqa: E501
            return EXIT_BAD_INPUT
        except StartupFailed as exc:  # the worker has said why on stderr
            errors.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            return exc.code if exc.code > 0 else 1
        console.print(f"wasinfer serving {config.model_repository} with {workers} worker processes (pids "
                      f"{' '.join(map(str, supervisor.pids))}; SIGHUP restarts them one at a time)", markup=False,
                      highlight=False, soft_wrap=True)
        _announce(config, args, supervisor.http_port, supervisor.grpc_port, console, example,
                  config.inference_token is not None)
        while not stop.wait(0.5):
            if hup.is_set():
                hup.clear()
                threading.Thread(target=supervisor.rolling_restart, name="wasinfer-rolling-restart",
                                 daemon=True).start()
    finally:
        restore()
        signal.signal(signal.SIGHUP, previous_hup)
    return supervisor.stop()


STUCK_EXIT_SECONDS = 5.0


def exit_even_if_work_is_stuck(errors: Console) -> None:
    """Python waits for worker threads before it exits, and a call that cannot be interrupted (ONNX Runtime,
    a wasm model with --deadline-ms 0) may never return: past the grace period the server is done, so a daemon
    thread ends the process STUCK_EXIT_SECONDS later if the exit is still waiting then (exit code 1)."""

    def force() -> None:
        time.sleep(STUCK_EXIT_SECONDS)
        errors.print(f"[red]error:[/] work still running {STUCK_EXIT_SECONDS:g} s after the shutdown's grace period "
                     "(a model call that cannot be interrupted); exiting without it", markup=True)
        logging.shutdown()
        os._exit(1)

    threading.Thread(target=force, name="wasinfer-exit", daemon=True).start()


def catch_stop_signals() -> tuple[threading.Event, Callable[[], None]]:
    """SIGINT and SIGTERM set the event from now on; the callable puts the previous handlers back."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return stop, restore


def fetch_desired(state: DesiredState) -> Fetched:
    """A file path is read as it is; anything else is a reference, pulled and admitted by the registry."""
    from wasinfer.registry.artifact import sha256_digest
    from wasinfer.serving.updater import Fetched, UpdateError, fetch_file

    path = state.model_path
    if path.startswith(("/", "./", "../")) or path.endswith(".wasm"):
        return fetch_file(state)
    from wasinfer.registry.fetch import fetch_artifact

    try:
        artifact = fetch_artifact(path, state.model_version)
    except Exception as exc:  # a registry outage, a refusal, a missing version: the serving version stays
        raise UpdateError(f"{path}@{state.model_version or 'latest'}: {exc}") from None
    served = state.model_version or artifact.version
    return Fetched(artifact.wasm, sha256_digest(artifact.wasm), served, served)


def _canary_policy(args: argparse.Namespace) -> CanaryPolicy | None:
    from wasinfer.serving.updater import CanaryPolicy

    if not args.canary_percent:
        return None
    return CanaryPolicy(percent=args.canary_percent, bake_seconds=args.canary_bake_seconds,
                        max_error_rate=args.canary_max_error_rate, max_p99_factor=args.canary_max_p99_factor)

