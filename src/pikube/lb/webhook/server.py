"""The admission webhook's server in the controller: HTTPS on the webhook port, its
certificate kept in a Secret and its CA in the ValidatingWebhookConfiguration's caBundle.

Every replica serves (the webhook Service selects them all); any replica creates or renews
the Secret (a conflict means another was first: it reads the winner's) and puts the CA into
the configuration. The Secret is read again every minute, so a renewal by one replica reaches
the others; the TLS context is reloaded in place, open connections keep their certificate.

The answer to a request is pikube.lb.webhook.checks'; this module fetches the namespace's
MetalLB objects for it and carries the HTTP. /healthz answers 200 once the webhook serves
with a certificate the API server trusts (the readiness probe).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import logging
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from pikube.lb.kube.api import SECRETS, ApiStatusError, KubeClient, Obj
from pikube.lb.webhook import certs, checks

log = logging.getLogger("pikube.webhook")

# MetalLB's names: installing either over the other takes them over (docs/install.md).
SERVICE = "metallb-webhook-service"
CONFIGURATION = "metallb-webhook-configuration"
CERT_SECRET = "pikube-webhook-cert"
PATH = "/validate"
REFRESH_S = 60.0
CONFIGURATION_PATH = (
    f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{CONFIGURATION}"
)
# The version each kind is read in (BGPPeer's storage version is v1beta2).
VERSIONS = {"BGPPeer": "v1beta2"}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _decode(secret: Mapping[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


async def ensure_bundle(api: KubeClient, namespace: str) -> certs.Bundle:
    """The Secret's certificates, made or renewed first when needed."""
    names = certs.dns_names(SERVICE, namespace)
    path = SECRETS.path(namespace, CERT_SECRET)
    while True:
        try:
            secret: Obj | None = await api.request("GET", path)
        except ApiStatusError as exc:
            if exc.status != 404:
                raise
            secret = None
        bundle = certs.Bundle.from_data(_decode(secret)) if secret else None
        why = certs.needs_new(bundle, names, _now())
        if not why and bundle is not None:
            return bundle
        fresh = certs.make_bundle(names, _now())
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": CERT_SECRET, "namespace": namespace},
            "data": {k: base64.b64encode(v).decode() for k, v in fresh.data().items()},
        }
        try:
            if secret is None:
                await api.request("POST", SECRETS.path(namespace), body=body)
            else:
                body["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
                await api.request("PUT", path, body=body)
        except ApiStatusError as exc:
            if exc.status == 409:  # another replica was first: use its certificates
                continue
            raise
        log.info("webhook certificate %s/%s: new (%s)", namespace, CERT_SECRET, why)
        return fresh


async def ensure_ca_bundle(api: KubeClient, ca_cert: bytes) -> bool:
    """The CA in every webhook of the configuration; True if it had to be written."""
    wanted = base64.b64encode(ca_cert).decode()
    configuration = await api.request("GET", CONFIGURATION_PATH)
    changed = False
    for hook in configuration.get("webhooks") or []:
        client = hook.setdefault("clientConfig", {})
        if client.get("caBundle") != wanted:
            client["caBundle"] = wanted
            changed = True
    if changed:
        await api.request("PUT", CONFIGURATION_PATH, body=configuration)
        log.info("webhook configuration %s: CA bundle written", CONFIGURATION)
    return changed


async def existing_objects(api: KubeClient, namespace: str) -> list[Obj]:
    objects: list[Obj] = []
    for kind, plural in checks.KINDS.items():
        version = VERSIONS.get(kind, "v1beta1")
        path = f"/apis/metallb.io/{version}/namespaces/{namespace}/{plural}"
        for item in (await api.request("GET", path)).get("items") or []:
            item.setdefault("apiVersion", f"metallb.io/{version}")
            item.setdefault("kind", kind)
            objects.append(item)
    return objects


def _load(context: ssl.SSLContext, bundle: certs.Bundle) -> None:
    with tempfile.TemporaryDirectory(prefix="pikube-webhook-") as work:
        cert, key = Path(work) / "tls.crt", Path(work) / "tls.key"
        cert.write_bytes(bundle.cert)
        key.write_bytes(bundle.key)
        context.load_cert_chain(cert, key)


async def run_webhook(api: KubeClient, namespace: str, port: int, stop: asyncio.Event) -> None:
    """Serve the webhook on `port` until `stop`; keep its certificate and caBundle current."""
    while True:
        try:
            bundle = await ensure_bundle(api, namespace)
            await ensure_ca_bundle(api, bundle.ca_cert)
            break
        except (ApiStatusError, OSError, TimeoutError) as exc:
            log.warning("webhook not ready: %s", exc)
            await asyncio.sleep(2.0)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context, bundle)

    async def validate(request: web.Request) -> web.Response:
        review = await request.json()
        try:
            existing = await existing_objects(api, namespace)
        except (ApiStatusError, OSError, TimeoutError) as exc:
            req = review.get("request") or {}
            refusal: dict[str, Any] = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": req.get("uid", ""),
                    "allowed": False,
                    "status": {"message": f"pikube's webhook cannot read {namespace}: {exc}"},
                },
            }
            return web.json_response(refusal)
        answer = checks.admission_response(review, existing, namespace)
        if not answer["response"]["allowed"]:
            log.info("refused: %s", answer["response"]["status"]["message"])
        return web.json_response(answer)

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=3 * 1024 * 1024)
    app.router.add_post(PATH, validate)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", port, ssl_context=context)
    await site.start()
    log.info("webhook serving on :%d%s", port, PATH)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=REFRESH_S)
            try:
                fresh = await ensure_bundle(api, namespace)
                await ensure_ca_bundle(api, fresh.ca_cert)
            except (ApiStatusError, OSError, TimeoutError) as exc:
                log.warning("webhook certificate not checked: %s", exc)
                continue
            if fresh != bundle:
                _load(context, fresh)
                bundle = fresh
                log.info("webhook certificate reloaded")
    finally:
        await runner.cleanup()
