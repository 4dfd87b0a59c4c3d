"""The speaker's wiring stops with one clear message when one of its parts crashes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pikube.errors import PikubeError
from pikube.lb.announcements import DesiredState
from pikube.lb.speaker import SpeakerSettings, run_forever


class BrokenSource:
    async def updates(self) -> AsyncIterator[DesiredState]:
        yield DesiredState()
        raise RuntimeError("the API server's watch broke")


def settings(state_dir: Path) -> SpeakerSettings:
    """A speaker that opens no sockets (its one interface does not exist)."""
    return SpeakerSettings(
        node="node01",
        key=b"k" * 32,
        interfaces=("pk-missing0",),
        metrics_port=None,
        state_dir=state_dir,
        realtime=False,
    )


def test_a_crashed_source_stops_the_speaker_with_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(PikubeError) as caught:
        run_forever(settings(tmp_path), BrokenSource())
    assert caught.value.message == (
        "speaker node01 stopped: the configuration source crashed: the API server's watch broke"
    )
