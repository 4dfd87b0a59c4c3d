"""The pure parts of the local control plane: etcd's and kube-apiserver's command lines, the
admin kubeconfig, and the certificates written for them."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from pikube.lab.kubernetes.apiserver import (
    Files,
    admin_kubeconfig,
    apiserver_args,
    etcd_args,
    write_files,
)


def flags(argv: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in argv[1:])


def test_etcd_listens_on_loopback_only_with_its_own_data_dir() -> None:
    argv = etcd_args(Path("/b/etcd"), Path("/d/etcd"), 2379, 2380)
    assert argv[0] == "/b/etcd"
    f = flags(argv)
    assert f["data-dir"] == "/d/etcd"
    assert f["listen-client-urls"] == f["advertise-client-urls"] == "http://127.0.0.1:2379"
    assert f["listen-peer-urls"] == "http://127.0.0.1:2380"
    assert f["initial-cluster"] == "default=http://127.0.0.1:2380"


def test_apiserver_uses_the_files_rbac_and_that_etcd() -> None:
    files = Files(Path("/d"))
    f = flags(apiserver_args(Path("/b/kube-apiserver"), files, "http://127.0.0.1:2379", 6443))
    assert f["etcd-servers"] == "http://127.0.0.1:2379"
    assert (f["bind-address"], f["secure-port"]) == ("127.0.0.1", "6443")
    assert f["authorization-mode"] == "RBAC"
    assert f["client-ca-file"] == "/d/pki/ca.crt"
    assert (f["tls-cert-file"], f["tls-private-key-file"]) == (
        "/d/pki/apiserver.crt",
        "/d/pki/apiserver.key",
    )
    assert f["service-account-key-file"] == "/d/pki/sa.pub"
    assert f["service-account-signing-key-file"] == "/d/pki/sa.key"
    assert f["cert-dir"] == "/d/pki"  # never /var/run/kubernetes


def test_written_files_and_kubeconfig_give_an_admin_in_system_masters(tmp_path: Path) -> None:
    files = Files(tmp_path)
    ca, admin = write_files(files, datetime.now(UTC))
    for path in (files.cert("ca"), files.cert("apiserver"), files.service_account_public):
        assert path.is_file()
    assert files.key("admin").stat().st_mode & 0o077 == 0
    serving = x509.load_pem_x509_certificate(files.cert("apiserver").read_bytes())
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    config = yaml.safe_load(admin_kubeconfig("https://127.0.0.1:6443", ca, admin))
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    user = config["users"][0]["user"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
