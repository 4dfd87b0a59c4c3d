"""One exit-status convention for every command (README, "Exit status"; decision 0090):
0 done, 1 it failed (or found something failing), 2 invalid input or usage; 130 interrupted,
70 a bug. Each command is run here the way a user gets each status wrong, without root and
without building a lab."""

from __future__ import annotations

import base64
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pikube.cli import cli
from pikube.cluster.spec import SEED_SPEC
from pikube.inputs import InputBudget
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
    good_key = tmp / "good.key"
    good_key.write_text(base64.b64encode(bytes(range(32))).decode() + "\n")
    manifests = tmp / "manifests"
    manifests.mkdir()
    return {
        "GOOD": str(good),
        "BAD": str(bad),
        "SPEC": str(spec),
        "INVALID_SPEC": str(invalid_spec),
        "UNREACHABLE": str(unreachable),
        "KEY": str(key),
        "MISSING": str(tmp / "missing.yaml"),
        "LOG": str(tmp / "apply.jsonl"),
        "DIR": str(manifests),
        "GOOD_KEY": str(good_key),
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
    ("lab down --name tnolab0", 0),  # nothing to take down is not a failure
    ("lab build --component nosuch", 2),
    ("lab build -o xml", 2),
    # lb
    ("lb allocate -f GOOD", 0),
    ("lb allocate -f BAD", 2),
    ("lb allocate -f MISSING", 2),
    ("lb allocate -f GOOD --service-cidr 198.51.100.0/24", 2),
    ("lb allocate", 2),
    ("lb speaker --node n1 --source dir:MISSING --key-file KEY", 2),
    ("lb speaker --node n1 --source http:x --key-file MISSING", 2),
    (
        "lb speaker --node n1 --source dir:DIR --key-file GOOD_KEY --metrics-host 127.0.0.1 "
        "--metrics-port TAKEN",
        1,
    ),
    ("lb bgp-speaker --node n1 --source dir:MISSING", 2),
    ("lb bgp-speaker --node n1 --source dir:DIR --router-id notanip", 2),
    ("lb bgp-speaker --node n1 --source dir:DIR --metrics-host 127.0.0.1 --metrics-port TAKEN", 1),
    ("lb controller --kubeconfig MISSING", 2),
    ("lb controller --kubeconfig KEY", 2),  # not a kubeconfig
    ("lb controller --lease-duration-s 0 --kubeconfig MISSING", 2),
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
    ("cluster plan -f SPEC -o yaml", 2),
    ("cluster kubeconfig -f MISSING", 2),
    ("cluster kubeconfig -f UNREACHABLE", 1),
    ("cluster reset -f SPEC --node nosuch --yes", 2),
    ("cluster reset -f SPEC --node master", 2),  # no terminal to ask: --yes is required
    ("cluster reset -f UNREACHABLE --yes --log LOG", 1),
    # bench
    ("bench failover --impl nosuch", 2),
    ("bench bgp --router nosuch", 2),
    ("bench lb-api --runs 0", 2),
    ("bench cluster --runs 0", 2),
    ("bench kube-lb --impl nosuch", 2),
    ("bench seed-story --name Bad_Name", 2),
]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A local port something already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(("command", "status"), CASES, ids=[c for c, _ in CASES])
def test_exit_status_follows_the_convention(
    tmp_path: Path, taken_port: int, command: str, status: int
) -> None:
    files = {**_files(tmp_path), "TAKEN": str(taken_port)}
    args = [re.sub(r"[A-Z_]{3,}", lambda m: files.get(m[0], m[0]), w) for w in command.split()]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == status, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[str]:
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path)


def test_every_command_is_run_into_the_convention() -> None:
    """A new command gets its cases here: each command of lab, lb, cluster and bench is run at
    least once, and each of lab, lb and cluster into both 1 (failed) and 2 (invalid input)."""
    tested = {" ".join(c.split()[:2]) for c, _ in CASES}
    assert set(_commands(cli)) - tested == set()
    for group in ("lab", "lb", "cluster"):
        statuses = {status for c, status in CASES if c.startswith(group + " ")}
        assert {1, 2} <= statuses, group


def test_ctrl_c_exits_130_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in any command (here while `lb allocate -f -` reads its input) is status 130, as
    the shell reports a SIGINT; click alone would print "Aborted!" and exit 1."""

    def interrupted(_self: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(InputBudget, "read_stdin", interrupted)
    result = CliRunner().invoke(cli, ["lb", "allocate", "-f", "-"])
    assert result.exit_code == 130, (result.output, result.exception)
    assert result.output == "pikube: interrupted\n"


def test_a_file_that_is_no_kubeconfig_is_named_as_such(tmp_path: Path) -> None:
    key = _files(tmp_path)["KEY"]
    result = CliRunner().invoke(cli, ["lb", "controller", "--kubeconfig", key])
    assert result.exit_code == 2
    assert result.output.startswith(f"pikube: error: kubeconfig {key}: not a kubeconfig")
