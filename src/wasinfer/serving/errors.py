"""Errors a request can end in, each carrying its REST status, gRPC code and metrics outcome.

Handlers raise these and the two front ends translate them the same way, so a bad tensor is
a 400 over REST exactly when it is INVALID_ARGUMENT over gRPC.
"""

from __future__ import annotations


class ServingError(Exception):
    """A request the server answers with an error instead of a result."""

    http_status = 500
    grpc_code = "INTERNAL"  # a grpc.StatusCode name: grpcio is imported only where gRPC is served
    outcome = "error"  # the `outcome` label of wasinfer_requests_total

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(ServingError):
    """Malformed body, or tensors that do not match the model."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"
    outcome = "bad_request"


class NotFound(ServingError):
    """No such model, version or route."""

    http_status = 404
    grpc_code = "NOT_FOUND"
    outcome = "not_found"


class Unauthorized(ServingError):
    """No bearer token, or not the one this endpoint takes (--inference-token-file / --management-token-file).

    A missing and a wrong token are both 401 (RFC 6750: a wrong token is `invalid_token`, not a
    lack of permission), so a client cannot tell which tokens exist from 401 versus 403.
    """

    http_status = 401
    grpc_code = "UNAUTHENTICATED"
    outcome = "unauthorized"

    def __init__(self, message: str, invalid: bool = False):
        super().__init__(message)
        self.invalid = invalid  # a token was given but is not the right one: `error="invalid_token"`


class MethodNotAllowed(ServingError):
    http_status = 405
    grpc_code = "UNIMPLEMENTED"
    outcome = "bad_request"

    def __init__(self, method: str, allowed: str):
        super().__init__(f"method {method} is not allowed here; use {allowed}")
        self.allowed = allowed


class TooLarge(ServingError):
    """The body is over --max-body-bytes."""

    http_status = 413
    grpc_code = "RESOURCE_EXHAUSTED"
    outcome = "too_large"


class Unavailable(ServingError):
    """The model exists but cannot take requests: unloaded, or its load failed."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    outcome = "unavailable"


class DeadlineExceeded(ServingError):
    """The model ran past its per-call deadline (--deadline-ms) and was stopped; other requests are unaffected."""

    http_status = 504
    grpc_code = "DEADLINE_EXCEEDED"
    outcome = "deadline"


class Internal(ServingError):
    """The model or the server failed on a valid request."""


class TooManyRequests(ServingError):
    """The model already has its --max-concurrency requests in flight; the client should retry later."""

    http_status = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    outcome = "overloaded"


class GuestRefused(ServingError):
    """A WASI-NN guest program exited with a non-zero code: it refused or failed on the request's input
    (guests.py). The code goes back in X-Guest-Exit-Code, the end of its stderr in the message."""

    http_status = 422
    grpc_code = "INVALID_ARGUMENT"  # guests are served over REST only
    outcome = "bad_request"

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class NotImplementedExtension(ServingError):
    """A Triton extension wasinfer does not have (trace, logging, shared memory): 501 / UNIMPLEMENTED, naming it."""

    http_status = 501
    grpc_code = "UNIMPLEMENTED"
    outcome = "bad_request"
