"""What a failed build tells the user (the message is built from the go command's output)."""

from __future__ import annotations

from pathlib import Path

from pikube.lab.kubernetes.components import BY_NAME
from pikube.lab.kubernetes.gobuild import build_error

# What the go command prints for a version the module proxy does not serve (captured here).
PROXY_403 = """go: downloading github.com/flannel-io/flannel v0.26.3
github.com/flannel-io/flannel@v0.26.3: reading https://proxy.golang.org/github.com/flannel-io/flannel/@v/v0.26.3.zip: 403 Forbidden
	server response: This module version is not available.
"""  # noqa: E501


def test_a_version_missing_from_the_proxy_is_named() -> None:
    error = build_error(BY_NAME["flannel"], PROXY_403, Path("/cache/gobuild/logs/f.log"))
    assert "not on the Go module proxy" in error.message
    assert "flannel-io/flannel@v0.26.3" in error.message
    assert "components.py" in error.message
    assert "\n" not in error.message


def test_other_failures_quote_the_last_line_and_the_log() -> None:
    output = "# k8s.io/kubernetes/cmd/kubelet\ncollect2: error: ld returned 1 exit status\n"
    error = build_error(BY_NAME["kubernetes"], output, Path("/cache/gobuild/logs/k.log"))
    assert error.message == (
        "building kubernetes v1.31.5 failed: collect2: error: ld returned 1 exit status "
        "(full log /cache/gobuild/logs/k.log)"
    )
