"""One exit-status convention for every command (README, "Exit status"; decision 0090):
0 done, 1 it failed (or found something failing), 2 invalid input or usage; 130 interrupted,
70 a bug. Each command is run here the way a user gets each status wrong, without root and
without building a lab."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pikube.cli import cli
from pikube.cluster.spec import SEED_SPEC
from tests.unit.lb.test_cli_allocate import POOLS

ABSENT_LAB = "tnolab0"  # never built: a valid name no test creates


def _files(tmp: Path) -> dict[str, str]:
    good = tmp / "pools.yaml"
    good.write_text(POOLS)
    bad = tmp / "bad.yaml"
    bad.write_text(POOLS.replace("198.51.100.230-198.51.100.231", "198.51.100.1/24"))
    spec = tmp / "cluster.yaml"
    spec.write_text(SEED_SPEC)
    invalid_spec = tmp / "invalid.yaml"
    invalid_spec.write_text(SEED_SPEC.replace("role: worker}", "role: workr}", 1))
    unreachable = tmp / "unreachable.yaml"
    unreachable.write_text(
        SEED_SPEC.replace("port: 22", "port: 1")  # nothing listens: connection refused
        .replace("192.168.68.20", "127.0.0.1")
        .replace("~/.local/state/pikube/known_hosts", str(tmp / "known_hosts"))
        .replace("192.168.68.230-192.168.68.250", "198.51.100.230-198.51.100.250")
    )
    key = tmp / "speaker.key"
    key.write_text("c2hvcnQ=\n")  # too short to be a key
    return {
        "GOOD": str(good),
        "BAD": str(bad),
        "SPEC": str(spec),
        "INVALID_SPEC": str(invalid_spec),
        "UNREACHABLE": str(unreachable),
        "KEY": str(key),
        "MISSING": str(tmp / "missing.yaml"),
        "LOG": str(tmp / "apply.jsonl"),
    }


CASES = [
    # lab
    ("lab frobnicate", 2),
    ("lab up --name Bad_Name", 2),
    ("lab up --name tnolab0 --fault node02=bogus", 2),
    ("lab up --name tnolab0 --no-such-option", 2),
    ("lab down --name Bad_Name", 2),
    ("lab status --name tnolab0", 1),
    ("lab status --name tnolab0 -o json", 1),
    ("lab exec --name tnolab0 nosuchhost -- true", 2),
    ("lab exec --name tnolab0 client -- true", 1),
    ("lab kubeconfig --name tnolab0", 1),
    ("lab cluster-spec --name tnolab0", 1),
    ("lab demo --name Bad_Name", 2),
    # lb
    ("lb allocate -f GOOD", 0),
    ("lb allocate -f BAD", 2),
    ("lb allocate -f MISSING", 2),
    ("lb allocate -f GOOD --service-cidr 198.51.100.0/24", 2),
    ("lb allocate", 2),
    ("lb speaker --node n1 --source dir:MISSING --key-file KEY", 2),
    ("lb speaker --node n1 --source http:x --key-file MISSING", 2),
    # cluster
    ("cluster schema", 0),
    ("cluster init -f SPEC", 2),
    ("cluster plan -f MISSING", 2),
    ("cluster plan -f INVALID_SPEC", 2),
    ("cluster apply -f INVALID_SPEC --yes --log LOG", 2),
    ("cluster doctor -f INVALID_SPEC", 2),
    ("cluster plan -f UNREACHABLE", 1),
    ("cluster doctor -f UNREACHABLE", 1),
    ("cluster apply -f UNREACHABLE --yes --log LOG", 1),
    # bench
    ("bench failover --impl nosuch", 2),
]


@pytest.mark.parametrize(("command", "status"), CASES, ids=[c for c, _ in CASES])
def test_exit_status_follows_the_convention(tmp_path: Path, command: str, status: int) -> None:
    files = _files(tmp_path)
    args = [files.get(word, word) for word in command.split()]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == status, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
