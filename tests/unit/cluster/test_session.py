"""The session that plan, doctor and apply share lives apart from apply; a reboot's wait does
not swallow what it does not expect."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any, cast

import pytest

from pikube.cluster import apply, ssh


def test_plan_and_doctor_reach_the_nodes_without_importing_apply() -> None:
    code = (
        "import sys, pikube.cluster.session, pikube.cluster.doctor, pikube.cluster.plan\n"
        "print('pikube.cluster.apply' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class _Broken:
    async def wait_closed(self) -> None:
        raise RuntimeError("a bug in the connection layer")


def test_waiting_for_a_reboot_lets_an_unexpected_error_out() -> None:
    # It used to be suppressed (with every other exception), and the node waited for a reboot
    # it could no longer see until the 300 s timeout.
    old = cast(ssh.Connection, _Broken())
    session = cast(Any, object())
    with pytest.raises(RuntimeError, match="connection layer"):
        asyncio.run(apply._next_boot(session, "node01", old, "boot-1"))
