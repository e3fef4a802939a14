"""Errors of the SearchTuner service as the SDK raises them, whichever transport carried them.

The service reports an error as the name of the exception its executor raised and a message
that says what to fix; over HTTP as ``{"error": <name>, "detail": <message>}`` with a status,
over gRPC as the response's error status. Both become one :class:`ServiceError` subclass,
chosen by the HTTP status (or, over gRPC, by the status the REST API gives that name).
"""

from __future__ import annotations

from typing import Any

from searchtuner.errors import SearchTunerError

STATUS_OF_ERROR: dict[str, int] = {
    "InvalidRequest": 400,
    "ConfigError": 400,
    "DataError": 400,
    "InvalidKeyError": 400,
    "ValidationError": 400,
    "CheckpointError": 400,
    "RunIsLive": 409,
    "InvalidTransition": 409,
    "NotFound": 404,
    "RunNotFound": 404,
    "DatasetNotFound": 404,
    "UploadNotFound": 404,
    "ModelNotFound": 404,
    "TooManyUploads": 429,
    "TooManyRuns": 429,
    "TooLarge": 413,
    "Unauthenticated": 401,
    "StoreUnavailable": 503,
}
"""The HTTP status of each executor error a client caused; the gateway answers with these."""

REQUEST_STATUSES = frozenset({400, 401, 409, 413, 415, 422, 429})
SERVE_HINT = "start it with `searchtuner serve`, or point --url / SEARCHTUNER_URL at a running one"


class ServiceError(SearchTunerError):
    """The service refused or failed a request.

    Attributes:
        status: the HTTP status (over gRPC, the status the REST API gives the same error).
        error: the name of the exception the service raised (e.g. ``RunNotFound``), or ``""``.
        message: the service's message; it says what to fix.
    """

    def __init__(self, message: str, *, status: int = 500, error: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error = error


class NotFoundError(ServiceError):
    """What the request names does not exist (or belongs to another owner): status 404."""


class RequestError(ServiceError):
    """A request to fix: bad values (400), a state that forbids it (409), too large (413)..."""


class UnavailableError(ServiceError):
    """The service cannot be reached, or its store is unavailable (503)."""


class WaitTimeout(SearchTunerError, TimeoutError):
    """A wait for a run ended before the run did; the run itself goes on."""


def service_error(status: int, error: str, message: str) -> ServiceError:
    """The ServiceError subclass for an HTTP status.

    Args:
        status: the HTTP status of the answer.
        error: the exception name the service reported (may be empty).
        message: the service's message.
    """
    text = message or error or f"the service answered with status {status}"
    if status == 404:
        return NotFoundError(text, status=status, error=error)
    if status in REQUEST_STATUSES:
        return RequestError(text, status=status, error=error)
    if status == 503:
        return UnavailableError(text, status=status, error=error)
    return ServiceError(text, status=status, error=error)


def error_from_body(status: int, body: Any, what: str) -> ServiceError:
    """The error an HTTP error answer describes.

    Args:
        status: the answer's HTTP status.
        body: its JSON (``{"error", "detail"}`` from SearchTuner; FastAPI's own answers have
            only ``detail``, a list for invalid request bodies), or its text when not JSON.
        what: the request, e.g. ``"GET http://host/runs/x"``, named when the body does not
            come from SearchTuner's error handler.
    """
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return service_error(status, body["error"], str(body.get("detail") or ""))
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI's validation errors: one entry per bad field
        detail = "; ".join(_validation_item(item) for item in detail)
    text = str(detail).strip() if detail else ""
    message = f"{what} answered {status}" + (f": {text}" if text else "")
    if status == 404:
        message += "; is this URL a SearchTuner service?"
    return service_error(status, "", message)


def _validation_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    location = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
    return f"{location}: {item.get('msg', '')}" if location else str(item.get("msg", ""))


def error_from_status(name: str, args: list[str], description: str) -> ServiceError:
    """The error a gRPC answer's error status carries (the executor's exception).

    Args:
        name: the exception's class name.
        args: the exception's arguments, as text.
        description: the status description (used when there are no arguments).
    """
    message = " ".join(arg for arg in args if arg) or description or name
    return service_error(STATUS_OF_ERROR.get(name, 500), name, message)


def unavailable(url: str, reason: str) -> UnavailableError:
    """The error for a service that cannot be reached at ``url``."""
    return UnavailableError(
        f"cannot reach the SearchTuner service at {url} ({reason}); {SERVE_HINT}", status=503
    )
