"""The asyncio adapter of one BGP session: a TCP connection and timers around fsm.Session.

It does what the state machine's actions say and feeds back what happens, nothing more:
`Connect` opens a TCP connection to the peer (from `source_address`, to `peer_port`, with the
TCP-MD5 signature option of RFC 2385 when there is a password, and the TTL: 1 for a directly
connected eBGP peer, 255 for iBGP or ebgpMultiHop), `Send` writes, `Close` closes, and
`StartTimer`/`StopTimer` are loop callbacks. Bytes read, connection failures and timers come
back as events. All of it runs on the caller's loop, with no task of its own except the one
reading the socket, which it owns and cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from pikube.lb.bgp import fsm
from pikube.lb.bgp.codec import IPAddress, MessageType

log = logging.getLogger("pikube.bgp")

TCP_MD5SIG = 14  # linux/tcp.h
TCP_MD5SIG_MAXKEYLEN = 80
IPV6_UNICAST_HOPS = 16


@dataclass(frozen=True)
class Transport:
    """Where and how to reach the peer."""

    peer_address: IPAddress
    peer_port: int = 179
    source_address: IPAddress | None = None
    password: str | None = None
    ttl: int = 1
    connect_timeout_s: float = 5.0


def md5sig_option(peer: IPAddress, password: str) -> bytes:
    """`struct tcp_md5sig` for setsockopt(TCP_MD5SIG): the peer's address and the key."""
    key = password.encode()
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError(f"a TCP-MD5 password is at most {TCP_MD5SIG_MAXKEYLEN} bytes")
    if peer.version == 4:
        sockaddr = struct.pack("=HH4s", socket.AF_INET, 0, peer.packed)
    else:
        sockaddr = struct.pack("=HHI16sI", socket.AF_INET6, 0, 0, peer.packed, 0)
    sockaddr = sockaddr.ljust(128, b"\0")
    return (
        sockaddr + struct.pack("=BBHI", 0, 0, len(key), 0) + key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\0")
    )


def open_socket(transport: Transport) -> socket.socket:
    """A non-blocking TCP socket for the peer, with MD5, TTL and source address set."""
    family = socket.AF_INET if transport.peer_address.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, transport.ttl)
            # Internetwork control, as routers mark BGP.
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xC0)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS, transport.ttl)
        if transport.password:
            sock.setsockopt(
                socket.IPPROTO_TCP,
                TCP_MD5SIG,
                md5sig_option(transport.peer_address, transport.password),
            )
        if transport.source_address is not None:
            sock.bind((str(transport.source_address), 0))
    except BaseException:
        sock.close()
        raise
    return sock


class Connection:
    """Runs one fsm.Session: `handle(event)` feeds it and carries out its actions."""

    def __init__(
        self,
        name: str,
        session: fsm.Session,
        transport: Transport,
        on_action: Callable[[Connection, fsm.Action], None] | None = None,
    ) -> None:
        self.name = name
        self.session = session
        self.transport = transport
        self.on_action = on_action
        self._loop = asyncio.get_running_loop()
        self._timers: dict[fsm.Timer, asyncio.TimerHandle] = {}
        self._sock: socket.socket | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._generation = 0  # events from an older connection are dropped
        self._closing: list[asyncio.StreamWriter] = []
        self.updates_sent = 0
        # When the last UPDATE was decided (time.monotonic() on entering `handle`).
        self.last_update_at: float | None = None
        self._handling_since = 0.0

    @property
    def state(self) -> fsm.State:
        return self.session.state

    def handle(self, event: fsm.Event) -> None:
        self._handling_since = time.monotonic()
        for action in self.session.handle(event):
            self._do(action)
            if self.on_action is not None:
                self.on_action(self, action)

    def _do(self, action: fsm.Action) -> None:
        if isinstance(action, fsm.Connect):
            self._generation += 1
            self._task = self._loop.create_task(
                self._connect(self._generation), name=f"bgp {self.name}"
            )
        elif isinstance(action, fsm.Send):
            if self._writer is not None and not self._writer.is_closing():
                self._writer.write(action.data)
                if action.kind is MessageType.UPDATE:
                    self.updates_sent += 1
                    self.last_update_at = self._handling_since
        elif isinstance(action, fsm.Close):
            self._close()
        elif isinstance(action, fsm.StartTimer):
            old = self._timers.pop(action.timer, None)
            if old is not None:
                old.cancel()
            self._timers[action.timer] = self._loop.call_later(
                action.seconds, self._fire, action.timer
            )
        elif isinstance(action, fsm.StopTimer):
            handle = self._timers.pop(action.timer, None)
            if handle is not None:
                handle.cancel()
        elif isinstance(action, fsm.StateChanged):
            log.info(
                "peer %s: %s -> %s (%s)",
                self.name,
                action.old.value,
                action.new.value,
                action.reason,
            )
        elif isinstance(action, fsm.RoutesReceived) and (
            action.treat_as_withdraw or action.problems
        ):
            log.warning(
                "peer %s sent an UPDATE with errors: %s",
                self.name,
                "; ".join(filter(None, [action.treat_as_withdraw, *action.problems])),
            )

    def _fire(self, timer: fsm.Timer) -> None:
        self._timers.pop(timer, None)
        self.handle(fsm.TimerFired(timer))

    def _close(self) -> None:
        self._generation += 1
        if self._writer is not None:
            self._writer.close()  # what was written is still sent, then FIN
            self._closing = [w for w in self._closing if not w.transport.is_closing()]
            self._closing.append(self._writer)
            self._writer = None
        elif self._sock is not None:
            self._sock.close()
        self._sock = None
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None

    async def _connect(self, generation: int) -> None:
        t = self.transport
        try:
            sock = open_socket(t)
        except OSError as exc:
            self.handle(fsm.TcpFailed(f"socket: {exc.strerror or exc}"))
            return
        self._sock = sock
        try:
            await asyncio.wait_for(
                self._loop.sock_connect(sock, (str(t.peer_address), t.peer_port)),
                t.connect_timeout_s,
            )
            reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
        except (OSError, TimeoutError) as exc:
            if generation == self._generation:
                sock.close()
                self._sock = None
                reason = (
                    "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
                )
                self.handle(fsm.TcpFailed(f"connect to {t.peer_address}:{t.peer_port}: {reason}"))
            return
        if generation != self._generation:
            writer.close()
            return
        self._writer = writer
        local = ipaddress.ip_address(sock.getsockname()[0])
        self.handle(fsm.TcpConnected(local))
        await self._read(reader, generation)

    async def _read(self, reader: asyncio.StreamReader, generation: int) -> None:
        while generation == self._generation:
            try:
                data = await reader.read(1 << 16)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                data = b""
            else:
                reason = "the peer closed the connection"
            if generation != self._generation:
                return
            if not data:
                self._task = None  # this task is ending: do not let Close cancel it
                self.handle(fsm.TcpFailed(reason))
                return
            self.handle(fsm.Received(data))

    async def flush(self, timeout_s: float = 1.0) -> None:
        """Wait until what was written has left (used before exiting)."""
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.drain(), timeout_s)

    async def close(self) -> None:
        """Stop everything this connection owns (timers, the reading task, the socket)."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        task = self._task
        self._close()
        for writer in self._closing:
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
        self._closing.clear()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
