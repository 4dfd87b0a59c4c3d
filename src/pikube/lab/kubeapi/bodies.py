"""HTTP bodies of the API stand-in (`server`): request bodies read within the size limit and
decoded (JSON or YAML), and JSON responses with the real server's headers (content type,
`Warning`, `Retry-After`).

Must not: decide API semantics.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

from pikube.lab.kubeapi import errors
from pikube.lab.kubeapi.errors import ApiError

MAX_BODY_BYTES = 3 * 1024 * 1024  # the real server's limit for a request body
JSON = "application/json"
PROTOBUF = "application/vnd.kubernetes.protobuf"


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(body: Any, status: int = 200, content_type: str = JSON) -> web.Response:
    return web.Response(body=dumps(body), status=status, headers={"Content-Type": content_type})


def warned(response: web.Response, warnings: list[str]) -> web.Response:
    """Warnings as the real server sends them (kubectl prints each as `Warning: ...`)."""
    for warning in warnings:
        response.headers.add("Warning", f'299 - "{warning.replace(chr(34), chr(92) + chr(34))}"')
    return response


def error_response(error: ApiError) -> web.Response:
    response = json_response(error.status(), error.code)
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
    return response


async def read_body(
    request: web.Request, limit: int, *, optional: bool = False, yaml_ok: bool = True
) -> Any:
    """The request's body, decoded: 413 beyond `limit` bytes, 400 if empty (unless optional:
    then {}) or malformed, 415 for protobuf. YAML only where `yaml_ok` (apply patches)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    chunks, size = [], 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if optional:
            return {}
        raise errors.bad_request("the request body is empty")
    content_type = (request.headers.get("Content-Type") or JSON).split(";")[0].strip()
    return decode(raw, content_type, yaml_ok=yaml_ok)


def decode(raw: bytes, content_type: str, *, yaml_ok: bool = True) -> Any:
    """A non-empty body of this media type (parameters stripped), as the real server reads it."""
    if content_type == PROTOBUF:
        raise errors.unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types "
            "include: application/json, application/yaml"
        )
    try:
        if content_type.endswith("yaml") and yaml_ok:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        what = "yaml" if content_type.endswith("yaml") else "json"
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise errors.bad_request(
            f"couldn't decode the request body: {what} parse error: {detail}"
        ) from exc


def too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"request entity too large: limit is {limit}")
