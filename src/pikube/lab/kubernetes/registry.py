"""The lab's container registry: Debian's docker-registry on the router, mirroring
registry.k8s.io and docker.io for the lab Pis' containerd.

Owns: the registry's configuration, filling its storage with the lab's images (images.py) over
the registry HTTP API v2, serving that storage from the router under the lab's supervisor, and
the containerd configuration that makes a Pi pull `registry.k8s.io/...` and `docker.io/...`
from it (hosts.toml files under /etc/containerd/certs.d, and the CRI plugin's `config_path`).

Pure: `registry_config`, `hosts_toml`, `containerd_mirror_files`, `with_config_path`,
`upload_target`. The storage is filled once per image layout and cached under pikube's cache
directory; the filling registry listens on a unix socket outside every lab (nothing leaves the
machine), and each lab's router then serves the same storage read-only over plain HTTP.
Why these choices: docs/decisions/0057.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from pikube.errors import PikubeError
from pikube.lab import state
from pikube.lab.hosts import rootfs
from pikube.lab.hosts.processes import ProcessRecord, TcpListening
from pikube.lab.kubernetes import binaries, images
from pikube.lab.kubernetes.images import ImageLayout
from pikube.lab.lab import Lab
from pikube.system import require_commands

REGISTRY_PROCESS = "registry"
REGISTRY_PORT = 5000
CERTS_DIR = "/etc/containerd/certs.d"
# The registries the seed's manifests name, and where containerd would go for them upstream.
UPSTREAM_SERVERS = {
    "registry.k8s.io": "https://registry.k8s.io",
    "docker.io": "https://registry-1.docker.io",
}
# pikube's own image (ghcr.io/pikube/pikube) is served by a second registry on the router, from
# its own storage: it changes with every commit, the seed's images do not (appimage.py).
APP_REGISTRY_PROCESS = "registry-app"
APP_REGISTRY_PORT = 5001
APP_UPSTREAM_SERVERS = {"ghcr.io": "https://ghcr.io"}
# MetalLB's images (quay.io/metallb/...), built from its Go module to measure pikube against it,
# by a third registry from their own storage (metallb.py): only the labs that compare use them.
METALLB_REGISTRY_PROCESS = "registry-metallb"
METALLB_REGISTRY_PORT = 5002
METALLB_UPSTREAM_SERVERS = {"quay.io": "https://quay.io"}
CRI_REGISTRY_SECTION = '[plugins."io.containerd.grpc.v1.cri".registry]'
_PUSH_TIMEOUT_S = 600.0
_START_TIMEOUT_S = 20.0


def registry_config(storage: Path, *, listen: str, unix: bool = False, readonly: bool) -> str:
    """docker-registry's config.yml: filesystem storage, plain HTTP, no auth, nothing purged."""
    net = "unix" if unix else "tcp"
    return f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: false
  maintenance:
    uploadpurging:
      enabled: false
    readonly:
      enabled: {"true" if readonly else "false"}
http:
  net: {net}
  addr: {listen}
"""


def hosts_toml(upstream: str, mirror_url: str) -> str:
    """containerd's hosts.toml for one registry: pull and resolve from the mirror only."""
    return f"""\
# pikube lab: {upstream} is served by the lab's registry on the router (plain HTTP).
server = "{upstream}"

[host."{mirror_url}"]
  capabilities = ["pull", "resolve"]
"""


def containerd_mirror_files(
    mirror_url: str,
    certs_dir: str = CERTS_DIR,
    app_mirror_url: str | None = None,
    metallb_mirror_url: str | None = None,
) -> dict[str, str]:
    """path -> content of the hosts.toml files a lab Pi gets (with `app_mirror_url`, also the
    registry pikube's own image is named in, served by the app registry; with
    `metallb_mirror_url`, quay.io for MetalLB's images)."""
    files = {
        f"{certs_dir}/{name}/hosts.toml": hosts_toml(server, mirror_url)
        for name, server in sorted(UPSTREAM_SERVERS.items())
    }
    if app_mirror_url is not None:
        for name, server in sorted(APP_UPSTREAM_SERVERS.items()):
            files[f"{certs_dir}/{name}/hosts.toml"] = hosts_toml(server, app_mirror_url)
    if metallb_mirror_url is not None:
        for name, server in sorted(METALLB_UPSTREAM_SERVERS.items()):
            files[f"{certs_dir}/{name}/hosts.toml"] = hosts_toml(server, metallb_mirror_url)
    return files


