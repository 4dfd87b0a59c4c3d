"""The lab's process supervisor, with real programs in a real lab host."""

from __future__ import annotations

import signal
import sys

import pytest

from pikube.errors import PikubeError
from pikube.lab.hosts.processes import LogMatches, TcpListening, is_running, log_tail
from pikube.lab.lab import Lab

pytestmark = pytest.mark.lab

HTTP_SERVER = [sys.executable, "-m", "http.server", "--bind", "198.51.100.22", "8080"]


def test_start_waits_for_readiness_and_the_service_answers_from_the_lan(lab: Lab) -> None:
    record = lab.start("node02", "web", HTTP_SERVER, ready=TcpListening(8080))
    assert is_running(record.pid, record.start_ticks)
    # The listener is in node02's namespace only: the client reaches it over the LAN.
    out = lab.run(
        "client",
        [
            sys.executable,
            "-c",
            "import urllib.request;print(urllib.request.urlopen('http://198.51.100.22:8080/').status)",
        ],
        check=True,
    )
    assert out.stdout.strip() == "200"
    assert lab.process("node02", "web").pid == record.pid
    status = lab.stop(record)
    assert status is not None
    assert not is_running(record.pid)
    assert lab.status().processes == ()
    assert "GET / HTTP" in log_tail(record)  # the log is kept and readable


def test_a_program_that_exits_while_starting_is_reported_with_its_log(lab: Lab) -> None:
    argv = [sys.executable, "-c", "import sys; print('bad config line 3'); sys.exit(4)"]
    with pytest.raises(PikubeError, match=r"exited with status 4(.|\n)*bad config line 3"):
        lab.start("node01", "broken", argv, ready=TcpListening(9))
    assert lab.status().processes == ()


def test_readiness_timeout_stops_the_process(lab: Lab) -> None:
    with pytest.raises(PikubeError, match=r"not ready after 0.3 s \(waited for a TCP listener"):
        lab.start("node01", "mute", ["sleep", "600"], ready=TcpListening(9), ready_timeout_s=0.3)
    assert lab.status().processes == ()


def test_log_readiness_and_a_missing_program(lab: Lab) -> None:
    argv = [sys.executable, "-u", "-c", "import time; print('listening now'); time.sleep(600)"]
    record = lab.start("node03", "talker", argv, ready=LogMatches(r"^listening now$"))
    with pytest.raises(PikubeError, match="already running"):
        lab.start("node03", "talker", argv)
    with pytest.raises(PikubeError, match="program 'no-such-daemon' not found"):
        lab.start("node03", "ghost", ["no-such-daemon"])
    lab.stop(record)


def test_stop_escalates_to_sigkill_for_a_process_that_ignores_sigterm(lab: Lab) -> None:
    argv = [
        sys.executable,
        "-u",
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up');"
        " time.sleep(600)",
    ]
    record = lab.start("node01", "stubborn", argv, ready=LogMatches("up"))
    status = lab.stop(record, timeout_s=0.2)
    assert status == -signal.SIGKILL
    assert not is_running(record.pid)
