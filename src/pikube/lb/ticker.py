"""The heartbeat tick on its own thread, off the speaker's event loop.

An idle speaker wakes only for its heartbeat tick, about 18 times a second, and on these
machines each wake-up of a Python process is costly (most of it is the wake-up itself: caches
and predictors are cold after the CPU idled). A tick run as an asyncio callback pays for the
loop's turn too (its timer heap, the selector, the handle, the next `call_later`): measured,
that was about a seventh of an idle speaker's CPU. So the tick runs on a plain thread that
sleeps between ticks, and the loop stays asleep while nothing but heartbeats happens.

The core is still the only place that decides, and it is never entered by two threads at once:
every entry (the tick, the loop's timer, the source, links, ARP answers, status and metrics)
holds the speaker's lock. What the core asks for is carried out in its order on the loop, with
one exception that keeps idle ticks off the loop: a quiet tick's lone heartbeat, when nothing
the loop has still to carry out came before it and the speaker is not leaving, is sent at once
from the tick's thread (`runs_in_place`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pikube.lb.l2 import events as ev
from pikube.lb.l2.core import TICK_JITTER

log = logging.getLogger("pikube.speaker")


def runs_in_place(actions: Sequence[ev.Action], pending: bool, leaving: bool) -> bool:
    """May a tick's `actions` be carried out on the tick's thread? Only a lone heartbeat (a
    quiet tick's), only when no earlier actions wait for the loop (`pending`: order is kept),
    and never while leaving (the loop waits for the handover's end)."""
    return (
        not pending and not leaving and len(actions) == 1 and type(actions[0]) is ev.SendHeartbeat
    )


@dataclass
class Ticker:
    """Calls `tick` every `interval_s` x uniform(`TICK_JITTER`: shortened, as BFD does, never
    lengthened) on a daemon thread until stopped.

    The next tick is due from the start of this one, so the time a tick takes does not stretch
    the interval. An exception stops the ticks and goes to `on_crash` (on the tick's thread).
    """

    interval_s: float
    tick: Callable[[], None]
    on_crash: Callable[[Exception], None]
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    _running: bool = False
    _thread: threading.Thread | None = None

    def start(self, name: str = "heartbeat tick") -> None:
        self._running = True
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop after the tick under way (at most one interval's sleep away)."""
        self._running = False
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._running

    def _run(self) -> None:
        clock, sleep, uniform = self.clock, time.sleep, self.rng.uniform
        low, high = TICK_JITTER
        interval, tick = self.interval_s, self.tick
        try:
            while self._running:
                due = clock() + interval * uniform(low, high)
                tick()
                delay = due - clock()
                if delay > 0:
                    sleep(delay)
        except Exception as exc:  # the speaker stops with one clear message
            self._running = False
            log.debug("the heartbeat tick crashed", exc_info=True)
            self.on_crash(exc)


@dataclass
class Carrier:
    """Carries out the core's actions: on the loop and in their order, except a quiet tick's
    heartbeats, which go at once from the tick's thread (`runs_in_place`).

    `after` runs on the loop after each batch (the speaker re-arms its timer there);
    `timer_moves()` says whether a quiet tick changed when the loop's timer must fire; `guard`
    wraps what is handed to the loop so that a crash stops the speaker.
    """

    handlers: dict[type, Callable[[Any], None]]
    after: Callable[[], None]
    timer_moves: Callable[[], bool]
    guard: Callable[[Callable[..., None], str], Callable[..., None]]
    lock: threading.RLock = field(default_factory=threading.RLock)
    loop: asyncio.AbstractEventLoop | None = None
    loop_thread: int = 0
    pending: list[list[ev.Action]] = field(default_factory=list)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop, from its own thread."""
        self.loop, self.loop_thread = loop, threading.get_ident()

    def carry(self, actions: list[ev.Action], leaving: bool) -> None:
        """Called with `lock` held, from any thread."""
        if threading.get_ident() == self.loop_thread:
            self.on_loop(actions)
        elif runs_in_place(actions, bool(self.pending), leaving):
            self.run(actions)  # a quiet tick's heartbeat: the loop sleeps on
            if self.timer_moves():
                self.call(self.on_loop, [])
        else:
            self.pending.append(actions)
            self.call(self.on_loop, [])

    def on_loop(self, actions: list[ev.Action]) -> None:
        """On the loop: what earlier events asked for (in their order), then `actions`."""
        with self.lock:
            pending, self.pending = self.pending, []
            for batch in pending:
                self.run(batch)
            self.run(actions)
            self.after()

    def run(self, actions: list[ev.Action]) -> None:
        handlers = self.handlers
        for action in actions:
            handlers[type(action)](action)

    def call(self, callback: Callable[..., None], *args: object) -> None:
        """Hand `callback` to the loop from another thread (dropped once the loop closed)."""
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.guard(callback, "speaker"), *args)
