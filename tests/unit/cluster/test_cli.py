"""The `pikube cluster` commands that need no hosts: init, schema, and a bad spec."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from pikube.cli import cli
from pikube.cluster.spec import NOT_YET_USED, SEED_SPEC, json_schema, load_spec
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


def _unreachable_spec(tmp_path: Path) -> Path:
    """The seed's spec, with nodes nobody answers for."""
    spec = tmp_path / "cluster.yaml"
    spec.write_text(
        SEED_SPEC.replace("port: 22", "port: 1")
        .replace("192.168.68.20", "127.0.0.1")
        .replace("~/.ssh/id_ed25519", str(tmp_path / "no-key"))
        .replace("~/.local/state/pikube/known_hosts", str(tmp_path / "known_hosts"))
        .replace("192.168.68.230-192.168.68.250", "198.51.100.230-198.51.100.250")
    )
    return spec


def test_plan_has_no_field_left_unused(tmp_path: Path) -> None:
    """Since the builder runs kubeadm, flannel, the load balancer and nginx (decision 0130),
    every field of the seed's spec is used: no "not yet used" note."""
    spec = _unreachable_spec(tmp_path)
    table = run_pikube("cluster", "plan", "-f", str(spec))
    assert table.returncode == 1  # nobody answers
    assert "not yet used" not in table.stdout
    assert NOT_YET_USED == {}
    as_json = json.loads(run_pikube("cluster", "plan", "-f", str(spec), "-o", "json").stdout)
    assert as_json["not_yet_used"] == {}
    assert as_json["without_effect"] == {}
    # With the control plane unreachable, nothing after host preparation is planned.
    assert as_json["cluster"]["steps"] == []
    assert set(as_json["cluster"]["blocked"]) == {"master", "node01", "node02", "node03"}


def test_plan_names_the_fields_that_change_nothing(tmp_path: Path) -> None:
    """With `cluster.bootstrap: false` the add-ons' fields do nothing, and plan says so."""
    spec = _unreachable_spec(tmp_path)
    spec.write_text(spec.read_text().replace("bootstrap: true", "bootstrap: false"))
    table = CliRunner().invoke(cli, ["cluster", "plan", "-f", str(spec)])
    assert table.exit_code == 1  # nobody answers
    assert (
        "note: load_balancer changes nothing: cluster.bootstrap is false: apply prepares the "
        "hosts only"
    ) in table.stdout
    as_json = json.loads(
        CliRunner().invoke(cli, ["cluster", "plan", "-f", str(spec), "-o", "json"]).stdout
    )
    assert sorted(as_json["without_effect"]) == [
        "demo_app",
        "load_balancer",
        "networking.pod_cidr",
        "networking.service_cidr",
        "versions.flannel",
    ]
    assert "cluster" not in as_json  # nothing after host preparation is planned


def test_apply_reports_in_json_for_scripts(tmp_path: Path) -> None:
    """stdout is only the JSON report; progress goes to stderr (nodes nobody answers for)."""
    spec = _unreachable_spec(tmp_path)
    log = tmp_path / "apply.jsonl"
    args = ("cluster", "apply", "-f", str(spec), "--yes", "--log", str(log), "-o", "json")
    result = run_pikube(*args)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["changes_applied"] == 0
    assert sorted(report["hosts"]) == ["master", "node01", "node02", "node03"]
    master = report["hosts"]["master"]
    assert master["state"] == "unreachable"
    assert master["applied"] == []
    assert "the SSH key file" in master["message"]
    assert "master: unreachable" in result.stderr


def test_shell_completion_as_documented() -> None:
    """The README's completion line works, and completes the lazily loaded groups too."""
    script = run_pikube(env={"_PIKUBE_COMPLETE": "bash_source"})
    assert script.returncode == 0
    assert "complete -o nosort -F _pikube_completion pikube" in script.stdout
    words = {"COMP_WORDS": "pikube cluster ap", "COMP_CWORD": "2"}
    done = run_pikube(env={"_PIKUBE_COMPLETE": "bash_complete", **words})
    assert done.stdout.split() == ["plain,apply"]


def test_reset_asks_first_and_names_an_unknown_node(tmp_path: Path) -> None:
    spec = _unreachable_spec(tmp_path)
    result = run_pikube("cluster", "reset", "-f", str(spec))
    assert result.returncode == 2
    assert "reset asks before destroying anything: pass --yes" in result.stderr
    result = run_pikube("cluster", "reset", "-f", str(spec), "--node", "node09", "--yes")
    assert result.returncode == 2  # invalid input, found before connecting
    assert f"--node node09: {spec} has no such node (its nodes: master, node01" in result.stderr