def with_config_path(config_toml: str, certs_dir: str = CERTS_DIR) -> str:
    """containerd's config.toml with the CRI plugin reading registry hosts from certs_dir.

    Changes only the `config_path` of the CRI registry section (added if missing), so the
    rest of the file (`containerd config default`, SystemdCgroup, ...) stays as it was.
    """
    setting = f'config_path = "{certs_dir}"'
    lines = config_toml.splitlines()
    for index, line in enumerate(lines):
        if line.strip() == CRI_REGISTRY_SECTION:
            indent = re.match(r"\s*", line)
            inner = (indent.group(0) if indent else "") + "  "
            end = index + 1
            while end < len(lines) and not lines[end].lstrip().startswith("["):
                if lines[end].strip().startswith("config_path"):
                    key_indent = lines[end][: len(lines[end]) - len(lines[end].lstrip())]
                    lines[end] = key_indent + setting
                    return "\n".join(lines) + "\n"
                end += 1
            lines.insert(index + 1, inner + setting)
            return "\n".join(lines) + "\n"
    tail = "" if not lines or lines[-1] == "" else "\n"
    return "\n".join(lines) + f"{tail}\n{CRI_REGISTRY_SECTION}\n  {setting}\n"


def mirror_url(lab: Lab) -> str:
    return f"http://{lab.topology.gateway.ipv4}:{REGISTRY_PORT}"


def app_mirror_url(lab: Lab) -> str:
    return f"http://{lab.topology.gateway.ipv4}:{APP_REGISTRY_PORT}"


def metallb_mirror_url(lab: Lab) -> str:
    return f"http://{lab.topology.gateway.ipv4}:{METALLB_REGISTRY_PORT}"


def upload_target(location: str, digest: str) -> str:
    """The path and query to PUT a monolithic upload to: the Location the registry gave
    (absolute or not) with `digest` added to its query."""
    parts = urlsplit(location)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("digest", digest)]
    return f"{parts.path}?{urlencode(query)}"


# ---------------------------------------------------------------------------- adapters


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (the filling registry listens on one)."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


class RegistryClient:
    """The registry HTTP API v2 calls a push needs (one connection, sequential requests)."""

    def __init__(self, connection: http.client.HTTPConnection) -> None:
        self._conn = connection

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | Path | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        all_headers = dict(headers or {})
        if isinstance(body, Path):
            all_headers["Content-Length"] = str(body.stat().st_size)
            with body.open("rb") as fh:
                self._conn.request(method, path, body=fh, headers=all_headers)
                response = self._conn.getresponse()
        else:
            all_headers["Content-Length"] = str(len(body or b""))
            self._conn.request(method, path, body=body, headers=all_headers)
            response = self._conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def has_blob(self, repository: str, digest: str) -> bool:
        status, _, _ = self._request("HEAD", f"/v2/{repository}/blobs/{digest}")
        return status == 200

    def push_blob(self, repository: str, digest: str, source: Path) -> None:
        if self.has_blob(repository, digest):
            return
        status, headers, data = self._request("POST", f"/v2/{repository}/blobs/uploads/")
        if status != 202 or "location" not in headers:
            raise PikubeError(
                f"registry refused an upload to {repository}: {status} {data[:200]!r}"
            )
        target = upload_target(headers["location"], digest)
        put_headers = {"Content-Type": "application/octet-stream"}
        status, _, data = self._request("PUT", target, source, put_headers)
        if status != 201:
            raise PikubeError(
                f"registry refused blob {digest} of {repository}: {status} {data[:200]!r}"
            )

    def push_manifest(self, repository: str, tag: str, media_type: str, manifest: bytes) -> str:
        status, headers, data = self._request(
            "PUT", f"/v2/{repository}/manifests/{tag}", manifest, {"Content-Type": media_type}
        )
        if status != 201:
            raise PikubeError(
                f"registry refused the manifest of {repository}:{tag}: {status} {data[:200]!r}"
            )
        return headers.get("docker-content-digest", "")

    def manifest_digest(self, repository: str, tag: str, media_type: str) -> str:
        status, headers, _ = self._request(
            "HEAD", f"/v2/{repository}/manifests/{tag}", headers={"Accept": media_type}
        )
        return headers.get("docker-content-digest", "") if status == 200 else ""


