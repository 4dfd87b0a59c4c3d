"""Waiting for a directory to change: inotify when the kernel has it, a slow poll otherwise.

The speaker is idle almost all the time; re-reading a manifest directory every second was a
measurable part of its idle CPU. inotify (through libc, no dependency) wakes it only when a
file in the directory is written, created, moved or removed. A periodic re-check stays as a
safety net (a missed event, a directory swapped underneath).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
from pathlib import Path

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_MASK = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
    | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
)  # fmt: skip


class DirectoryWatch:
    """`await watch.changed(timeout_s)` returns when the directory changed or the timeout ends."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd = -1
        libc_name = ctypes.util.find_library("c") or "libc.so.6"
        try:
            libc = ctypes.CDLL(libc_name, use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd >= 0 and libc.inotify_add_watch(fd, str(directory).encode(), _MASK) < 0:
                os.close(fd)
                fd = -1
        except (OSError, AttributeError):
            fd = -1
        self._fd = fd

    @property
    def uses_inotify(self) -> bool:
        return self._fd >= 0

    async def changed(self, timeout_s: float) -> None:
        if self._fd < 0:
            await asyncio.sleep(timeout_s)
            return
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(self._fd, wake)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready, timeout_s)
        finally:
            loop.remove_reader(self._fd)
        # Writers often touch a file several times in a row: settle, then drain the events.
        await asyncio.sleep(0.05)
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._fd, 65536):
                pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
