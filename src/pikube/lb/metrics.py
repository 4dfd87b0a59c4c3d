"""Prometheus metrics: counters and gauges, the text exposition format, and a tiny /metrics server.

Hand-written on purpose (docs/decisions/0007-metrics-exposition.md): MetalLB's counters are
named without the `_total` suffix (`metallb_layer2_requests_received`), and prometheus_client
always appends it, so dashboards written for MetalLB would break. The exposition format is a
few lines; the server is one asyncio handler, no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class Family:
    name: str
    help: str
    kind: str  # "counter" or "gauge"
    labels: tuple[str, ...] = ()
    values: dict[tuple[str, ...], float] = field(default_factory=dict)
    # Called after `inc`, `set` or `remove` changed a value (a reader that would otherwise poll).
    watchers: list[Callable[[], None]] = field(default_factory=list)

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        self.values[label_values] = self.values.get(label_values, 0.0) + amount
        if amount and self.watchers:  # a speaker counts a heartbeat every tick: no call then
            self._changed()

    def set(self, value: float, *label_values: str) -> None:
        changed = self.values.get(label_values) != value
        self.values[label_values] = value
        if changed:
            self._changed()

    def remove(self, *label_values: str) -> None:
        if self.values.pop(label_values, None) is not None:
            self._changed()

    def _changed(self) -> None:
        for watcher in self.watchers:
            watcher()

    def get(self, *label_values: str) -> float:
        return self.values.get(label_values, 0.0)

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        if not self.labels and not self.values:
            lines.append(f"{self.name} 0")
        for label_values, value in sorted(self.values.items()):
            if self.labels:
                pairs = ",".join(
                    f'{k}="{_escape(v)}"' for k, v in zip(self.labels, label_values, strict=True)
                )
                lines.append(f"{self.name}{{{pairs}}} {value:g}")
            else:
                lines.append(f"{self.name} {value:g}")
        return "\n".join(lines)


@dataclass
class Registry:
    families: list[Family] = field(default_factory=list)
    # Called before each rendering: values kept elsewhere are copied in only when scraped.
    collectors: list[Callable[[], None]] = field(default_factory=list)

    def counter(self, name: str, help_text: str, *labels: str) -> Family:
        family = Family(name, help_text, "counter", labels)
        self.families.append(family)
        return family

    def gauge(self, name: str, help_text: str, *labels: str) -> Family:
        family = Family(name, help_text, "gauge", labels)
        self.families.append(family)
        return family

    def render(self) -> str:
        for collect in self.collectors:
            collect()
        return "\n".join(f.render() for f in self.families) + "\n"


async def serve(
    registry: Registry,
    host: str,
    port: int,
    status: Callable[[], Mapping[str, object]] | None = None,
) -> asyncio.Server:
    """Serve `GET /metrics` (and `GET /status` as JSON when given) until the server is closed."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
            route = path.split(b"?")[0]
            if route == b"/metrics":
                body = registry.render().encode()
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            elif route == b"/status" and status is not None:
                body = json.dumps(status(), indent=2).encode() + b"\n"
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            else:
                body = b"not found\n"
                head = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
            writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
            writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, reuse_address=True)
