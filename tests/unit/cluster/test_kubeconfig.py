"""Kubeconfig: kubeadm's admin.conf renamed after the cluster, merged without losing another
cluster's entries or keeping a rebuilt cluster's old CA, written privately and atomically."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pikube.cluster import kubeconfig as kc
from pikube.errors import InvalidInput

ADMIN_CONF = """\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: https://198.51.100.20:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {{}}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: CERT
    client-key-data: KEY
"""
NAME = "kubeadm-orenge-cloud-playground"


def _admin(ca: str) -> dict[str, Any]:
    return kc.load(ADMIN_CONF.format(ca=ca), "admin.conf")


def test_kubeadms_names_become_the_clusters() -> None:
    config = kc.rename(_admin("NEWCA"), NAME)
    assert [c["name"] for c in config["clusters"]] == [NAME]
    assert config["contexts"] == [{"name": NAME, "context": {"cluster": NAME, "user": NAME}}]
    assert config["users"][0]["name"] == NAME
    assert config["users"][0]["user"]["client-key-data"] == "KEY"
    assert config["current-context"] == NAME


def test_a_rebuilt_clusters_new_ca_replaces_the_old_one() -> None:
    """The stale-CA bug of a "first file wins" merge: the old entry must not survive."""
    old = kc.rename(_admin("OLDCA"), NAME)
    merged = kc.merge(old, kc.rename(_admin("NEWCA"), NAME))
    assert len(merged["clusters"]) == 1
    assert merged["clusters"][0]["cluster"]["certificate-authority-data"] == "NEWCA"


_names = st.text("abcdefgh-", min_size=1, max_size=6)


def _entries(section: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(
        st.builds(lambda n, v: {"name": n, section[:-1]: {"value": v}}, _names, st.integers()),
        unique_by=lambda e: e["name"],
        max_size=5,
    )


@settings(max_examples=200)
@given(
    clusters=_entries("clusters"),
    contexts=_entries("contexts"),
    users=_entries("users"),
    current=st.one_of(st.none(), _names),
    name=_names,
)
def test_merging_keeps_every_other_entry_and_replaces_same_named_ones(
    clusters: list[dict[str, Any]],
    contexts: list[dict[str, Any]],
    users: list[dict[str, Any]],
    current: str | None,
    name: str,
) -> None:
    existing: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "contexts": contexts,
        "users": users,
        "extensions": [{"name": "x", "extension": {}}],
    }
    if current is not None:
        existing["current-context"] = current
    new = kc.rename(_admin("NEWCA"), name)
    merged = kc.merge(existing, new)
    for section, entries in (("clusters", clusters), ("contexts", contexts), ("users", users)):
        names = [e["name"] for e in merged[section]]
        assert len(names) == len(set(names))  # nothing twice
        for entry in entries:  # every other entry kept, unchanged
            if entry["name"] != name:
                assert entry in merged[section]
        (ours,) = [e for e in merged[section] if e["name"] == name]
        assert ours == new[section][0]
    assert merged["current-context"] == name
    assert merged["extensions"] == existing["extensions"]
    # Merging again changes nothing.
    assert kc.merge(merged, new) == merged


def test_not_a_kubeconfig_is_one_line() -> None:
    with pytest.raises(InvalidInput, match="config: clusters must be a list of named entries"):
        kc.load("clusters: 3\n", "config")
    with pytest.raises(InvalidInput, match="not a kubeconfig"):
        kc.load("- a\n", "config")


def test_written_privately_atomically_with_a_backup(tmp_path: Path) -> None:
    target = tmp_path / "kube" / "config"
    assert kc.write_private(target, "first\n") is None
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    os.chmod(target, 0o644)
    backup = kc.write_private(target, "second\n")
    assert backup is not None
    assert backup.read_text() == "first\n"
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert target.read_text() == "second\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(["config", backup.name])


def test_kubectls_default_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path}/a:{tmp_path}/b")
    assert kc.default_path() == tmp_path / "a"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert kc.default_path() == tmp_path / ".kube" / "config"
