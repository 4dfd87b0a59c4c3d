"""Running pikube's speaker in a lab: the seed's manifests, a shared key, one speaker per node.

Lab glue only: it writes the files a user would write (a directory of Kubernetes YAML, from
`seed_service.manifests`, and a key file), starts `pikube lb speaker` on each node through the
lab supervisor, reads a speaker's /status, and asks which host answers ARP/NDP for an IP.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pikube.errors import PikubeError
from pikube.helpers import METRICS_PORT
from pikube.lab import state
from pikube.lab.hosts.processes import ProcessRecord, TcpListening, is_running, log_tail
from pikube.lab.lab import Lab
from pikube.lab.services import seed_service
from pikube.lab.services.seed_service import http_body

SEED_VIP = "198.51.100.230"
SEED_VIP6 = "2001:db8:68::230"
WORKERS = ("node01", "node02", "node03")


@dataclass
class SpeakerFleet:
    """Speakers on lab nodes sharing one manifest directory and key."""

    lab: Lab
    directory: Path
    nodes: tuple[str, ...] = WORKERS
    interval_ms: int | None = None  # None: the speaker's defaults
    multiplier: int | None = None
    extra_args: tuple[str, ...] = ()
    records: dict[str, ProcessRecord] = field(default_factory=dict)

    @property
    def manifests(self) -> Path:
        return self.directory / "manifests"

    @property
    def key_file(self) -> Path:
        return self.directory / "speaker.key"

    def prepare(self, docs: Sequence[dict[str, Any]] | None = None) -> None:
        """Write the key (once) and the manifests (default: the seed's, nginx on node02)."""
        if not self.key_file.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            self.key_file.touch(mode=0o600)
            self.key_file.write_text(secrets.token_urlsafe(32) + "\n")
        self.write(docs if docs is not None else seed_service.manifests(self.lab.topology))

    def write(self, docs: Sequence[dict[str, Any]]) -> None:
        seed_service.write_manifests(self.manifests, docs)

    def argv(self, node: str) -> list[str]:
        return [
            sys.executable, "-m", "pikube", "lb", "speaker",
            "--node", node,
            "--source", f"dir:{self.manifests}",
            "--interface", "eth0",
            "--key-file", str(self.key_file),
            "--metrics-port", str(METRICS_PORT),
            "--state-dir", str(self.directory / "state"),
            *(["--interval-ms", str(self.interval_ms)] if self.interval_ms else []),
            *(["--multiplier", str(self.multiplier)] if self.multiplier else []),
            *self.extra_args,
        ]  # fmt: skip

    def start(self, node: str) -> ProcessRecord:
        record = self.lab.start(
            node, "speaker", self.argv(node), ready=TcpListening(METRICS_PORT), ready_timeout_s=20
        )
        self.records[node] = record
        return record

    def start_all(self, timeout_s: float = 20.0) -> None:
        """Start every speaker at once (as a DaemonSet would), then wait until all listen."""
        for node in self.nodes:
            self.records[node] = self.lab.start(node, "speaker", self.argv(node))
        ready = TcpListening(METRICS_PORT)
        deadline = time.monotonic() + timeout_s
        for node, record in self.records.items():
            while not ready(record):
                if not is_running(record.pid, record.start_ticks):
                    raise PikubeError(
                        f"the speaker on {node} exited while starting; its log ends with:\n"
                        f"{log_tail(record)}"
                    )
                if time.monotonic() > deadline:
                    raise PikubeError(f"the speaker on {node} did not start in {timeout_s:g} s")
                time.sleep(0.02)

    def status(self, node: str) -> dict[str, object]:
        return speaker_status(self.lab, node)

    def settled(self) -> bool:
        """Every speaker has joined and hears all the others."""
        for node in self.nodes:
            status = self.status(node)
            peers = status["peers"]
            assert isinstance(peers, dict)
            if status["joining"] or set(peers) != set(self.nodes) - {node}:
                return False
        return True

    def owners(self, ip: str = SEED_VIP) -> list[str]:
        """Nodes whose speaker says it announces `ip` right now."""
        found = []
        for node in self.nodes:
            try:
                announcing = self.status(node)["announcing"]
            except (OSError, ValueError):
                continue
            assert isinstance(announcing, list)
            if ip in announcing:
                found.append(node)
        return found


def speaker_status(lab: Lab, node: str) -> dict[str, object]:
    data = json.loads(http_body(lab, node, METRICS_PORT, "/status"))
    assert isinstance(data, dict)
    return data


def speaker_metrics(lab: Lab, node: str) -> str:
    return http_body(lab, node, METRICS_PORT, "/metrics").decode()


def lab_dir(lab: Lab, name: str) -> Path:
    """A directory for lab files, removed with the lab."""
    return state.lab_dir(lab.name) / name


def answering_host(lab: Lab, ip: str, source: str = "client") -> str | None:
    """The lab host whose MAC answers ARP (IPv4) or NDP (IPv6) for `ip`, asked from `source`."""
    if ":" in ip:
        argv = ["ndisc6", "-1", "-r", "1", "-w", "300", ip, "eth0"]
    else:
        argv = ["arping", "-c", "1", "-w", "1", "-I", "eth0", ip]
    out = lab.run(source, argv, timeout_s=5).stdout.lower()
    by_mac = {h.mac: h.name for h in lab.topology.hosts}
    for mac, name in by_mac.items():
        if mac in out:
            return name
    return None
