"""One tree of typed errors for every layer of flexctl.

Library exceptions (asyncua, pymodbus, pyserial) are mapped into this tree once,
inside the transports; nothing above them catches a library exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class FlexctlError(Exception):
    """Root of every error flexctl raises on purpose."""


class NotConnectedError(FlexctlError):
    """A device (or several) cannot be reached.

    Like ophyd-async's NotConnected, it can collect named sub-errors so a single
    message says which device and which part failed.
    """

    def __init__(
        self,
        device: str,
        what: str,
        *,
        causes: Mapping[str, BaseException] | None = None,
    ) -> None:
        self.device = device
        self.what = what
        self.causes: dict[str, BaseException] = dict(causes or {})
        lines = [f"{device}: not connected: {what}"]
        for name, exc in self.causes.items():
            # A cause may itself list causes: its own lines go one level deeper.
            first, *rest = str(exc).splitlines() or [""]
            lines.append(f"  {name}: {type(exc).__name__}: {first}")
            lines += ["  " + line for line in rest]
        super().__init__("\n".join(lines))


class CommunicationTimeout(FlexctlError, TimeoutError):
    """A request got no reply within the transport's timeout."""

    def __init__(self, device: str, what: str, timeout: float) -> None:
        self.device = device
        self.what = what
        self.timeout = timeout
        super().__init__(f"{device}: no reply to {what} within {timeout:g} s")


class ProtocolError(FlexctlError):
    """The device answered, but with an error.

    ``code`` is the protocol's own number (a Modbus exception code, the value of
    an OPC UA StatusCode, a serial ERR code); ``status`` its name when known.
    """

    def __init__(
        self, device: str, what: str, *, code: int | None = None, status: str | None = None
    ) -> None:
        self.device = device
        self.what = what
        self.code = code
        self.status = status
        detail = ""
        if status is not None or code is not None:
            detail = (
                " ("
                + ", ".join(
                    part
                    for part in (status, None if code is None else f"code {code:#x}")
                    if part is not None
                )
                + ")"
            )
        super().__init__(f"{device}: {what}{detail}")


class OutOfRangeError(FlexctlError, ValueError):
    """A value is outside what a signal, parameter or encoding accepts."""


class DeviceBusyError(FlexctlError):
    """The device refuses a command because it is running something else.

    Transports raise it for the protocol's own "busy" answer (Modbus exception
    6, OPC UA BadInvalidState, serial ``ERR 6``); twin models raise it too.
    """


class ConditionTimeout(FlexctlError, TimeoutError):
    """A condition (a value settling, a program finishing) did not hold in process time."""

    def __init__(self, device: str, what: str, timeout: float) -> None:
        self.device = device
        self.what = what
        self.timeout = timeout
        super().__init__(f"{device}: {what} not reached within {timeout:g} s of process time")


class ProgramAborted(FlexctlError):
    """A device program ended Aborted (by an abort or the device) instead of Complete."""

    def __init__(self, device: str, program: str, step: str) -> None:
        self.device = device
        self.program = program
        self.step = step
        super().__init__(f"{device}: program {program} aborted in step {step or '-'}")


class InterlockTripped(FlexctlError):
    """An interlock condition holds the batch."""


@dataclass(frozen=True)
class Where:
    """A place in a file, 1-based line and column (column 0 when unknown)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line and self.column:
            return f"{self.file}:{self.line}:{self.column}"
        if self.line:
            return f"{self.file}:{self.line}"
        return self.file


class ConfigurationError(FlexctlError):
    """A profile, line, procedure or option is wrong; says where and what was expected."""

    def __init__(self, where: Where, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")

    @property
    def file(self) -> str:
        return self.where.file

    @property
    def line(self) -> int:
        return self.where.line
