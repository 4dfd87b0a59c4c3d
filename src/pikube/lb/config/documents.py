"""Documents -> `ClusterResources`: opens `kind: List`, sends each object to its kind's reader,
then checks what spans objects. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pikube.lb.config.bgp import (
    _check_aggregation,
    _check_bfd_echo,
    _check_local_pref,
    _community_aliases,
    _resolve_communities,
)
from pikube.lb.config.constants import _METALLB_STATUS_KINDS, METALLB_GROUP
from pikube.lb.config.fields import ConfigError, Origin, _describe, _Fields, _Where
from pikube.lb.config.pools import _check_pools_do_not_overlap
from pikube.lb.config.services import _KINDS
from pikube.lb.config.state import _Seen
from pikube.lb.model import (
    ClusterResources,
)

# --- documents -> resources -----------------------------------------------------------------------


def parse_documents(documents: Iterable[tuple[object, Origin]]) -> ClusterResources:
    """Parse loaded documents (with where each came from) into one `ClusterResources`.

    Raises ConfigError for the first problem found, in input order.
    """
    seen = _Seen()
    for doc, origin in documents:
        for obj, obj_origin in _objects(doc, origin):
            _parse_object(obj, obj_origin, seen)
    _check_pools_do_not_overlap(seen.pools)
    communities = _community_aliases(seen.communities)
    bgp_advertisements = tuple(_resolve_communities(d, communities) for d in seen.bgp_advs)
    pools = tuple(entry.pool for entry in seen.pools)
    profiles = {p.name: p for p in seen.bfd}
    for peer, where in seen.peers:
        if peer.bfd_profile is not None and peer.bfd_profile not in profiles:
            raise ConfigError(
                f"no BFDProfile named {peer.bfd_profile!r}",
                origin=where.origin,
                obj=where.obj,
                field="spec.bfdProfile",
            )
    for i, (draft, adv) in enumerate(zip(seen.bgp_advs, bgp_advertisements, strict=True)):
        _check_aggregation(draft.where, adv, pools)
        _check_bfd_echo(draft.where, adv, pools, [p for p, _ in seen.peers], profiles)
        _check_local_pref(draft.where, adv, bgp_advertisements[:i], pools, seen.nodes)
    return ClusterResources(
        pools=pools,
        l2_advertisements=tuple(seen.l2),
        bgp_peers=tuple(p for p, _ in seen.peers),
        bgp_advertisements=bgp_advertisements,
        communities=tuple(c for c, _ in seen.communities),
        bfd_profiles=tuple(seen.bfd),
        services=tuple(seen.services),
        namespaces=tuple(seen.namespaces),
        nodes=tuple(seen.nodes),
        endpoint_slices=tuple(seen.slices),
    )


def _objects(doc: object, origin: Origin) -> Iterator[tuple[dict[str, object], Origin]]:
    """The Kubernetes objects in a document: itself, or the items of a `kind: List`."""
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise ConfigError(
            f"expected a Kubernetes object (a mapping with apiVersion and kind), "
            f"got {_describe(doc)}",
            origin=origin,
        )
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
        for i, item in enumerate(doc["items"]):
            item_origin = Origin(origin.path, origin.index, i)
            if not isinstance(item, dict):
                raise ConfigError(f"expected an object, got {_describe(item)}", origin=item_origin)
            yield item, item_origin
        return
    yield doc, origin


def _parse_object(obj: dict[str, object], origin: Origin, seen: _Seen) -> None:
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ConfigError("not a Kubernetes object: 'kind' is missing", origin=origin)
    if not isinstance(api_version, str) or not api_version:
        raise ConfigError("'apiVersion' is missing", origin=origin, obj=kind)
    group, _, version = api_version.rpartition("/")
    if group == METALLB_GROUP and kind in _METALLB_STATUS_KINDS:
        return
    entry = _KINDS.get((group, kind))
    if entry is None:
        if group == METALLB_GROUP:
            known = ", ".join(sorted(k for g, k in _KINDS if g == METALLB_GROUP))
            raise ConfigError(
                f"unknown MetalLB kind (pikube reads {known})", origin=origin, obj=kind
            )
        return  # not the load balancer's business (Deployments, ConfigMaps, ...)
    versions, parse = entry
    if group == METALLB_GROUP:
        for key in obj:
            if key not in ("apiVersion", "kind", "metadata", "spec", "status"):
                raise ConfigError(
                    "unknown field (a MetalLB object has apiVersion, kind, metadata, spec, status)",
                    origin=origin,
                    obj=kind,
                    field=str(key),
                )
    if version not in versions:
        wanted = " or ".join(f"{group + '/' if group else ''}{v}" for v in sorted(versions))
        if group != METALLB_GROUP:
            return  # another API's object of the same name (e.g. a Knative Service)
        raise ConfigError(
            f"apiVersion {api_version!r} is not supported for {kind} (use {wanted})",
            origin=origin,
            obj=kind,
        )
    parse(_Fields(obj, _Where(origin, kind), ""), seen, version)
