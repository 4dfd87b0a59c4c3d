"""How the lab starts pikube's speaker: the command line a user would type."""

from __future__ import annotations

import sys
from pathlib import Path

from pikube.lab.lab import Lab
from pikube.lab.services.speakers import SpeakerFleet


def test_the_speaker_is_started_with_the_documented_command_line(tmp_path: Path) -> None:
    fleet = SpeakerFleet(Lab("unit"), tmp_path)
    argv = fleet.argv("node02")
    assert argv[:5] == [sys.executable, "-m", "pikube", "lb", "speaker"]
    flags = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert flags["--node"] == "node02"
    assert flags["--source"] == f"dir:{tmp_path / 'manifests'}"
    assert flags["--interface"] == "eth0"
    assert flags["--metrics-port"] == "7472"
    assert flags["--key-file"] == str(tmp_path / "speaker.key")
    assert Path(flags["--state-dir"]).parent == tmp_path  # not /var/lib/pikube
