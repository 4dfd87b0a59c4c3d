"""The `pikube` command: one group per part (lab, lb, cluster, bench).

Parsing and printing only. A `PikubeError` becomes one line on stderr and a non-zero exit;
anything else is a bug, reported in one line too (PIKUBE_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from pikube import __version__
from pikube.errors import PikubeError, bounded

# Command groups, imported only when used: `pikube lb speaker` is a long-running daemon that
# must not pay for the lab's imports (pyroute2, rich) in start-up time or memory.
_GROUPS = {
    "lab": "pikube.cli.lab:lab",
    "lb": "pikube.cli.lb:lb",
    "bench": "pikube.cli.bench:bench",
    "cluster": "pikube.cli.cluster:cluster",
}


class _Group(click.Group):
    """The top-level group: lazy sub-groups, and PikubeError turned into a one-line message."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_GROUPS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _GROUPS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            exc.message = bounded(exc.message)  # type: ignore[misc]  # click: Final, set once
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            # click quotes a bad value whole in its usage errors (an argument can be 128 KiB):
            # bounded like every PikubeError.
            exc.message = bounded(exc.message)  # type: ignore[misc]  # click: Final, set once
            raise
        except PikubeError as exc:
            click.echo(f"pikube: error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)
        except (KeyboardInterrupt, click.Abort):
            # Ctrl-C (or Ctrl-D at a question): 130 as the shell reports a SIGINT, not click's
            # "Aborted!" with status 1, which the convention keeps for failures.
            click.echo("pikube: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pikube")
def cli() -> None:
    """Bare-metal Kubernetes on Raspberry Pi: cluster builder, load balancer, and lab."""


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
