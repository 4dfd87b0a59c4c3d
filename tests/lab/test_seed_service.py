"""The seed's story pieces: nginx on node02 behind the VIP, seen from the client, before and
after an announcer exists (keepalived stands in for pikube's speaker here)."""

from __future__ import annotations

import pytest

from pikube.bench.failover import ANNOUNCERS, KeepalivedBaseline, wait_until
from pikube.lab.lab import Lab
from pikube.lab.network.probe import NeighbourState, Outcome
from pikube.lab.services import kubeproxy
from pikube.lab.services.seed_service import SEED_VIP, look_from_client, publish, unpublish
from tests.conftest import new_lab_name
from tests.helpers import run_pikube

pytestmark = pytest.mark.lab


def test_the_seed_service_needs_an_announcer_and_then_answers_from_node02(lab: Lab) -> None:
    service = publish(lab)
    assert service.backend_host == "node02"
    assert service.nodes == ("master", "node01", "node02", "node03")
    assert all(kubeproxy.ruleset(lab, node) for node in service.nodes)

    before = look_from_client(lab, service, timeout_s=0.3)
    assert before.http.outcome is Outcome.TIMEOUT  # nobody answers ARP for the VIP
    assert before.owner is None
    assert before.neighbour is not None
    assert before.neighbour.state in (NeighbourState.INCOMPLETE, NeighbourState.FAILED)

    announcer = KeepalivedBaseline(name="keepalived-100ms", advert_int_s=0.1)
    announcer.start(lab, ANNOUNCERS, SEED_VIP)
    try:
        wait_until(announcer.settled, 30, "keepalived electing node01")
        view = look_from_client(lab, service)
        assert view.http.outcome is Outcome.OK
        assert view.http.backend == "node02"  # the seed's single replica...
        assert view.neighbour is not None
        assert view.neighbour.mac == "02:00:00:00:00:21"  # ...reached through node01's MAC
        assert view.owner is not None
        assert view.owner.name == "node01"
    finally:
        announcer.stop()
    unpublish(lab, service)
    assert not any(kubeproxy.ruleset(lab, node) for node in service.nodes)


def test_the_hidden_seed_story_command_tells_the_story_with_figures() -> None:
    name = new_lab_name()
    result = run_pikube("bench", "seed-story", "--name", name, timeout_s=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "nginx on node02 behind 198.51.100.230:80" in out
    assert "before any announcer: timeout" in out
    assert "-> ok from node02" in out
    assert "198.51.100.230 at 02:00:00:00:00:21 = node01's eth0" in out
    assert "node01 crashed" in out
    assert "the new owner is node02" in out
