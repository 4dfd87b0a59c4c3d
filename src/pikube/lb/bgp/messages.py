"""BGP-4's vocabulary: message, capability and attribute types as frozen dataclasses, and the
protocol's numbers (RFC 4271, 2918, 4760, 6793, 4724, 1997, 8092). Pure: no bytes are read or
written here, that is `codec`; nothing about sessions, that is `fsm`.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, replace

from pikube.lb.model import LargeCommunity, StandardCommunity

MARKER = b"\xff" * 16
HEADER_LEN = 19
MAX_MESSAGE_LEN = 4096
AS_TRANS = 23456
VERSION = 4

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class MessageType(enum.IntEnum):
    OPEN = 1
    UPDATE = 2
    NOTIFICATION = 3
    KEEPALIVE = 4
    ROUTE_REFRESH = 5


class ErrorCode(enum.IntEnum):
    MESSAGE_HEADER = 1
    OPEN_MESSAGE = 2
    UPDATE_MESSAGE = 3
    HOLD_TIMER_EXPIRED = 4
    FSM = 5
    CEASE = 6


class HeaderError(enum.IntEnum):
    NOT_SYNCHRONIZED = 1
    BAD_LENGTH = 2
    BAD_TYPE = 3


class OpenError(enum.IntEnum):
    UNSPECIFIC = 0
    UNSUPPORTED_VERSION = 1
    BAD_PEER_AS = 2
    BAD_BGP_IDENTIFIER = 3
    UNSUPPORTED_OPTIONAL_PARAMETER = 4
    UNACCEPTABLE_HOLD_TIME = 6
    UNSUPPORTED_CAPABILITY = 7


class UpdateError(enum.IntEnum):
    MALFORMED_ATTRIBUTE_LIST = 1
    UNRECOGNIZED_WELL_KNOWN = 2
    MISSING_WELL_KNOWN = 3
    ATTRIBUTE_FLAGS = 4
    ATTRIBUTE_LENGTH = 5
    INVALID_ORIGIN = 6
    INVALID_NEXT_HOP = 8
    OPTIONAL_ATTRIBUTE = 9
    INVALID_NETWORK_FIELD = 10
    MALFORMED_AS_PATH = 11


class Cease(enum.IntEnum):
    MAX_PREFIXES = 1
    ADMINISTRATIVE_SHUTDOWN = 2
    PEER_DECONFIGURED = 3
    ADMINISTRATIVE_RESET = 4
    CONNECTION_REJECTED = 5
    OTHER_CONFIGURATION_CHANGE = 6
    CONNECTION_COLLISION = 7
    OUT_OF_RESOURCES = 8


class AttrType(enum.IntEnum):
    ORIGIN = 1
    AS_PATH = 2
    NEXT_HOP = 3
    MED = 4
    LOCAL_PREF = 5
    ATOMIC_AGGREGATE = 6
    AGGREGATOR = 7
    COMMUNITIES = 8
    MP_REACH_NLRI = 14
    MP_UNREACH_NLRI = 15
    AS4_PATH = 17
    AS4_AGGREGATOR = 18
    LARGE_COMMUNITIES = 32


class Origin(enum.IntEnum):
    IGP = 0
    EGP = 1
    INCOMPLETE = 2


class SegmentType(enum.IntEnum):
    AS_SET = 1
    AS_SEQUENCE = 2
    AS_CONFED_SEQUENCE = 3
    AS_CONFED_SET = 4


FLAG_OPTIONAL = 0x80
FLAG_TRANSITIVE = 0x40
FLAG_PARTIAL = 0x20
FLAG_EXTENDED = 0x10


@dataclass(frozen=True, order=True)
class Family:
    afi: int
    safi: int

    def __str__(self) -> str:
        names = {IPV4_UNICAST: "ipv4-unicast", IPV6_UNICAST: "ipv6-unicast"}
        return names.get(self, f"afi {self.afi}/safi {self.safi}")


IPV4_UNICAST = Family(1, 1)
IPV6_UNICAST = Family(2, 1)


def family_of(version: int) -> Family:
    return IPV4_UNICAST if version == 4 else IPV6_UNICAST


class MessageError(Exception):
    """What a peer sent cannot be accepted: send `notification` and close the session."""

    def __init__(self, code: int, subcode: int, reason: str, data: bytes = b"") -> None:
        super().__init__(reason)
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.data = data

    @property
    def notification(self) -> Notification:
        return Notification(self.code, self.subcode, self.data)


# --- capabilities ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Multiprotocol:
    family: Family


@dataclass(frozen=True)
class RouteRefreshCapability:
    pass


@dataclass(frozen=True)
class FourOctetAS:
    asn: int


@dataclass(frozen=True)
class GracefulRestart:
    restart_time_s: int = 120  # 12 bits
    restarting: bool = False  # the R bit: "I have restarted"
    notification: bool = False  # the N bit (RFC 8538); pikube never sets it
    families: tuple[tuple[Family, bool], ...] = ()  # (family, forwarding state preserved)


@dataclass(frozen=True)
class UnknownCapability:
    code: int
    value: bytes


Capability = (
    Multiprotocol | RouteRefreshCapability | FourOctetAS | GracefulRestart | UnknownCapability
)

CAP_MULTIPROTOCOL = 1
CAP_ROUTE_REFRESH = 2
CAP_GRACEFUL_RESTART = 64
CAP_FOUR_OCTET_AS = 65

# --- messages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Open:
    asn: int  # the real AS number (from the 4-octet AS capability when the peer sent one)
    hold_time_s: int
    router_id: ipaddress.IPv4Address
    capabilities: tuple[Capability, ...] = ()
    version: int = VERSION

    def capability(self, kind: type[Capability]) -> Capability | None:
        return next((c for c in self.capabilities if isinstance(c, kind)), None)

    @property
    def families(self) -> frozenset[Family]:
        found = {c.family for c in self.capabilities if isinstance(c, Multiprotocol)}
        # RFC 4760: a peer that sends no multiprotocol capability speaks IPv4 unicast only.
        return frozenset(found) if found else frozenset({IPV4_UNICAST})

    @property
    def four_octet_as(self) -> bool:
        return any(isinstance(c, FourOctetAS) for c in self.capabilities)

    @property
    def graceful_restart(self) -> GracefulRestart | None:
        cap = self.capability(GracefulRestart)
        return cap if isinstance(cap, GracefulRestart) else None


@dataclass(frozen=True)
class Keepalive:
    pass


@dataclass(frozen=True)
class Notification:
    code: int
    subcode: int
    data: bytes = b""

    def describe(self) -> str:
        names = {
            (6, 2): "cease: administrative shutdown",
            (6, 4): "cease: administrative reset",
            (4, 0): "hold timer expired",
        }
        name = names.get((self.code, self.subcode))
        if name is None:
            try:
                name = f"{ErrorCode(self.code).name.lower().replace('_', ' ')} {self.subcode}"
            except ValueError:
                name = f"error {self.code}/{self.subcode}"
        return f"{name} ({self.code}/{self.subcode})"


@dataclass(frozen=True)
class RouteRefresh:
    family: Family


@dataclass(frozen=True)
class AsPathSegment:
    type: SegmentType
    asns: tuple[int, ...]


@dataclass(frozen=True)
class MpReach:
    family: Family
    next_hops: tuple[IPAddress, ...]
    nlri: tuple[IPNetwork, ...]


@dataclass(frozen=True)
class MpUnreach:
    family: Family
    withdrawn: tuple[IPNetwork, ...]


@dataclass(frozen=True)
class RawAttribute:
    flags: int
    type: int
    value: bytes


@dataclass(frozen=True)
class Update:
    """An UPDATE. IPv4 unicast routes travel in `withdrawn`/`nlri`, IPv6 in mp_*.

    `treat_as_withdraw` is set by `decode` (RFC 7606) and says why: every route the message
    announces counts as withdrawn. `problems` lists attributes that were discarded.
    """

    withdrawn: tuple[ipaddress.IPv4Network, ...] = ()
    nlri: tuple[ipaddress.IPv4Network, ...] = ()
    origin: Origin | None = None
    as_path: tuple[AsPathSegment, ...] | None = None
    next_hop: ipaddress.IPv4Address | None = None
    med: int | None = None
    local_pref: int | None = None
    communities: tuple[StandardCommunity, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()
    mp_reach: MpReach | None = None
    mp_unreach: MpUnreach | None = None
    other: tuple[RawAttribute, ...] = ()
    treat_as_withdraw: str | None = None
    problems: tuple[str, ...] = ()

    def announced(self) -> tuple[IPNetwork, ...]:
        if self.treat_as_withdraw is not None:
            return ()
        return (*self.nlri, *(self.mp_reach.nlri if self.mp_reach else ()))

    def withdrawn_all(self) -> tuple[IPNetwork, ...]:
        routes: list[IPNetwork] = [
            *self.withdrawn,
            *(self.mp_unreach.withdrawn if self.mp_unreach else ()),
        ]
        if self.treat_as_withdraw is not None:
            routes += [*self.nlri, *(self.mp_reach.nlri if self.mp_reach else ())]
        return tuple(routes)

    @property
    def end_of_rib(self) -> Family | None:
        """The family whose initial table this End-of-RIB marker closes (RFC 4724), if it is one."""
        if self == Update():
            return IPV4_UNICAST
        if (
            self.mp_unreach is not None
            and not self.mp_unreach.withdrawn
            and replace(self, mp_unreach=None) == Update()
        ):
            return self.mp_unreach.family
        return None


Message = Open | Update | Notification | Keepalive | RouteRefresh
