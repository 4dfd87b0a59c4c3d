"""The prober's pure parts (responses, outage analysis, state changes, ARP table) and the prober
itself against a real local HTTP server (no root needed)."""

from __future__ import annotations

import asyncio
import errno

from hypothesis import given
from hypothesis import strategies as st

from pikube.lab.network.probe import (
    NeighbourState,
    Outcome,
    ProberConfig,
    ProbeResult,
    ProbeRun,
    Transition,
    TransitionTracker,
    failed_probes,
    host_of_mac,
    is_up,
    longest_gap,
    neighbour_state,
    outage_around,
    outcome_of_error,
    parse_response,
    parse_transitions,
    reported_since,
    run_prober,
)
from pikube.lab.network.topology import SEED_HOSTS


def _ok(start: float, end: float | None = None, backend: str = "node02") -> ProbeResult:
    return ProbeResult(start, start + 0.001 if end is None else end, Outcome.OK, backend)


def _bad(start: float, outcome: Outcome = Outcome.TIMEOUT) -> ProbeResult:
    return ProbeResult(start, start + 0.05, outcome)


def _every_10ms(first: float, last: float) -> list[float]:
    count = round((last - first) / 0.01)
    return [round(first + i * 0.01, 6) for i in range(count + 1)]


def test_parse_response_reads_the_status_and_the_backend_header() -> None:
    raw = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nX-Pikube-Host: node02\r\n\r\n<html>"
    assert parse_response(raw) == (200, "node02")
    assert parse_response(b"HTTP/1.0 502 Bad Gateway\r\n\r\n") == (502, None)
    assert parse_response(b"") is None
    assert parse_response(b"garbage\r\n\r\n") is None


def test_socket_errors_are_classified() -> None:
    assert outcome_of_error(TimeoutError()) is Outcome.TIMEOUT
    assert outcome_of_error(ConnectionRefusedError()) is Outcome.REFUSED
    assert outcome_of_error(ConnectionResetError()) is Outcome.RESET
    assert outcome_of_error(OSError(errno.EHOSTUNREACH, "no route")) is Outcome.UNREACHABLE
    assert outcome_of_error(OSError(errno.EACCES, "denied")) is Outcome.ERROR


def test_the_outage_is_the_gap_from_the_last_success_before_the_failure() -> None:
    # Successes every 10 ms until 1.00, failures until 1.30, successes again from 1.31.
    probes = [_ok(t) for t in _every_10ms(0.5, 1.0)]
    probes += [_bad(t) for t in _every_10ms(1.01, 1.30)]
    probes += [_ok(t) for t in _every_10ms(1.31, 1.6)]
    outage = outage_around(probes, failure_s=1.005)
    assert outage is not None
    assert outage.last_ok_before.start_s == 1.0
    assert outage.first_ok_after.start_s == 1.31
    assert round(outage.duration_ms) == 310
    assert len(failed_probes(probes, failure_s=1.005)) == 30
    assert longest_gap(probes) == outage


def test_a_relapse_after_recovery_counts_if_it_is_longer() -> None:
    probes = [_ok(0.99), _bad(1.0), _ok(1.05), _bad(1.06), _bad(1.2), _ok(1.5)]
    outage = outage_around(probes, failure_s=0.995)
    assert outage is not None
    assert outage.last_ok_before.start_s == 1.05
    assert outage.first_ok_after.start_s == 1.5


def test_no_outage_can_be_measured_without_successes_on_both_sides() -> None:
    assert outage_around([_bad(1.0), _ok(2.0)], failure_s=1.5) is None
    assert outage_around([_ok(1.0), _bad(2.0)], failure_s=1.5) is None
    assert longest_gap([_ok(1.0)]) is None


def test_a_loss_free_handover_has_no_failed_probes_and_a_gap_of_one_interval() -> None:
    probes = [_ok(t) for t in _every_10ms(0.5, 1.5)]
    outage = outage_around(probes, failure_s=1.0)
    assert outage is not None
    assert round(outage.duration_ms) == 10
    assert failed_probes(probes, failure_s=1.0) == []


