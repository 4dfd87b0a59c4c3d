"""The `pikube cluster` commands that need no hosts: init, schema, and a bad spec."""

from __future__ import annotations

import json
from pathlib import Path

from pikube.cluster.spec import json_schema, load_spec
from tests.helpers import run_pikube


def test_init_writes_the_seed_spec_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "cluster.yaml"
    assert run_pikube("cluster", "init", "-f", str(target)).returncode == 0
    assert load_spec(target).cluster.name == "kubeadm-orenge-cloud-playground"
    again = run_pikube("cluster", "init", "-f", str(target))
    assert again.returncode == 2
    assert "exists; use --force" in again.stderr
    assert run_pikube("cluster", "init", "-f", str(target), "--force").returncode == 0


def test_init_publishes_the_schema_for_editors(tmp_path: Path) -> None:
    target = tmp_path / "cluster.yaml"
    run_pikube("cluster", "init", "-f", str(target))
    # The spec's first line points YAML language servers at the schema written beside it.
    assert (
        target.read_text().splitlines()[0] == "# yaml-language-server: $schema=cluster.schema.json"
    )
    assert json.loads((tmp_path / "cluster.schema.json").read_text()) == json_schema()


def test_the_published_schema_is_the_models() -> None:
    """docs/cluster.schema.json (for editors that fetch it from the repository) never drifts:
    regenerate it with `pikube cluster schema > docs/cluster.schema.json`."""
    published = Path(__file__).parents[3] / "docs" / "cluster.schema.json"
    assert json.loads(published.read_text()) == json_schema()


def test_an_invalid_spec_fails_before_any_connection(tmp_path: Path) -> None:
    spec = tmp_path / "cluster.yaml"
    known = tmp_path / "known_hosts"
    text = run_pikube("cluster", "init", "-f", "-").stdout
    text = text.replace("role: worker}", "role: workr}", 1)
    text = text.replace("~/.local/state/pikube/known_hosts", str(known))
    spec.write_text(text)
    for command in ("plan", "apply", "doctor"):
        result = run_pikube("cluster", command, "-f", str(spec), timeout_s=30)
        assert result.returncode == 2
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
