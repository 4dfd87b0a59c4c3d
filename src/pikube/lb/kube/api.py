"""A thin, generic client of the Kubernetes API for the controller and the speaker.

kubernetes_asyncio loads the kubeconfig (or the in-cluster service account) and carries the
TLS and authentication (docs/decisions/0021); requests go through its `call_api` without its
generated models, as plain JSON dicts, because pikube's parsers (pikube.lb.config) read dicts,
MetalLB's kinds have no generated models, and a watch must see every line as the server sent
it (bookmarks, the 410 ERROR event) instead of the retrying `Watch` helper.

Must not: decide anything (what to list, when to retry: see informer), or cache objects.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

import aiohttp
import yaml

from pikube.errors import PikubeError
from pikube.lb.kube.incluster import request_body

if TYPE_CHECKING:
    from kubernetes_asyncio import client

Obj = dict[str, Any]
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Kind:
    """One kind the load balancer reads or writes, and where it lives in the API."""

    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if sub:
                base += f"/{sub}"
        return base


SERVICES = Kind("Service", "", "v1", "services")
NAMESPACES = Kind("Namespace", "", "v1", "namespaces", namespaced=False)
NODES = Kind("Node", "", "v1", "nodes", namespaced=False)
SECRETS = Kind("Secret", "", "v1", "secrets")
EVENTS = Kind("Event", "", "v1", "events")
ENDPOINT_SLICES = Kind("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices")
LEASES = Kind("Lease", "coordination.k8s.io", "v1", "leases")
IP_ADDRESS_POOLS = Kind("IPAddressPool", "metallb.io", "v1beta1", "ipaddresspools")
L2_ADVERTISEMENTS = Kind("L2Advertisement", "metallb.io", "v1beta1", "l2advertisements")
SERVICE_L2_STATUSES = Kind("ServiceL2Status", "metallb.io", "v1beta1", "servicel2statuses")
BGP_PEERS = Kind("BGPPeer", "metallb.io", "v1beta2", "bgppeers")
BGP_ADVERTISEMENTS = Kind("BGPAdvertisement", "metallb.io", "v1beta1", "bgpadvertisements")
BFD_PROFILES = Kind("BFDProfile", "metallb.io", "v1beta1", "bfdprofiles")
COMMUNITIES = Kind("Community", "metallb.io", "v1beta1", "communities")
SERVICE_BGP_STATUSES = Kind("ServiceBGPStatus", "metallb.io", "v1beta1", "servicebgpstatuses")


class ApiStatusError(Exception):
    """The API answered with an error status (the `Status` body's message, if any)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _message(status: int, data: bytes) -> str:
    try:
        body = json.loads(data)
    except ValueError:
        return data.decode(errors="replace")[:200] or f"HTTP {status}"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return f"HTTP {status}"


class Backend(Protocol):
    """An authenticated connection to one API server (kubeconfig or in-cluster)."""

    host: str

    async def call(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: object,
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse: ...

    async def close(self) -> None: ...


class KubeconfigBackend:
    """kubernetes_asyncio's client, for a kubeconfig: its configuration (TLS, client
    certificates, exec plugins and refreshing tokens: `update_params_for_auth`) and its aiohttp
    session (keep-alive connections, up to `connection_pool_maxsize`).

    Requests go straight to that session with a body already encoded, not through `call_api`:
    call_api walks every body with `sanitize_for_serialization` and its `six` helpers before
    encoding it, which was a tenth of the controller's CPU when it wrote 1,000 statuses
    (bench/controller_sync.py), for plain dicts that need no sanitizing.
    """

    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = api_client
        self.host = str(api_client.configuration.host)

    async def call(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: object,
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        all_headers = {**self._api.default_headers, **headers}
        queries: list[tuple[str, str]] = list(query.items())
        await self._api.update_params_for_auth(all_headers, queries, ["BearerToken"])
        rest = self._api.rest_client
        args: dict[str, Any] = {}
        if rest.proxy:
            args["proxy"] = rest.proxy
        if rest.proxy_headers:
            args["proxy_headers"] = rest.proxy_headers
        if rest.server_hostname:
            args["server_hostname"] = rest.server_hostname
        url = self.host + path + (f"?{urlencode(queries)}" if queries else "")
        response: aiohttp.ClientResponse = await rest.pool_manager.request(
            method, url, headers=all_headers, data=request_body(body), timeout=timeout, **args
        )
        return response

    async def close(self) -> None:
        await self._api.close()


class KubeClient:
    """Requests and watch streams on one API server, as JSON dicts."""

    def __init__(self, backend: Backend, *, request_timeout_s: float = 10.0) -> None:
        self._backend = backend
        self.request_timeout_s = request_timeout_s

    @property
    def host(self) -> str:
        return self._backend.host

    async def close(self) -> None:
        await self._backend.close()

    async def _call(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = JSON,
        timeout: aiohttp.ClientTimeout | float | None = None,
    ) -> aiohttp.ClientResponse:
        if timeout is None:
            timeout = self.request_timeout_s
        if not isinstance(timeout, aiohttp.ClientTimeout):
            timeout = aiohttp.ClientTimeout(total=timeout)
        headers = {"Accept": JSON, "Content-Type": content_type}
        return await self._backend.call(method, path, query or {}, headers, body, timeout)

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = JSON,
        timeout_s: float | None = None,
    ) -> Obj:
        """One request; the decoded body, or ApiStatusError for a non-2xx answer."""
        response = await self._call(method, path, query, body, content_type, timeout_s)
        async with response:
            data = await response.read()
            if not 200 <= response.status < 300:
                raise ApiStatusError(response.status, _message(response.status, data))
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            return {}  # /readyz and friends answer text
        return decoded if isinstance(decoded, dict) else {}

    async def watch(
        self,
        path: str,
        query: Mapping[str, str],
        *,
        idle_timeout_s: float,
        on_open: Callable[[], None] | None = None,
    ) -> AsyncIterator[Obj]:
        """The events of a watch, one dict per line, until the server ends the stream.

        A read idle for `idle_timeout_s` raises TimeoutError (a server that stopped talking
        without closing, such as one whose host vanished, must not hang an informer).
        """
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=idle_timeout_s)
        response = await self._call("GET", path, {**query, "watch": "true"}, timeout=timeout)
        async with response:
            if response.status != 200:
                data = await response.read()
                raise ApiStatusError(response.status, _message(response.status, data))
            if on_open is not None:
                on_open()
            while True:
                line = await response.content.readline()
                if not line:
                    return
                if line.strip():
                    event = json.loads(line)
                    if isinstance(event, dict):
                        yield event


async def connect(kubeconfig: Path | None, *, request_timeout_s: float = 10.0) -> KubeClient:
    """A client from a kubeconfig file, or in a Pod from its service account (without
    importing kubernetes_asyncio: pikube.lb.kube.incluster)."""
    if kubeconfig is None:
        from pikube.lb.kube.incluster import InClusterBackend  # noqa: PLC0415

        return KubeClient(InClusterBackend(), request_timeout_s=request_timeout_s)
    from kubernetes_asyncio import client, config  # noqa: PLC0415

    configuration = client.Configuration()
    try:
        await config.load_kube_config(
            config_file=str(kubeconfig), client_configuration=configuration
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError,
            config.ConfigException) as exc:  # fmt: skip
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "in-cluster configuration"
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        if isinstance(exc, TypeError | KeyError | AttributeError):  # the YAML is something else
            detail = f"not a kubeconfig (clusters, contexts, users): {detail}"
        hint = "" if kubeconfig else "; pass --kubeconfig FILE (outside a Pod)"
        raise PikubeError(f"{where}: {detail}{hint}", exit_code=2) from exc
    backend = KubeconfigBackend(client.ApiClient(configuration))
    return KubeClient(backend, request_timeout_s=request_timeout_s)
