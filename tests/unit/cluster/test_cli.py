"""The `pikube cluster` commands that need no hosts: init, schema, and a bad spec."""

from __future__ import annotations

import json
from pathlib import Path

from pikube.cluster.spec import load_spec
from tests.helpers import run_pikube


def test_init_writes_the_seed_spec_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "cluster.yaml"
    assert run_pikube("cluster", "init", "-f", str(target)).returncode == 0
    assert load_spec(target).cluster.name == "kubeadm-orenge-cloud-playground"
    again = run_pikube("cluster", "init", "-f", str(target))
    assert again.returncode == 1
    assert "exists; use --force" in again.stderr


def test_an_invalid_spec_fails_before_any_connection(tmp_path: Path) -> None:
    spec = tmp_path / "cluster.yaml"
    known = tmp_path / "known_hosts"
    text = run_pikube("cluster", "init", "-f", "-").stdout
    text = text.replace("role: worker}", "role: workr}", 1)
    text = text.replace("~/.local/state/pikube/known_hosts", str(known))
    spec.write_text(text)
    for command in ("plan", "apply", "doctor"):
        result = run_pikube("cluster", command, "-f", str(spec), timeout_s=30)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"pikube: error: {spec}: nodes[1].role: Input should be 'control-plane' or 'worker'"
        ]
        assert "Traceback" not in result.stderr
    assert not known.exists()  # nothing was contacted


def test_schema_is_json_schema() -> None:
    result = run_pikube("cluster", "schema")
    schema = json.loads(result.stdout)
    assert schema["title"] == "pikube cluster.yaml"
    assert "nodes" in schema["required"]
