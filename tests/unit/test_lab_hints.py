"""The lab commands that messages tell a user to run carry the lab's name when it matters."""

from __future__ import annotations

from pikube.lab.lab import DEFAULT_LAB, lab_command


def test_the_default_lab_needs_no_name() -> None:
    assert lab_command(DEFAULT_LAB, "up", "--ssh") == "pikube lab up --ssh"


def test_another_lab_is_named_right_after_the_command() -> None:
    assert (
        lab_command("t1", "exec", "client", "--", "pikube cluster plan")
        == "pikube lab exec --name t1 client -- pikube cluster plan"
    )