def test_failures_before_the_last_success_are_not_the_failures_fault() -> None:
    probes = [_bad(0.4), _ok(0.5), _ok(0.6), _bad(0.7, Outcome.REFUSED), _ok(0.8)]
    assert [p.outcome for p in failed_probes(probes, failure_s=0.65)] == [Outcome.REFUSED]


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=100, allow_nan=False), st.sampled_from(list(Outcome))
        ),
        max_size=40,
    ),
    st.floats(min_value=0, max_value=100, allow_nan=False),
)
def test_the_outage_starts_at_the_last_success_before_the_failure_or_later(
    samples: list[tuple[float, Outcome]], failure_s: float
) -> None:
    probes = [ProbeResult(t, t + 0.01, outcome) for t, outcome in samples]
    outage = outage_around(probes, failure_s)
    oks_before = [p.end_s for p in probes if p.ok and p.end_s <= failure_s]
    if outage is None:
        assert not oks_before or all(p.end_s <= failure_s for p in probes if p.ok)
        return
    assert max(oks_before) <= outage.last_ok_before.end_s
    assert failure_s < outage.first_ok_after.end_s
    inside = [
        p
        for p in probes
        if p.ok and outage.last_ok_before.end_s < p.end_s < outage.first_ok_after.end_s
    ]
    assert inside == []


@given(st.lists(st.booleans(), max_size=30))
def test_the_tracker_alternates_and_starts_with_up(oks: list[bool]) -> None:
    tracker = TransitionTracker()
    changes = [
        c
        for i, ok in enumerate(oks)
        if (c := tracker.feed(ProbeResult(i, i, Outcome.OK if ok else Outcome.TIMEOUT)))
    ]
    assert [c.up for c in changes] == [i % 2 == 0 for i in range(len(changes))]
    assert is_up(changes) == (bool(oks) and True in oks and oks[-1])


def test_transitions_are_read_back_from_the_prober_log() -> None:
    log = "up 10.000001 ok\ndown 11.500000 timeout\nsomething else\nup 11.900000 ok\n"
    changes = parse_transitions(log)
    assert changes == [Transition(True, 10.000001), Transition(False, 11.5), Transition(True, 11.9)]
    assert is_up(changes)
    assert reported_since(changes, 11.0, up=False)
    assert not reported_since(changes, 12.0, up=True)
    assert not is_up(parse_transitions("up 1.0 ok\ndown 2.0 refused\n"))
    assert not is_up([])


def test_a_run_survives_its_json_round_trip() -> None:
    run = ProbeRun("198.51.100.230", 80, 10, 50, (_ok(1.0), _bad(1.01, Outcome.UNREACHABLE)))
    assert ProbeRun.from_json(run.to_json()) == run


def test_neighbour_states_and_macs_of_lab_hosts() -> None:
    assert neighbour_state(0x02) is NeighbourState.REACHABLE
    assert neighbour_state(0x80) is NeighbourState.PERMANENT
    assert neighbour_state(0) is NeighbourState.NONE
    host = host_of_mac(SEED_HOSTS, "02:00:00:00:00:22")
    assert host is not None
    assert host.name == "node02"
    assert host_of_mac(SEED_HOSTS, "02:00:00:00:00:99") is None
    assert host_of_mac(SEED_HOSTS, None) is None


def test_the_prober_sees_a_server_answer_then_refuse() -> None:
    """A real HTTP server on 127.0.0.1 answers 5 probes and closes; the prober reports both."""

    async def scenario() -> ProbeRun:
        served = 0
        closed = asyncio.Event()
        stop = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal served
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nX-Pikube-Host: node02\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            served += 1
            if served == 5:
                server.close()
                closed.set()

        def observe(result: ProbeResult) -> None:
            if closed.is_set() and result.outcome is Outcome.REFUSED:
                stop.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        config = ProberConfig("127.0.0.1", port, interval_ms=5, timeout_ms=1000, max_duration_s=30)
        return await run_prober(config, stop, observe)

    run = asyncio.run(scenario())
    outcomes = [p.outcome for p in run.probes]
    assert outcomes.count(Outcome.OK) >= 5
    assert Outcome.REFUSED in outcomes
    assert {p.backend for p in run.probes if p.ok} == {"node02"}
    first_refused = outcomes.index(Outcome.REFUSED)
    assert Outcome.OK not in outcomes[first_refused:]
