"""`pikube lb bgp-speaker`: mistakes a user can make end in one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_pikube


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--node", "node01", "--source", "dir:/nonexistent/pikube"], "is not a directory"),
        (["--node", "node01", "--source", "kube:"], "use kube (the Kubernetes API) or dir:PATH"),
        (["--source", "dir:/tmp"], "--node is required"),
    ],
)
def test_bad_options_end_in_one_line(args: list[str], message: str) -> None:
    result = run_pikube("lb", "bgp-speaker", *args, env={"NODE_NAME": ""})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


def test_a_router_id_must_be_an_ipv4_address(tmp_path: Path) -> None:
    result = run_pikube(
        "lb", "bgp-speaker", "--node", "n", "--source", f"dir:{tmp_path}", "--router-id", "x"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "pikube: error: --router-id 'x': a router ID is written as an IPv4 address"
    )


def test_a_broken_kubeconfig_ends_in_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("clusters: [\n")
    result = run_pikube(
        "lb", "bgp-speaker", "--node", "n", "--source", "kube",
        "--kubeconfig", str(kubeconfig), "--metrics-port", "0",
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("pikube: error:")]
    assert "the configuration source failed: kubeconfig" in line
    assert "Traceback" not in result.stderr
