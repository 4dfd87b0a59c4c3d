"""`pikube lb ...`: the load balancer's commands."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from pikube.errors import PikubeError
from pikube.lb.sources import Source


@click.group()
def lb() -> None:
    """The MetalLB-compatible load balancer."""


def _read_key(path: Path) -> bytes:
    from pikube.lb.membership.protocol import load_key  # noqa: PLC0415

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PikubeError(
            f"key file {path}: {exc.strerror}; every speaker needs the same shared key, e.g. "
            f"`head -c 32 /dev/urandom | base64 > {path}`",
            exit_code=2,
        ) from exc
    try:
        return load_key(raw)
    except ValueError as exc:
        raise PikubeError(f"key file {path}: {exc}", exit_code=2) from exc


def _source(spec: str) -> Source:
    kind, _, value = spec.partition(":")
    if kind == "dir" and value:
        from pikube.lb.sources.manifests import ManifestDirectory  # noqa: PLC0415

        directory = Path(value)
        if not directory.is_dir():
            raise PikubeError(f"--source {spec}: {directory} is not a directory", exit_code=2)
        return ManifestDirectory(directory)
    raise PikubeError(
        f"--source {spec!r}: use dir:PATH (a directory of Kubernetes YAML)", exit_code=2
    )


@lb.command()
@click.option(
    "--node",
    default=lambda: os.environ.get("NODE_NAME", ""),
    show_default="$NODE_NAME",
    help="This node's name, as in its Node object.",
)
@click.option("--source", "source_spec", required=True, help="Desired state: dir:PATH.")
@click.option(
    "--interface",
    "interfaces",
    multiple=True,
    help="Announce on this interface (repeatable). Default: every interface MetalLB would use.",
)
@click.option(
    "--key-file",
    type=click.Path(path_type=Path),
    required=True,
    help="The cluster's shared heartbeat key (same file on every node).",
)
@click.option(
    "--metrics-port",
    type=int,
    default=7472,
    show_default=True,
    help="Prometheus /metrics and /status port; 0 disables.",
)
@click.option("--metrics-host", default="0.0.0.0", show_default=True)
@click.option(
    "--interval-ms",
    type=click.IntRange(5, 10000),
    default=60,
    show_default=True,
    help="Heartbeat interval.",
)
@click.option(
    "--multiplier",
    type=click.IntRange(2, 255),
    default=3,
    show_default=True,
    help="Missed heartbeats before a peer is declared dead.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=7950,
    show_default=True,
    help="UDP port of the heartbeats.",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=Path("/var/lib/pikube"),
    show_default=True,
    help="Where the speaker keeps its epoch across restarts.",
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--handover-bridge-s",
    type=click.FloatRange(0, 3600),
    default=60.0,
    show_default=True,
    help="After a planned handover, pass the old owner's connections on to it for this long "
    "(nftables); 0 disables.",
)
@click.option(
    "--realtime/--no-realtime",
    default=True,
    show_default=True,
    help="Run at a real-time scheduling priority (as keepalived does).",
)
def speaker(
    node: str,
    source_spec: str,
    interfaces: tuple[str, ...],
    key_file: Path,
    metrics_port: int,
    metrics_host: str,
    interval_ms: int,
    multiplier: int,
    port: int,
    state_dir: Path,
    log_format: str,
    log_level: str,
    handover_bridge_s: float,
    realtime: bool,
) -> None:
    """Run the layer-2 speaker: answer ARP/NDP for this node's service IPs, fail over fast."""
    from pikube.lb import speaker as daemon  # noqa: PLC0415

    if not node:
        raise PikubeError("--node is required (or set NODE_NAME)", exit_code=2)
    key = _read_key(key_file)
    source = _source(source_spec)
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(daemon.JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])
    settings = daemon.SpeakerSettings(
        node=node,
        key=key,
        interfaces=interfaces,
        interval_ms=interval_ms,
        multiplier=multiplier,
        port=port,
        metrics_host=metrics_host,
        metrics_port=metrics_port or None,
        state_dir=state_dir / node,
        realtime=realtime,
        bridge_s=handover_bridge_s,
    )
    daemon.run_forever(settings, source)
