"""Helpers for tests of the Kubernetes API stand-in: PKI on disk, an in-process server on
loopback (TLS, client certificates), and raw clients for misbehaving on purpose."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pikube.lab.kubeapi import pki
from pikube.lab.kubeapi.seed import seed_cluster
from pikube.lab.kubeapi.server import MAX_BODY_BYTES, ApiServer, start, tls_context
from pikube.lab.kubeapi.store import Store


@dataclass(frozen=True)
class PkiFiles:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    def kubeconfig(self, port: int) -> Path:
        """An admin kubeconfig for a server on 127.0.0.1:port."""
        path = self.directory / f"admin-{port}.conf"
        admin = pki.KeyPair(
            self.path("admin.crt").read_bytes(), self.path("admin.key").read_bytes()
        )
        text = pki.kubeconfig(f"https://127.0.0.1:{port}", self.path("ca.crt").read_bytes(), admin)
        path.write_text(text)
        return path


def write_pki(directory: Path) -> PkiFiles:
    directory.mkdir(parents=True, exist_ok=True)
    bundle = pki.new_cluster_pki(
        datetime.now(UTC), host_name="master", addresses=["127.0.0.1"], service_ip="10.96.0.1"
    )
    for name, pair in (("ca", bundle.ca), ("apiserver", bundle.apiserver), ("admin", bundle.admin)):
        (directory / f"{name}.crt").write_bytes(pair.cert_pem)
        (directory / f"{name}.key").write_bytes(pair.key_pem)
    # A client certificate from an unrelated CA, which the server must refuse.
    other_ca = pki.new_ca(datetime.now(UTC))
    stranger = pki.issue(other_ca, datetime.now(UTC), "stranger", organizations=["system:masters"])
    (directory / "stranger.crt").write_bytes(stranger.cert_pem)
    (directory / "stranger.key").write_bytes(stranger.key_pem)
    return PkiFiles(directory)


def client_context(files: PkiFiles, *, cert: str | None = "admin") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files.path("ca.crt")))
    if cert is not None:
        context.load_cert_chain(files.path(f"{cert}.crt"), files.path(f"{cert}.key"))
    return context


@dataclass
class Served:
    api: ApiServer
    store: Store
    port: int
    files: PkiFiles

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def serving(
    files: PkiFiles,
    *,
    window: int = 10_000,
    bookmark_interval_s: float = 60.0,
    max_body_bytes: int | None = None,
    max_pending_events: int = 100_000,
) -> AsyncIterator[Served]:
    """The API stand-in on 127.0.0.1 (any free port), TLS with client certificates."""
    store = Store(window=window)
    api = ApiServer(
        store,
        bookmark_interval_s=bookmark_interval_s,
        max_pending_events=max_pending_events,
        max_body_bytes=max_body_bytes or MAX_BODY_BYTES,
    )
    tls = tls_context(
        files.path("apiserver.crt"), files.path("apiserver.key"), files.path("ca.crt")
    )
    running = await start(api, host="127.0.0.1", port=0, tls=tls)
    seed_cluster(store, "127.0.0.1", running.port)
    try:
        yield Served(api, store, running.port, files)
    finally:
        await running.close()
