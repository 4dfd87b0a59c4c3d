"""A release manifest fetched by URL (flannel's, MetalLB's): read whole or refused with one
message naming the spec's field; never cut short at a size limit."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from pikube.cluster.bootstrap import read_manifest
from pikube.errors import InvalidInput
from pikube.inputs import MANIFESTS_LIMIT_BYTES

BODIES = {
    "/small.yml": b"apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-flannel}\n",
    # Past the limit by a byte: the old reader stopped at 4 MiB and applied what it had.
    "/huge.yml": b"#" * MANIFESTS_LIMIT_BYTES + b"\n",
    "/binary.yml": b"\xff\xfe\x00kind",
}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = BODIES.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_manifest_is_read_whole(server: str) -> None:
    assert read_manifest(f"{server}/small.yml", "flannel.manifest") == BODIES["/small.yml"].decode()


def test_a_manifest_over_the_limit_is_refused_not_cut_short(server: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        read_manifest(f"{server}/huge.yml", "flannel.manifest")
    assert caught.value.message == (
        f"flannel.manifest: {server}/huge.yml is over 8 MiB: not a manifest"
    )


def test_a_manifest_that_is_not_text_is_refused_naming_the_field(server: str) -> None:
    with pytest.raises(InvalidInput, match=r"^load_balancer.manifest: .*/binary.yml is not UTF-8"):
        read_manifest(f"{server}/binary.yml", "load_balancer.manifest")


def test_an_unreachable_manifest_names_the_field_and_the_offline_way(server: str) -> None:
    with pytest.raises(InvalidInput, match=r"^flannel.manifest: cannot fetch .*/missing.yml"):
        read_manifest(f"{server}/missing.yml", "flannel.manifest")
