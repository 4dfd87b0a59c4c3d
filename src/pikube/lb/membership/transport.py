"""Heartbeats on the wire: one UDP socket per announcing interface, broadcast on that interface.

Owns: opening the socket bound to the interface (SO_BINDTODEVICE, so a heartbeat leaves and
arrives only there: if the NIC dies, so does the node's membership), sending, and draining
received datagrams without blocking. Decoding and the view live in `protocol`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

BROADCAST = "255.255.255.255"


@dataclass
class HeartbeatSocket:
    interface: str
    port: int
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
        # Heartbeats are tiny and time-critical: ask the qdisc to send them first.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 6)
        sock.bind(("", self.port))
        sock.setblocking(False)
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, datagram: bytes) -> bool:
        """Broadcast on the interface; False if the link cannot send (down, no address)."""
        try:
            self.sock.sendto(datagram, (BROADCAST, self.port))
        except OSError:
            return False
        return True

    def drain(self, limit: int = 256) -> list[tuple[bytes, str]]:
        """(datagram, sender's IPv4 address) for everything received so far (at most `limit`),
        without blocking."""
        received = []
        for _ in range(limit):
            try:
                data, address = self.sock.recvfrom(65535)
                received.append((data, address[0]))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
        return received

    def close(self) -> None:
        self.sock.close()
