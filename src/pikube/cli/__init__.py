"""The `pikube` command: one group per part (lab, lb, cluster, bench).

Parsing and printing only. A `PikubeError` becomes one line on stderr and a non-zero exit;
anything else is a bug, reported in one line too (PIKUBE_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from pikube import __version__
from pikube.errors import PikubeError


class _Group(click.Group):
    """A click group that turns PikubeError into a one-line message."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PikubeError as exc:
            click.echo(f"pikube: error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pikube")
def cli() -> None:
    """Bare-metal Kubernetes on Raspberry Pi: cluster builder, load balancer, and lab."""


def _register() -> None:
    # Imported here: the group modules import this one's `cli` object indirectly.
    from pikube.cli.lab import lab  # noqa: PLC0415
    from pikube.cli.lb import lb  # noqa: PLC0415

    cli.add_command(lab)
    cli.add_command(lb)


_register()


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="pikube", standalone_mode=True)
    except SystemExit:
        raise
    except Exception as exc:  # a bug: say so in one line, keep the traceback for debugging
        if os.environ.get("PIKUBE_DEBUG"):
            raise
        click.echo(
            f"pikube: internal error: {type(exc).__name__}: {exc} "
            "(this is a bug; rerun with PIKUBE_DEBUG=1 for the traceback)",
            err=True,
        )
        sys.exit(70)
