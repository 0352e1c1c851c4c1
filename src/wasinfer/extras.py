"""What each optional dependency group brings, so that a missing one is named with the command that installs it.

`pip install wasinfer` is the runtime alone: numpy, wasmtime and rich, enough to load and run compiled modules
(`wasinfer run`, `info`, `run-guest`, `wasinfer.load`). The rest comes in extras (pyproject.toml), and a command
that needs one says which, instead of a traceback ending in "No module named 'onnx'":

    compiler  onnx, onnxruntime, tflite     convert, validate, wasinfer.compile, ONNX models served as they are
    registry  httpx, cryptography, regopy, PyYAML, model-signing (and pyOpenSSL, which it imports)
                                            push, pull, sign, models, keys, policy, package, deploy
    serve     the registry extra + uvicorn, orjson, grpcio, protobuf, prometheus-client, kubernetes
                                            wasinfer serve (kubernetes: --desired-state k8s://)
    litert    ai-edge-litert                .tflite models served as they are (by LiteRT)
    demo      the compiler and serve extras + scikit-learn, skl2onnx
                                            wasinfer demo, make demo
    all       every one of them
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# top-level module → the extra that installs it
EXTRA_OF_MODULE = {
    "onnx": "compiler", "onnxruntime": "compiler", "tflite": "compiler",
    "httpx": "registry", "cryptography": "registry", "regopy": "registry", "yaml": "registry",
    "uvicorn": "serve", "orjson": "serve", "grpc": "serve", "grpc_reflection": "serve", "google": "serve",
    "prometheus_client": "serve", "kubernetes": "serve",
    "ai_edge_litert": "litert",
    "sklearn": "demo", "skl2onnx": "demo",
    "model_signing": "registry", "OpenSSL": "registry",  # OpenSSF model signing (pyOpenSSL: its import)
}


def missing_extra(exc: ModuleNotFoundError, extra: str | None = None) -> str | None:
    """What to say for an import that failed because an extra is not installed: `extra` where the caller knows
    the group its whole feature needs (`serve` for `wasinfer serve`, though the module missing first may be
    PyYAML, which `registry` also brings), else the module's own. None for any other failure (a module of no
    extra missing is a broken install, whose traceback is the useful answer)."""
    top = (exc.name or "").partition(".")[0]
    if top not in EXTRA_OF_MODULE:
        return None
    extra = extra or EXTRA_OF_MODULE[top]
    return f"this needs the {extra!r} extra, which is not installed (no module {top!r}): " \
           f"pip install 'wasinfer[{extra}]'"


@contextmanager
def extra_needed(extra: str, what: str, error: type[Exception] = ImportError) -> Iterator[None]:
    """Imports an extra brings, inside the block: where one is missing, `error("WHAT: this needs the 'EXTRA'
    extra ...")` instead of the bare ModuleNotFoundError (any other failure to import goes through as it is)."""
    try:
        yield
    except ModuleNotFoundError as exc:
        message = missing_extra(exc, extra)
        if message is None:
            raise
        if issubclass(error, ImportError):
            raise error(f"{what}: {message}", name=exc.name) from exc
        raise error(f"{what}: {message}") from None
