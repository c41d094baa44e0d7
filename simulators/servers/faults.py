"""Fault switches a test flips at run time on any twin server."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Faults:
    """What a server does wrong, checked on every request.

    ``stall``: take requests, never answer. ``delay``: wait this many wire
    seconds before each answer. ``corrupt``: damage the next N answers on the
    wire. ``error``: answer every request with this protocol error code (a
    Modbus exception code, an OPC UA status code, a serial ERR code).
    Dropping connections is a method of the server, since it is an act, not a state.
    """

    stall: bool = False
    delay: float = 0.0
    corrupt: int = 0
    error: int | None = None

    def take_corrupt(self) -> bool:
        """True (and one fewer to go) when this answer should be corrupted."""
        if self.corrupt > 0:
            self.corrupt -= 1
            return True
        return False

    def clear(self) -> None:
        self.stall = False
        self.delay = 0.0
        self.corrupt = 0
        self.error = None
