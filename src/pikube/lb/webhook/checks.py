"""What the admission webhook allows: MetalLB's checks on its kinds, as a pure function.

MetalLB's webhook refuses an object outside its namespace, then runs its whole configuration
parser over the existing objects plus the new one (overlapping or invalid CIDRs, a pool name
twice, a missing BFDProfile, ...), and refuses deleting a BFDProfile a BGPPeer uses. pikube's
does the same with pikube's parser (pikube.lb.config), so the message names the object and
the field: `IPAddressPool 'bad': spec.addresses[0]: ...`.

An object is refused only for a problem it causes: if the configuration already fails
without it (an object created while no webhook ran), the new object is allowed unless it is
the one blamed.

Pure: `review` takes the request's objects and the namespace's current objects, and returns
a `Verdict`; the server (pikube.lb.webhook.server) fetches and answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pikube.lb.config.documents import parse_documents
from pikube.lb.config.fields import ConfigError, Origin

# The kinds the webhook validates, and their resource names (the configuration's kinds).
KINDS = {
    "IPAddressPool": "ipaddresspools",
    "L2Advertisement": "l2advertisements",
    "BGPAdvertisement": "bgpadvertisements",
    "BGPPeer": "bgppeers",
    "BFDProfile": "bfdprofiles",
    "Community": "communities",
}
REQUEST = "the request"
CLUSTER = "the cluster"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    message: str = ""


ALLOW = Verdict(True)


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    return str(obj.get("kind", "")), str((obj.get("metadata") or {}).get("name", ""))


def _message(error: ConfigError) -> str:
    """The error without its origin (which is only "the request" or "the cluster")."""
    problem = re.sub(rf" \({CLUSTER}, document \d+\)", "", error.problem)
    return ": ".join(str(p) for p in (error.obj, error.field, problem) if p)


def _parse(objects: Sequence[tuple[Mapping[str, Any], Origin]]) -> ConfigError | None:
    try:
        parse_documents([(dict(o), origin) for o, origin in objects])
    except ConfigError as exc:
        return exc
    return None


def review(
    operation: str,
    obj: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None,
    existing: Sequence[Mapping[str, Any]],
    namespace: str,
) -> Verdict:
    """Allow or refuse one admission request (CREATE, UPDATE or DELETE) of a MetalLB kind.

    `existing`: the namespace's current objects of every kind in KINDS (the one in the
    request included or not: it is replaced by the request's version)."""
    target = obj if obj is not None else old
    if target is None:
        return ALLOW
    kind, name = _key(target)
    if operation == "DELETE":
        if kind != "BFDProfile":
            return ALLOW
        users = sorted(
            _key(o)[1]
            for o in existing
            if _key(o)[0] == "BGPPeer" and (o.get("spec") or {}).get("bfdProfile") == name
        )
        if users:
            peers = ", ".join(repr(u) for u in users)
            return Verdict(
                False,
                f"BFDProfile {name!r} is used by BGPPeer {peers} (spec.bfdProfile): "
                "change or delete the peer first",
            )
        return ALLOW
    if obj is None:
        return ALLOW
    object_namespace = (obj.get("metadata") or {}).get("namespace")
    if object_namespace != namespace:
        return Verdict(False, f"resource must be created in {namespace} namespace")
    others = [o for o in existing if _key(o) != (kind, name) and _key(o)[0] in KINDS]
    with_cluster = [(o, Origin(CLUSTER, n)) for n, o in enumerate(others, 1)]
    error = _parse([*with_cluster, (obj, Origin(REQUEST, 1))])
    if error is None:
        return ALLOW
    blamed = error.origin.path if isinstance(error.origin, Origin) else ""
    if blamed == REQUEST or _parse(with_cluster) is None:
        return Verdict(False, _message(error))
    return ALLOW  # the cluster's configuration fails without this object too


def admission_response(
    review_request: Mapping[str, Any], existing: Sequence[Mapping[str, Any]], namespace: str
) -> dict[str, Any]:
    """The AdmissionReview (admission.k8s.io/v1) answering `review_request`."""
    request = review_request.get("request") or {}
    kind = str((request.get("kind") or {}).get("kind", ""))
    if kind in KINDS:
        verdict = review(
            str(request.get("operation", "")),
            request.get("object"),
            request.get("oldObject"),
            existing,
            namespace,
        )
    else:
        verdict = ALLOW
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {"code": 422, "reason": "Invalid", "message": verdict.message}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
