"""Errors a request can end in, each carrying its REST status, gRPC code and metrics outcome.

Handlers raise these and the two front ends translate them the same way, so a bad tensor is
a 400 over REST exactly when it is INVALID_ARGUMENT over gRPC.
"""

from __future__ import annotations

import grpc


class ServingError(Exception):
    """A request the server answers with an error instead of a result."""

    http_status = 500
    grpc_code = grpc.StatusCode.INTERNAL
    outcome = "error"  # the `outcome` label of wasinfer_requests_total

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(ServingError):
    """Malformed body, or tensors that do not match the model."""

    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    outcome = "bad_request"


class NotFound(ServingError):
    """No such model, version or route."""

    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND
    outcome = "not_found"


class MethodNotAllowed(ServingError):
    http_status = 405
    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    outcome = "bad_request"

    def __init__(self, method: str, allowed: str):
        super().__init__(f"method {method} is not allowed here; use {allowed}")
        self.allowed = allowed


class TooLarge(ServingError):
    """The body is over --max-body-bytes."""

    http_status = 413
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    outcome = "too_large"


class Unavailable(ServingError):
    """The model exists but cannot take requests: unloaded, or its load failed."""

    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE
    outcome = "unavailable"


class Internal(ServingError):
    """The model or the server failed on a valid request."""
