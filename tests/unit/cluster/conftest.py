"""Facts fixtures: the real output of the facts script on a lab Pi, fresh and prepared."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pikube.cluster.facts import HostFacts, parse_facts
from pikube.cluster.spec import SEED_SPEC, ClusterSpec, parse_spec

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fresh() -> HostFacts:
    """A fresh Raspberry Pi OS: nothing installed, dphys-swapfile on, memory cgroup off."""
    return parse_facts((FIXTURES / "fresh-pi.txt").read_text())


@pytest.fixture
def prepared() -> HostFacts:
    """The same host after `pikube cluster apply` (and its reboot)."""
    return parse_facts((FIXTURES / "prepared-pi.txt").read_text())


@pytest.fixture
def spec() -> ClusterSpec:
    data = yaml.safe_load(SEED_SPEC)
    data["packages"]["kubernetes_repository"] = (
        "http://198.51.100.1/kubernetes/core:/stable:/v1.31/deb/"
    )
    return parse_spec(data, "cluster.yaml")
