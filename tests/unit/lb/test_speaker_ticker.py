"""The heartbeat tick runs on its own thread: a quiet tick's heartbeat is sent from there (the
event loop sleeps on), everything else is carried out on the loop in the order the core asked
for it, and a crashed tick stops the speaker with one clear line."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pikube.errors import PikubeError
from pikube.lb.announcements import DesiredState
from pikube.lb.l2 import events as ev
from pikube.lb.l2.core import SpeakerCore
from pikube.lb.membership.protocol import Heartbeat
from pikube.lb.speaker import run_forever
from pikube.lb.ticker import Carrier, Ticker, runs_in_place
from tests.unit.lb.test_speaker_wiring import settings

HEARTBEAT = ev.SendHeartbeat(
    Heartbeat("node01", 1, 0, 60, 3, b"\x02" * 6, ("eth0",), frozenset(), False, False),
    ("eth0",),
)
CLAIM = ev.Claim(b"\xc6\x33\x64\x64", ("eth0",))


def test_only_a_lone_heartbeat_with_nothing_before_it_runs_in_place() -> None:
    assert runs_in_place([HEARTBEAT], pending=False, leaving=False)
    assert not runs_in_place([CLAIM, HEARTBEAT], pending=False, leaving=False)
    assert not runs_in_place([HEARTBEAT], pending=True, leaving=False)  # order is kept
    assert not runs_in_place([HEARTBEAT], pending=False, leaving=True)
    assert not runs_in_place([], pending=False, leaving=False)


def test_actions_from_the_tick_thread_keep_their_order_and_land_on_the_loop() -> None:
    done: list[tuple[str, str]] = []  # (action, thread that carried it out)
    after: list[str] = []

    def record(action: Any) -> None:
        done.append((type(action).__name__, threading.current_thread().name))

    carrier = Carrier(
        {ev.SendHeartbeat: record, ev.Claim: record},
        after=lambda: after.append(threading.current_thread().name),
        timer_moves=lambda: False,
        guard=lambda callback, _what: callback,
    )

    async def scenario() -> None:
        carrier.bind(asyncio.get_running_loop())

        def tick_thread() -> None:
            with carrier.lock:
                carrier.carry([HEARTBEAT], leaving=False)  # quiet: sent in place
                carrier.carry([CLAIM, HEARTBEAT], leaving=False)  # for the loop
                carrier.carry([HEARTBEAT], leaving=False)  # after a pending batch: loop too

        thread = threading.Thread(target=tick_thread, name="tick")
        thread.start()
        thread.join()
        for _ in range(10):
            await asyncio.sleep(0)

    asyncio.run(scenario())
    loop_thread = threading.current_thread().name
    assert done == [
        ("SendHeartbeat", "tick"),
        ("Claim", loop_thread),
        ("SendHeartbeat", loop_thread),
        ("SendHeartbeat", loop_thread),
    ]
    assert after
    assert set(after) == {loop_thread}


def test_the_ticker_repeats_until_stopped_and_not_after() -> None:
    times: list[float] = []
    ticker = Ticker(0.01, lambda: times.append(time.monotonic()), on_crash=lambda _e: None)
    ticker.start()
    deadline = time.monotonic() + 5
    while len(times) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    ticker.stop()
    count = len(times)
    time.sleep(0.05)
    assert count >= 5
    assert len(times) == count
    assert not ticker.running


def test_a_crashing_tick_is_reported_once_and_ends_the_ticks() -> None:
    crashes: list[Exception] = []

    def tick() -> None:
        raise ValueError("boom")

    ticker = Ticker(0.001, tick, on_crash=crashes.append)
    ticker.start()
    deadline = time.monotonic() + 5
    while not crashes and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.02)
    assert [str(e) for e in crashes] == ["boom"]
    assert not ticker.running


class WaitingSource:
    """One desired state, then the source ends the run with `reason` once `done` is set."""

    def __init__(self, done: threading.Event, reason: str) -> None:
        self.done, self.reason = done, reason

    async def updates(self) -> AsyncIterator[DesiredState]:
        yield DesiredState()
        while not self.done.is_set():
            await asyncio.sleep(0.01)
        raise RuntimeError(self.reason)


def test_a_running_speakers_quiet_ticks_never_touch_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, bool]] = []  # (which way, decided on the loop's thread?)
    done = threading.Event()
    handle, quiet_tick = SpeakerCore.handle, SpeakerCore.quiet_tick

    def saw(way: str) -> None:
        seen.append((way, threading.current_thread() is threading.main_thread()))
        if len(seen) >= 5:
            done.set()

    def spying(core: SpeakerCore, event: ev.Event) -> list[ev.Action]:
        if isinstance(event, ev.Tick):
            saw("tick")
        return handle(core, event)

    def spying_quietly(core: SpeakerCore, now: float, received: Any) -> ev.SendHeartbeat | None:
        saw("quiet tick")
        return quiet_tick(core, now, received)

    monkeypatch.setattr(SpeakerCore, "handle", spying)
    monkeypatch.setattr(SpeakerCore, "quiet_tick", spying_quietly)
    with pytest.raises(PikubeError, match="enough ticks"):
        run_forever(settings(tmp_path), WaitingSource(done, "enough ticks"))
    assert len(seen) >= 5
    assert not any(on_loop for _, on_loop in seen)


def test_a_crashed_tick_stops_the_speaker_with_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = SpeakerCore.handle

    def broken(core: SpeakerCore, event: ev.Event) -> list[ev.Action]:
        if isinstance(event, ev.Tick):
            raise ValueError("the clock went backwards")
        return handle(core, event)

    def broken_quietly(*_: object) -> None:
        raise ValueError("the clock went backwards")

    monkeypatch.setattr(SpeakerCore, "handle", broken)
    monkeypatch.setattr(SpeakerCore, "quiet_tick", broken_quietly)
    with pytest.raises(PikubeError) as caught:
        run_forever(settings(tmp_path), WaitingSource(threading.Event(), "never"))
    assert caught.value.message == (
        "speaker node01 stopped: heartbeat tick crashed: the clock went backwards"
    )
