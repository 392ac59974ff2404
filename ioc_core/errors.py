"""Typed errors with a stable kebab-case `error_id`; one middleware renders them."""

from __future__ import annotations

from typing import Any


class IocError(Exception):
    """Base of every error the API renders as `{"error_id", "message", "details"}`."""

    status = 400
    error_id = "bad-request"

    def __init__(self, message: str, *, details: Any = None, error_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else {}
        if error_id is not None:
            self.error_id = error_id

    def with_status(self, status: int) -> IocError:
        self.status = status
        return self

    def as_dict(self) -> dict[str, Any]:
        return {"error_id": self.error_id, "message": self.message, "details": self.details}


class ValidationFailed(IocError):
    status = 422
    error_id = "validation-failed"


class MalformedRequest(IocError):
    status = 400
    error_id = "malformed-request"


class Unauthorized(IocError):
    status = 401
    error_id = "unauthorized"


class Forbidden(IocError):
    status = 403
    error_id = "forbidden"


class NotFound(IocError):
    status = 404
    error_id = "not-found"


class Conflict(IocError):
    status = 409
    error_id = "conflict"


class PayloadTooLarge(IocError):
    status = 413
    error_id = "payload-too-large"


class UnsupportedMedia(IocError):
    status = 415
    error_id = "unsupported-media-type"


class ServiceUnavailable(IocError):
    status = 503
    error_id = "service-unavailable"
