"""What parsing collects across documents before it becomes `ClusterResources`."""

from __future__ import annotations

from dataclasses import dataclass, field

from pikube.lb.config.fields import ConfigError, Origin, _Where
from pikube.lb.model import (
    BFDProfile,
    BGPAdvertisement,
    BGPPeer,
    Community,
    EndpointSlice,
    IPAddressPool,
    L2Advertisement,
    Namespace,
    Node,
    Service,
)

# --- the MetalLB kinds ----------------------------------------------------------------------------


@dataclass
class _PoolEntry:
    pool: IPAddressPool
    origin: Origin
    obj: str


@dataclass
class _BGPAdvDraft:
    """A BGPAdvertisement whose community aliases are resolved once every Community is read."""

    adv: BGPAdvertisement
    communities: list[tuple[str, str]]  # (field path, text)
    where: _Where


@dataclass
class _Seen:
    """Everything read so far, with where each named object came from."""

    pools: list[_PoolEntry] = field(default_factory=list)
    l2: list[L2Advertisement] = field(default_factory=list)
    bgp_advs: list[_BGPAdvDraft] = field(default_factory=list)
    peers: list[tuple[BGPPeer, _Where]] = field(default_factory=list)
    communities: list[tuple[Community, _Where]] = field(default_factory=list)
    bfd: list[BFDProfile] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    namespaces: list[Namespace] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    slices: list[EndpointSlice] = field(default_factory=list)
    names: dict[tuple[str, str], Origin] = field(default_factory=dict)

    def claim(self, kind: str, name: str, where: _Where) -> None:
        earlier = self.names.get((kind, name))
        if earlier is not None:
            raise ConfigError(
                f"defined twice (first in {earlier})", origin=where.origin, obj=where.obj
            )
        self.names[kind, name] = where.origin
