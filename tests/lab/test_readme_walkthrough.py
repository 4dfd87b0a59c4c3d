"""The README's "Your first real cluster", followed literally in the lab: the SSH hosts are the
Pis, the lab's client is the workstation. From `pikube cluster init` to an empty second plan.

Two things differ from a user at a terminal, and only these: the `$EDITOR` step is done here
(the Pis' addresses, the SSH user and key, the lab's copy of pkgs.k8s.io, since the lab has
no Internet, and `cluster.bootstrap: false`, since these lab Pis are not booted as Kubernetes
nodes: the whole cluster by apply is test_cluster_bootstrap.py), and `apply` gets `--yes`
because there is no terminal to answer its question.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pikube.lab import aptrepo, sshhosts
from pikube.lab.lab import Lab
from tests.conftest import new_lab_name

pytestmark = pytest.mark.lab

README = Path(__file__).parents[2] / "README.md"


def walkthrough() -> list[str]:
    """The command lines of the README's walk-through, comments taken off."""
    text = README.read_text()
    section = text.split("### Your first real cluster", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the walk-through has no ```sh block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_walkthrough_is_what_this_test_follows() -> None:
    assert walkthrough() == [
        "pikube cluster init",
        "$EDITOR cluster.yaml",
        "pikube cluster doctor",
        "pikube cluster plan",
        "pikube cluster apply",
        "pikube cluster plan",
    ]


@pytest.fixture
def pis() -> Iterator[Lab]:
    lab = Lab(new_lab_name())
    try:
        lab.up()
        sshhosts.up_ssh_hosts(lab)
        yield lab
    finally:
        lab.down()


def _edit(lab: Lab, spec: Path) -> None:
    """What the user does in their editor: point the spec at their Pis."""
    text = spec.read_text()
    for index, host in enumerate(("master", "node01", "node02", "node03")):
        text = text.replace(f"192.168.68.20{index},", f"{lab.topology.host(host).ipv4},")
    text = text.replace("user: pi", "user: root")
    text = text.replace("key: ~/.ssh/id_ed25519", f"key: {sshhosts.client_key_path(lab.name)}")
    repository = f"{sshhosts.repository_url(lab)}/{aptrepo.KUBERNETES_REPO_PATH}/"
    text = text.replace("kubernetes_repository: null", f"kubernetes_repository: {repository}")
    assert "  bootstrap: true\n" in text
    text = text.replace("  bootstrap: true\n", "  bootstrap: false\n")
    spec.write_text(text)


def test_the_readme_walkthrough_from_init_to_an_empty_second_plan(pis: Lab, tmp_path: Path) -> None:
    lab = pis
    home = tmp_path / "home"  # the workstation user's: known hosts and apply's logs go there
    home.mkdir()
    outputs: list[tuple[str, int, str]] = []
    for line in walkthrough():
        if line.startswith("$EDITOR"):
            _edit(lab, tmp_path / "cluster.yaml")
            continue
        command = line + " --yes" if line == "pikube cluster apply" else line
        result = lab.run(
            "client",
            ["env", f"HOME={home}", "sh", "-c", f"cd {tmp_path} && {command}"],
            timeout_s=600,
        )
        outputs.append((line, result.returncode, result.stdout + result.stderr))
    (init, doctor, first_plan, apply, second_plan) = outputs
    assert init[1] == 0, init
    assert (tmp_path / "cluster.schema.json").exists()
    # Fresh Raspberry Pi OS: swap on and the memory cgroup off fail the doctor, and apply fixes
    # them; nothing is unreachable.
    assert doctor[1] in (0, 1), doctor
    assert "unreachable" not in doctor[2], doctor
    assert re.search(r"\(apply\s+does\s+this\)", doctor[2]), doctor
    assert first_plan[1] == 0, first_plan
    assert "no changes" not in first_plan[2], first_plan
    assert apply[1] == 0, apply
    assert second_plan[1] == 0, second_plan
    for node in ("master", "node01", "node02", "node03"):
        assert f"{node}: no changes" in second_plan[2], second_plan
    assert "\n0 changes on 0 of 4 nodes" in second_plan[2], second_plan
