"""The in-cluster API connection: the API's address from the kubelet's environment, the
service account's files, one clear error outside a Pod, and the token read again when the
kubelet rotates it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pikube.errors import PikubeError
from pikube.lb.kube import incluster


def test_api_host_from_the_environment() -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert incluster.api_host(env) == "https://10.96.0.1:443"
    env6 = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert incluster.api_host(env6) == "https://[fd00::1]:443"


def test_outside_a_pod_the_error_says_to_pass_a_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(PikubeError, match=r"KUBERNETES_SERVICE_HOST.*--kubeconfig"):
        incluster.api_host({})
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(PikubeError, match=r"ca\.crt.*--kubeconfig") as caught:
        incluster.InClusterBackend(tmp_path, env)
    assert caught.value.exit_code == 2
    (tmp_path / "ca.crt").write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text())
    with pytest.raises(PikubeError, match=r"token: No such file.*--kubeconfig"):
        incluster.InClusterBackend(tmp_path, env)


def test_bodies_are_json() -> None:
    assert incluster.request_body(None) is None
    assert incluster.request_body({"a": 1}) == b'{"a": 1}'
    assert incluster.request_body(b"raw") == b"raw"


def test_a_rotated_token_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # any CA bundle will do for the TLS context: the machine's
    (tmp_path / "ca.crt").write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text())
    (tmp_path / "token").write_text("first\n")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    backend = incluster.InClusterBackend(tmp_path, env)
    assert backend._authorization() == "Bearer first"
    (tmp_path / "token").write_text("second\n")
    assert backend._authorization() == "Bearer first"  # not before the re-read interval
    clock = time.monotonic() + incluster.TOKEN_REREAD_S + 1
    monkeypatch.setattr(time, "monotonic", lambda: clock)
    assert backend._authorization() == "Bearer second"
    asyncio.run(backend.close())


def test_the_daemons_modules_do_not_import_kubernetes_asyncio() -> None:
    """What a Pod imports: the speaker's and controller's modules, and connect() in-cluster."""
    code = (
        "import sys, pikube.cli.lb, pikube.lb.speaker, pikube.lb.controller, "
        "pikube.lb.sources.kube, pikube.lb.kube.incluster; "
        "print(any(m.startswith('kubernetes_asyncio') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