def push_layout(client: RegistryClient, layout: ImageLayout) -> None:
    """Every image of the layout, under its repository and tag (blobs first, then manifests)."""
    for reference, blob in sorted(layout.manifests.items()):
        repository = reference.split("/", 1)[1].rsplit(":", 1)[0]
        tag = reference.rsplit(":", 1)[1]
        manifest = layout.manifest(reference)
        config = manifest["config"]
        layers = manifest["layers"]
        assert isinstance(config, dict)
        assert isinstance(layers, list)
        for descriptor in [*layers, config]:
            digest = str(descriptor["digest"])
            client.push_blob(repository, digest, layout.blob_path(digest))
        data = layout.blob_path(blob.digest).read_bytes()
        pushed = client.push_manifest(repository, tag, blob.media_type, data)
        if pushed and pushed != blob.digest:
            raise PikubeError(f"registry stored {reference} as {pushed}, not {blob.digest}")


def storage_path(layout: ImageLayout) -> Path:
    """The registry storage holding exactly this layout's images (keyed like the layout)."""
    return rootfs.cache_dir() / "registry" / layout.path.name


def ensure_storage(
    layout: ImageLayout, push: Callable[[RegistryClient, ImageLayout], None] = push_layout
) -> Path:
    """The filled registry storage for the layout (pushed once, then a cache hit): the
    directory to give docker-registry as its filesystem root."""
    target = storage_path(layout)
    if (target / "complete").exists():
        return target / "storage"
    require_commands("docker-registry")
    with rootfs.cache_lock(f"registry-{target.name}"):
        if (target / "complete").exists():
            return target / "storage"
        tmp = target.parent / f"{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            (tmp / "storage").mkdir(parents=True)
            with _filling_registry(tmp / "storage") as socket_path:
                push(RegistryClient(_UnixConnection(socket_path, _PUSH_TIMEOUT_S)), layout)
            (tmp / "complete").write_text("")
            if target.exists():
                shutil.rmtree(target)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target / "storage"


@contextlib.contextmanager
def _filling_registry(storage: Path) -> Iterator[Path]:
    """A writable docker-registry on a unix socket, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="pikube-registry-") as work_dir:
        work = Path(work_dir)
        sock = work / "registry.sock"
        config = work / "config.yml"
        config.write_text(registry_config(storage, listen=str(sock), unix=True, readonly=False))
        log = work / "registry.log"
        with log.open("wb") as log_fh:
            proc = subprocess.Popen(
                ["docker-registry", "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + _START_TIMEOUT_S
            while not sock.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                    raise PikubeError(f"docker-registry did not start: {' '.join(tail)}")
                time.sleep(0.02)
            yield sock
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def serve_registry(
    lab: Lab, storage: Path, name: str = REGISTRY_PROCESS, port: int = REGISTRY_PORT
) -> ProcessRecord:
    """docker-registry on the lab's router, serving `storage` read-only on `port` (5000; the
    app registry 5001) (idempotent: a registry already running there is kept)."""
    router = lab.topology.gateway
    for record in lab.require_up().processes:
        if record.host == router.name and record.name == name:
            return record
    require_commands("docker-registry")
    config = state.lab_dir(lab.name) / name / "config.yml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(registry_config(storage, listen=f"{router.ipv4}:{port}", readonly=True))
    return lab.start(
        router.name,
        name,
        ["docker-registry", "serve", str(config)],
        ready=TcpListening(port),
    )


def up_registry(lab: Lab) -> str:
    """The lab's registry with every image of the seed's cluster, served from the router
    (building what the caches lack first); returns its URL."""
    wanted = images.lab_images()
    built = binaries.built_binaries(images.required_binaries(wanted))
    serve_registry(lab, ensure_storage(images.ensure_images(built, wanted)))
    return mirror_url(lab)
