"""The API from inside a Pod, without kubernetes_asyncio: its service account's token and CA
and the KUBERNETES_SERVICE_HOST/PORT the kubelet sets, over one aiohttp session.

Why: importing kubernetes_asyncio loads its ~1,100 generated modules (~38 MB of a speaker's
resident memory and over a second of start-up on this machine, several on a Pi) although the
daemons use none of them in a Pod; the kubeconfig path (a workstation, the lab's tests) still
goes through kubernetes_asyncio (decision 0021). Bound service-account tokens rotate: the
token file is read again at most every minute, as client-go does.

Pure: `api_host`, `request_body`; `InClusterBackend` is the adapter.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

from pikube.errors import PikubeError

ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_S = 60.0


def api_host(environ: Mapping[str, str]) -> str:
    """https://HOST:PORT of the API from the kubelet's environment (IPv6 in brackets)."""
    host = environ.get("KUBERNETES_SERVICE_HOST", "")
    port = environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise PikubeError(
            "in-cluster configuration: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are "
            "not set; pass --kubeconfig FILE (outside a Pod)",
            exit_code=2,
        )
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def request_body(body: object) -> bytes | None:
    """What goes on the wire for a JSON (or merge-patch) body."""
    if body is None:
        return None
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


class InClusterBackend:
    """What KubeClient needs of an API connection: `host`, `call`, `close`."""

    def __init__(self, account_dir: Path = ACCOUNT_DIR, environ: Mapping[str, str] | None = None):
        self.host = api_host(os.environ if environ is None else environ)
        self._token_path = account_dir / "token"
        ca = account_dir / "ca.crt"
        try:
            self._ssl = ssl.create_default_context(cafile=str(ca))
            self._token = self._token_path.read_text().strip()
        except (OSError, ssl.SSLError) as exc:
            where = ca if not ca.exists() or isinstance(exc, ssl.SSLError) else self._token_path
            reason = getattr(exc, "strerror", None) or str(exc)
            raise PikubeError(
                f"in-cluster configuration: {where}: {reason}; pass --kubeconfig FILE (outside "
                "a Pod)",
                exit_code=2,
            ) from exc
        self._token_read = time.monotonic()
        self._session: aiohttp.ClientSession | None = None

    def _authorization(self) -> str:
        now = time.monotonic()
        if now - self._token_read > TOKEN_REREAD_S:
            with contextlib.suppress(OSError):  # keep the last token; the API says if expired
                self._token = self._token_path.read_text().strip()
            self._token_read = now
        return f"Bearer {self._token}"

    async def call(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: object,
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl))
        url = self.host + path + (f"?{urlencode(list(query.items()))}" if query else "")
        all_headers = {**headers, "Authorization": self._authorization()}
        return await self._session.request(
            method, url, headers=all_headers, data=request_body(body), timeout=timeout
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
