"""`pikube lb controller` and `pikube lb speaker --source kube`: mistakes a user can make end in
one line naming what is wrong, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_pikube


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("lb", "controller", "--kubeconfig", "/nonexistent/admin.conf"),
         "--kubeconfig /nonexistent/admin.conf: no such file"),
        (("lb", "speaker", "--node", "node01", "--source", "kube", "--kubeconfig",
          "/nonexistent/admin.conf"), "--kubeconfig /nonexistent/admin.conf: no such file"),
        (("lb", "speaker", "--node", "node01", "--source", "dir:/tmp"),
         "--key-file is required with --source dir:PATH"),
        (("lb", "speaker", "--node", "node01", "--source", "etcd", "--key-file", "/dev/null"),
         "use kube (the Kubernetes API) or dir:PATH"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line(args: tuple[str, ...], message: str) -> None:
    result = run_pikube(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


def test_a_kubeconfig_that_is_not_one_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "admin.conf"
    bad.write_text("this: is: not: a kubeconfig\n")
    result = run_pikube("lb", "controller", "--kubeconfig", str(bad), "--metrics-port", "0")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"kubeconfig {bad}" in lines[0]


def test_both_speakers_take_the_source_options_alike() -> None:
    """Declared once: the same names, defaults, environment variables and help texts."""
    import click  # noqa: PLC0415

    from pikube.cli.lb import lb  # noqa: PLC0415

    def options(command: str) -> dict[str, tuple[object, ...]]:
        found = lb.commands[command].params
        return {
            p.name or "": (p.opts, p.default, p.envvar, getattr(p, "help", None), p.required)
            for p in found
            if isinstance(p, click.Option)
        }

    shared = ("node", "source_spec", "kubeconfig", "namespace", "lb_class")
    l2, bgp = options("speaker"), options("bgp-speaker")
    assert [l2[name] for name in shared] == [bgp[name] for name in shared]
