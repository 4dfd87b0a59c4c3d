"""The API stand-in's HTTP helpers on their own: body decoding, response headers, the watch
buffer's limit, and which document a discovery or OpenAPI path gets. The lab tests
(tests/lab/test_kubeapi_*.py) drive them through a real server."""

from __future__ import annotations

import json

import pytest

from pikube.lab.kubeapi.bodies import decode, error_response, too_large, warned
from pikube.lab.kubeapi.bodies import json_response as respond
from pikube.lab.kubeapi.documents import discovery_response, openapi_response
from pikube.lab.kubeapi.errors import ApiError
from pikube.lab.kubeapi.resources import Registry
from pikube.lab.kubeapi.routing import parse_path
from pikube.lab.kubeapi.store import EventType, WatchEvent
from pikube.lab.kubeapi.watching import WatchBuffer


def test_bodies_are_json_or_yaml_and_yaml_only_where_allowed() -> None:
    assert decode(b'{"a": 1}', "application/json") == {"a": 1}
    assert decode(b"a: 1\n", "application/yaml") == {"a": 1}
    with pytest.raises(ApiError, match=r"^couldn.t decode the request body: "):
        decode(b"a: 1\n", "application/apply-patch+yaml", yaml_ok=False)
    with pytest.raises(ApiError) as bad:
        decode(b"{", "application/json")
    assert bad.value.code == 400
    with pytest.raises(ApiError) as proto:
        decode(b"\x00", "application/vnd.kubernetes.protobuf")
    assert proto.value.code == 415


def test_responses_carry_warnings_and_retry_after_as_the_real_server_sends_them() -> None:
    response = warned(respond({}), ['field "x" is "unknown"', "second"])
    assert response.headers.getall("Warning") == [
        '299 - "field \\"x\\" is \\"unknown\\""',
        '299 - "second"',
    ]
    busy = error_response(ApiError(504, "Timeout", "later", retry_after_s=1))
    assert busy.status == 504
    assert busy.headers["Retry-After"] == "1"
    assert busy.headers["Content-Type"] == "application/json"
    assert error_response(too_large(10)).status == 413


def _event(n: int) -> WatchEvent:
    return WatchEvent(EventType.ADDED, {"metadata": {"name": f"o{n}"}}, n)


def test_a_watch_buffer_takes_its_events_in_one_write_and_overflows_past_its_limit() -> None:
    buffer = WatchBuffer(2, lambda e: e.encode())
    buffer.push(_event(1))
    buffer.push(_event(2))
    assert buffer.ready.is_set()
    lines = buffer.take().splitlines()
    assert [json.loads(line)["object"]["metadata"]["name"] for line in lines] == ["o1", "o2"]
    assert not buffer.ready.is_set()
    for n in range(3):
        buffer.push(_event(n))
    assert buffer.overflowed
    assert len(buffer.chunks) == 2  # the third is dropped: the watcher is closed, and resumes
    buffer.push(_event(9))
    assert len(buffer.chunks) == 2


@pytest.mark.parametrize(
    ("path", "accept", "content_type"),
    [
        ("/api", None, "application/json"),
        ("/apis", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", None),
        ("/apis/apps", None, "application/json"),
        ("/api/v1", None, "application/json"),
    ],
)
def test_discovery_paths_get_their_documents(
    path: str, accept: str | None, content_type: str | None
) -> None:
    response = discovery_response(Registry(), parse_path(path), path, accept, "10.0.0.1:6443")
    assert response.status == 200
    if content_type is None:  # aggregated: its own media type
        assert "apidiscovery.k8s.io" in response.headers["Content-Type"]
    else:
        assert response.headers["Content-Type"] == content_type


@pytest.mark.parametrize("path", ["/apis/nowhere.example", "/apis/apps/v9"])
def test_unknown_discovery_paths_are_404(path: str) -> None:
    with pytest.raises(ApiError) as missing:
        discovery_response(Registry(), parse_path(path), path, None, "10.0.0.1:6443")
    assert missing.value.code == 404


def test_openapi_paths_get_v2_as_json_or_protobuf_and_v3_per_group_version() -> None:
    registry = Registry()
    assert openapi_response(registry, "/openapi/v2", None).headers["Content-Type"] == (
        "application/json"
    )
    proto = openapi_response(
        registry, "/openapi/v2", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
    )
    assert "protobuf" in proto.headers["Content-Type"]
    index = json.loads(openapi_response(registry, "/openapi/v3/", None).text or "")
    assert "api/v1" in index["paths"]
    assert openapi_response(registry, "/openapi/v3/apis/apps/v1", None).status == 200
    for missing in ("/openapi/v3/apis/apps", "/openapi/v3/api/v9", "/openapi/v4"):
        with pytest.raises(ApiError) as error:
            openapi_response(registry, missing, None)
        assert error.value.code == 404
