"""Names shared by the configuration readers."""

from __future__ import annotations

from collections.abc import Mapping

METALLB_GROUP = "metallb.io"
MAX_ASN = 2**32 - 1

# Documented MetalLB fields pikube does not implement: field -> why, and what to do instead.
_REJECTED: Mapping[tuple[str, str], str] = {
    ("L2Advertisement", "preferredNodeSelectors"): (
        "not supported by pikube: its election keeps the current announcer while it stays "
        "eligible and spreads new IPs by load, so weighted node preferences do not apply; "
        "restrict the announcers with nodeSelectors instead"
    ),
    ("BGPPeer", "vrf"): (
        "not supported by pikube: its BGP speaker peers from the node's main routing table "
        "only; remove the field to peer outside a VRF"
    ),
    ("BGPPeer", "interface"): (
        "not supported by pikube: BGP unnumbered (peering over an interface's IPv6 "
        "link-local address) is not implemented; give spec.peerAddress instead"
    ),
}

# MetalLB writes these; a dump of a cluster contains them. They carry no configuration.
_METALLB_STATUS_KINDS = frozenset({"ServiceL2Status", "ServiceBGPStatus", "ConfigurationState"})
