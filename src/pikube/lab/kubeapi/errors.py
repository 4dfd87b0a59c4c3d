"""API errors as the Kubernetes API reports them: an HTTP code plus a `Status` object. Pure.

Must not: know about HTTP frameworks; the adapter turns an `ApiError` into a response.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pikube.lab.kubeapi.defaults import Cause
from pikube.lab.kubeapi.resources import ResourceType


class ApiError(Exception):
    """A request the API refuses: `code` and `reason` as the real server would send them."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        name: str = "",
        rt: ResourceType | None = None,
        causes: Sequence[Cause] = (),
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.name = name
        self.rt = rt
        self.causes = tuple(causes)
        self.retry_after_s = retry_after_s

    def status(self) -> dict[str, Any]:
        """The `Status` object for the response body (and for watch ERROR events)."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.rt is not None:
            if self.rt.group:
                details["group"] = self.rt.group
            # Invalid names the kind (`The Service "x" is invalid`), the others the resource.
            details["kind"] = self.rt.kind if self.reason == "Invalid" else self.rt.plural
        if self.causes:
            details["causes"] = [
                {"reason": c.reason, "message": c.message, "field": c.field} for c in self.causes
            ]
        if self.retry_after_s is not None:
            details["retryAfterSeconds"] = self.retry_after_s
        if details:
            body["details"] = details
        return body


def _what(rt: ResourceType) -> str:
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_what(rt)} "{name}" not found', name=name, rt=rt)


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{_what(rt)} "{name}" already exists', name=name, rt=rt)


def conflict(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_what(rt)} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        name=name,
        rt=rt,
    )


def precondition_failed(rt: ResourceType, name: str, what: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_what(rt)} "{name}": {what}',
        name=name,
        rt=rt,
    )


def gone(requested: int, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(rt: ResourceType, name: str, causes: Sequence[Cause]) -> ApiError:
    summary = ", ".join(f"{c.field}: {c.message}" for c in causes)
    if len(causes) > 1:
        summary = f"[{summary}]"  # as apimachinery's aggregate of several errors reads
    message = f'{rt.kind}{"." + rt.group if rt.group else ""} "{name}" is invalid: {summary}'
    return ApiError(422, "Invalid", message, name=name, rt=rt, causes=causes)


def forbidden(rt: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(403, "Forbidden", f'{_what(rt)} "{name}" is forbidden: {why}', name=name, rt=rt)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def not_found_path(path: str) -> ApiError:
    return ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
