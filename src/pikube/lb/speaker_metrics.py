"""The layer-2 speaker's metrics: MetalLB's names where the meaning is the same, pikube's own
for the rest. Counted by the wiring (`pikube.lb.speaker`) and the announcers."""

from __future__ import annotations

import logging

from pikube.lb.l2 import events as ev
from pikube.lb.l2.core import SpeakerCore
from pikube.lb.metrics import Registry

log = logging.getLogger("pikube.speaker")

PROTOCOL_LAYER2 = "layer2"


class SpeakerMetrics:
    """MetalLB's metric names where the meaning is the same, pikube's own for the rest."""

    def __init__(self, node: str) -> None:
        self.node = node
        r = self.registry = Registry()
        self.requests = r.counter(
            "metallb_layer2_requests_received",
            "Number of layer2 requests received for owned IPs",
            "ip",
        )
        self.responses = r.counter(
            "metallb_layer2_responses_sent", "Number of layer2 responses sent for owned IPs", "ip"
        )
        self.gratuitous = r.counter(
            "metallb_layer2_gratuitous_sent", "Number of gratuitous layer2 packets sent", "ip"
        )
        self.announced = r.gauge(
            "metallb_speaker_announced",
            "Services being announced from this node",
            "service",
            "protocol",
            "node",
            "ip",
        )
        self.peers = r.gauge("pikube_membership_peers", "Live peer speakers seen by this node")
        self.heartbeats_sent = r.counter(
            "pikube_membership_heartbeats_sent_total", "Heartbeats sent", "interface"
        )
        self.heartbeats_received = r.counter(
            "pikube_membership_heartbeats_received_total",
            "Heartbeats received, by result (accepted, unauthenticated, malformed, replayed)",
            "result",
        )
        self.expired = r.counter(
            "pikube_membership_peers_expired_total", "Peers declared dead after the detect time"
        )
        self.takeovers = r.counter("pikube_layer2_takeovers_total", "Targets this node took")
        self.releases = r.counter(
            "pikube_layer2_releases_total", "Targets this node gave up, by reason", "reason"
        )
        self.conflicts = r.counter(
            "pikube_layer2_conflicts_total",
            "Non-speaker hosts seen answering for a service IP",
            "ip",
        )
        self.malformed_packets = r.counter(
            "pikube_layer2_malformed_packets_total", "Malformed ARP/NDP packets ignored", "protocol"
        )
        self.problems = r.gauge(
            "pikube_speaker_config_problems", "Services or files the speaker cannot act on"
        )

    # L2Stats, for the announcers
    def request_received(self, ip: str) -> None:
        self.requests.inc(ip)

    def response_sent(self, ip: str) -> None:
        self.responses.inc(ip)

    def gratuitous_sent(self, ip: str) -> None:
        self.gratuitous.inc(ip)

    def malformed(self, protocol_name: str) -> None:
        self.malformed_packets.inc(protocol_name)

    def took(self, action: ev.Took) -> None:
        announcement = action.announcement
        self.takeovers.inc()
        for service in announcement.services:
            for address in announcement.target.ips:
                self.announced.set(1, service, PROTOCOL_LAYER2, self.node, address)
        ips, services = ", ".join(announcement.target.ips), ", ".join(announcement.services)
        log.info("announcing %s (%s)", ips, services)

    def gave(self, action: ev.Gave) -> None:
        announcement = action.announcement
        for service in announcement.services:
            for ip in announcement.target.ips:
                self.announced.remove(service, PROTOCOL_LAYER2, self.node, ip)
        self.releases.inc(action.reason.split(":")[0])
        log.info("stopped announcing %s (%s)", ", ".join(announcement.target.ips), action.reason)

    def collect(self, core: SpeakerCore | None) -> None:
        """Membership figures into the metrics, when they are scraped (not every tick)."""
        if core is None:
            return
        counters = core.view.counters
        m = self
        m.peers.set(len(core.view.peers))
        m.expired.set(counters.expired)
        for result in ("accepted", "malformed", "unauthenticated", "replayed"):
            m.heartbeats_received.set(getattr(counters, result), result)
