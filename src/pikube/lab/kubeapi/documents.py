"""The API stand-in's documents about itself (`server`): discovery (/api, /apis, group and
resource lists, aggregated discovery by Accept header) and OpenAPI (v2 as JSON or protobuf, the
v3 index and one document per group version), as HTTP responses.

The documents themselves are built by the pure `discovery`, `openapi` and `openapi_proto`; this
module only picks one for the path and Accept header.
"""

from __future__ import annotations

from aiohttp import web

from pikube.lab.kubeapi import discovery, errors, openapi, openapi_proto
from pikube.lab.kubeapi.bodies import json_response
from pikube.lab.kubeapi.resources import Registry
from pikube.lab.kubeapi.routing import Target, TargetKind, wants_aggregated


def discovery_response(
    registry: Registry, target: Target, path: str, accept: str | None, advertise_address: str
) -> web.Response:
    """The discovery document at `path` (parsed as `target`); 404 for an unknown one."""
    if target.kind in (TargetKind.CORE_GROUPS, TargetKind.GROUPS):
        core = target.kind is TargetKind.CORE_GROUPS
        aggregated = wants_aggregated(accept)
        if aggregated is not None:
            content_type = (
                discovery.AGGREGATED_V2 if aggregated == "v2" else discovery.AGGREGATED_V2BETA1
            )
            body = discovery.aggregated(registry, core=core, api_version=aggregated)
            return json_response(body, content_type=content_type)
        if core:
            return json_response(discovery.api_versions(advertise_address))
        return json_response(discovery.api_group_list(registry))
    if target.kind is TargetKind.GROUP:
        group = discovery.api_group(registry, target.group)
        if group is None:
            raise errors.not_found_path(path)
        return json_response(group)
    if target.kind is TargetKind.RESOURCES:
        resources = discovery.api_resource_list(registry, target.group, target.version)
        if resources is None:
            raise errors.not_found_path(path)
        return json_response(resources)
    raise errors.not_found_path(path)


def openapi_response(registry: Registry, path: str, accept: str | None) -> web.Response:
    """The OpenAPI document at `path` (under /openapi/); 404 for an unknown one."""
    if path.rstrip("/") == "/openapi/v2":
        swagger = openapi.v2_document(registry.all())
        if "protobuf" in (accept or ""):  # what client-go asks for
            body = openapi_proto.document(swagger)
            return web.Response(body=body, headers={"Content-Type": openapi_proto.CONTENT_TYPE})
        return json_response(swagger)
    if path.rstrip("/") == "/openapi/v3":
        return json_response(openapi.v3_index(registry))
    rest = path[len("/openapi/v3/") :] if path.startswith("/openapi/v3/") else ""
    parts = rest.strip("/").split("/")
    document = None
    if len(parts) == 2 and parts[0] == "api":
        document = openapi.v3_document(registry, "", parts[1])
    elif len(parts) == 3 and parts[0] == "apis":
        document = openapi.v3_document(registry, parts[1], parts[2])
    if document is None:
        raise errors.not_found_path(path)
    return json_response(document)
