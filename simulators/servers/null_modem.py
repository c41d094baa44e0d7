"""A null-modem cable made of two pty pairs, bridged in the event loop.

Serial and Modbus RTU twins need a real tty on each side and no extra program:
the twin opens ``a_path`` and the driver ``b_path``; bytes written on one side
are read on the other. Both slave ends are set raw and kept open by the bridge,
so either side may close and reopen its tty (a twin restarting, a transport
reconnecting) without the other seeing a hang-up.
"""

from __future__ import annotations

import asyncio
import errno
import os
import termios
import tty
from typing import Self

_CHUNK = 4096


class NullModem:
    """Two ttys wired back to back. ``cut()`` unplugs the cable, ``splice()`` plugs it in."""

    def __init__(self) -> None:
        self._fds: list[int] = []
        self._masters: tuple[int, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.a_path = ""
        self.b_path = ""
        self.plugged = True
        self.bytes_a_to_b = 0
        self.bytes_b_to_a = 0

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        master_a, slave_a = os.openpty()
        master_b, slave_b = os.openpty()
        self._fds = [master_a, slave_a, master_b, slave_b]
        for slave in (slave_a, slave_b):
            tty.setraw(slave, termios.TCSANOW)
        for master in (master_a, master_b):
            os.set_blocking(master, False)
        self.a_path = os.ttyname(slave_a)
        self.b_path = os.ttyname(slave_b)
        self._masters = (master_a, master_b)
        self._loop.add_reader(master_a, self._pump, master_a, master_b, True)
        self._loop.add_reader(master_b, self._pump, master_b, master_a, False)

    def cut(self) -> None:
        """Unplug: bytes sent now are lost, as on a pulled cable."""
        self.plugged = False

    def splice(self) -> None:
        self.plugged = True

    def _pump(self, src: int, dst: int, a_to_b: bool) -> None:
        try:
            data = os.read(src, _CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open right now: nothing to carry
                return
            raise
        if not data or not self.plugged:
            return
        try:
            written = os.write(dst, data)
        except BlockingIOError:
            written = 0  # the far side is not reading: the wire drops the bytes
        if a_to_b:
            self.bytes_a_to_b += written
        else:
            self.bytes_b_to_a += written

    async def close(self) -> None:
        if self._loop is not None and self._masters is not None:
            for master in self._masters:
                self._loop.remove_reader(master)
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                continue
        self._fds = []
        self._masters = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def flush_input(fd: int) -> None:
    """Throw away bytes waiting on a tty (stale requests from before a restart)."""
    termios.tcflush(fd, termios.TCIFLUSH)
