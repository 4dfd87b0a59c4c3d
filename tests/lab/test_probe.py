"""The prober in the client measures a known outage; the client's ARP table names the owner."""

from __future__ import annotations

import time

import pytest

from pikube.bench.failover import wait_until
from pikube.lab import state
from pikube.lab.lab import Lab
from pikube.lab.network.probe import (
    NeighbourState,
    Outcome,
    ProberConfig,
    failed_probes,
    outage_around,
    owner_seen_by,
    read_neighbour,
    reported_since,
    start_prober,
    stop_prober,
    transitions_of,
)
from pikube.lab.services import web

pytestmark = pytest.mark.lab

BLOCK = """table inet probe-block {
    chain input {
        type filter hook input priority filter; policy accept;
        tcp dport 80 drop
    }
}
"""


def test_the_prober_measures_an_outage_that_covers_a_blocked_interval(lab: Lab) -> None:
    web.start(lab, web.site_for(lab, "node02"))
    out = state.lab_dir(lab.name) / "probe.json"
    prober = start_prober(lab, "client", "probe", ProberConfig("198.51.100.22", 80), out)

    lab.run("node02", ["nft", "-f", "-"], input_text=BLOCK, check=True)
    blocked_s = time.monotonic()  # from here on, no request reaches nginx
    wait_until(
        lambda: reported_since(transitions_of(prober), blocked_s, up=False), 10, "probes failing"
    )
    unblocked_s = time.monotonic()  # until here, none could
    lab.run("node02", ["nft", "delete", "table", "inet", "probe-block"], check=True)
    wait_until(
        lambda: reported_since(transitions_of(prober), unblocked_s, up=True), 10, "probes passing"
    )
    run = stop_prober(lab, prober, out)

    outage = outage_around(run.probes, blocked_s)
    assert outage is not None
    # The gap covers the block: the success before it was sent before the block began, the one
    # that ended it came back after the block was lifted.
    assert outage.last_ok_before.start_s < blocked_s
    assert outage.first_ok_after.end_s > unblocked_s
    failed = failed_probes(run.probes, blocked_s)
    assert failed
    assert {p.outcome for p in failed} == {Outcome.TIMEOUT}  # dropped SYNs: no answer at all
    assert {p.backend for p in run.probes if p.ok} == {"node02"}


def test_the_client_neighbour_table_names_the_host_behind_an_address(lab: Lab) -> None:
    assert read_neighbour(lab.namespace("client"), "198.51.100.23") is None
    lab.run("client", ["ping", "-c", "1", "-W", "1", "198.51.100.23"], check=True)
    entry = read_neighbour(lab.namespace("client"), "198.51.100.23")
    assert entry is not None
    assert entry.mac == "02:00:00:00:00:23"
    assert entry.state is NeighbourState.REACHABLE
    owner = owner_seen_by(lab, "198.51.100.23")
    assert owner is not None
    assert owner.name == "node03"
    lab.run("client", ["ping", "-6", "-c", "1", "-W", "1", "2001:db8:68::21"], check=True)
    v6 = owner_seen_by(lab, "2001:db8:68::21")
    assert v6 is not None
    assert v6.name == "node01"
