"""Framing of ASCII line protocols (pure: no I/O).

A frame on the wire is::

    payload [ separator CRC ] terminator

``payload`` is printable ASCII (0x20..0x7E). With ``checksum: crc16`` the
separator (default ``*``) is followed by four upper-case hex digits of
the CRC-16 of the payload bytes. The variant is CRC-16/MODBUS: polynomial
0x8005 reflected (0xA001), initial value 0xFFFF, no final XOR; its check value
for ``b"123456789"`` is 0x4B37, sent as ``4B37`` (the number, not Modbus RTU's
low-byte-first order). It is the CRC most serial instruments use, so a
profile can be checked against a device manual.

:class:`LineSplitter` cuts an arbitrary byte stream into frames. It never
raises: a bad frame (bad or missing checksum, a non-ASCII or control byte,
a line longer than ``max_line``) comes out as a :class:`FrameError` in the
results and the splitter carries on at the next terminator, so a good frame
after garbage is never lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from flexctl.errors import ProtocolError

CHECKSUMS = ("none", "crc16")
DEFAULT_MAX_LINE = 256
_HEX = frozenset("0123456789ABCDEF")  # upper-case only: a flipped case bit is caught


def _crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` (reflected 0xA001, init 0xFFFF, no final XOR)."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


class FrameError(ProtocolError):
    """A frame that cannot be used: bad checksum, bad bytes, too long."""

    def __init__(self, device: str, reason: str, line: bytes = b"") -> None:
        self.reason = reason
        self.line = line
        shown = line[:40] + (b"..." if len(line) > 40 else b"")
        super().__init__(device, f"bad frame: {reason}" + (f": {shown!r}" if line else ""))


@dataclass(frozen=True)
class Framing:
    """How payloads are framed; ValueError with a clear message if ill-formed."""

    terminator: str = "\r\n"
    checksum: str = "none"
    separator: str = "*"

    def __post_init__(self) -> None:
        if not self.terminator or not all(ord(c) < 0x20 for c in self.terminator):
            # Control characters only, so no printable payload can contain it.
            raise ValueError(
                f'terminator {self.terminator!r}: expected control characters such as "\\r\\n"'
            )
        if self.checksum not in CHECKSUMS:
            raise ValueError(f"checksum {self.checksum!r}: expected one of {', '.join(CHECKSUMS)}")
        if (
            not self.separator
            or not all("!" <= c <= "~" for c in self.separator)
            or any(c in _HEX for c in self.separator)
        ):
            # Not a hex digit: the CRC is found by the separator's last occurrence.
            raise ValueError(
                f"separator {self.separator!r}: expected printable ASCII that is "
                "not a space or a hex digit, such as '*'"
            )

    @property
    def suffix_length(self) -> int:
        """Bytes a frame adds to its payload before the terminator."""
        return len(self.separator) + 4 if self.checksum == "crc16" else 0

    def encode(self, payload: str) -> bytes:
        """The bytes of one frame carrying ``payload`` (printable ASCII)."""
        data = payload.encode("ascii")
        if self.checksum == "crc16":
            return b"%s%s%04X%s" % (
                data,
                self.separator.encode(),
                crc16(data),
                self.terminator.encode(),
            )
        return data + self.terminator.encode()

    def decode(self, line: bytes, device: str = "") -> str:
        """The payload of one frame without its terminator; FrameError if unusable."""
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise FrameError(device, "non-ASCII byte", line) from None
        if not text.isprintable():  # for ASCII: 0x20..0x7E only
            raise FrameError(device, "control character", line)
        if self.checksum == "none":
            return text
        payload, sep, digits = text.rpartition(self.separator)
        if not sep or len(digits) != 4 or not _HEX.issuperset(digits):
            raise FrameError(device, "no checksum", line)
        if int(digits, 16) != crc16(payload.encode("ascii")):
            raise FrameError(device, "bad checksum", line)
        return payload


class LineSplitter:
    """Feed byte chunks, get complete payloads (str) or FrameErrors, in order.

    ``max_line`` bounds the bytes before a terminator (payload and checksum);
    a longer line is reported once and skipped up to its terminator, and the
    buffer never grows beyond it. Empty lines are skipped silently.
    """

    __slots__ = ("_buf", "_discarding", "_term", "device", "framing", "max_line")

    def __init__(
        self, framing: Framing, max_line: int = DEFAULT_MAX_LINE, *, device: str = ""
    ) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be >= 1, got {max_line}")
        self.framing = framing
        self.max_line = max_line
        self.device = device
        self._term = framing.terminator.encode("ascii")
        self._buf = b""
        self._discarding = False

    def reset(self) -> None:
        """Forget any partial line (resynchronise at the next byte)."""
        self._buf = b""
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes held back waiting for a terminator."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[str | FrameError]:
        """Split ``data`` (appended to what was held back) into results; never raises."""
        buf = self._buf + data if self._buf else data
        term = self._term
        tlen = len(term)
        out: list[str | FrameError] = []
        start = 0
        while True:
            end = buf.find(term, start)
            if end < 0:
                break
            if self._discarding:
                self._discarding = False  # the over-long line ends here: resynchronised
            elif end > start:
                out.append(self._frame(buf[start:end]))
            start = end + tlen
        rest = buf[start:]
        if not self._discarding and len(rest) > self.max_line + tlen - 1:
            # Even with a partial terminator at its end, this line is too long.
            out.append(
                FrameError(self.device, f"line longer than {self.max_line} bytes", rest[:40])
            )
            self._discarding = True
        if self._discarding:
            # Keep only what could be the start of a terminator split across chunks.
            keep = tlen - 1
            rest = rest[-keep:] if keep else b""
        self._buf = rest
        return out

    def _frame(self, line: bytes) -> str | FrameError:
        if len(line) > self.max_line:
            return FrameError(self.device, f"line longer than {self.max_line} bytes", line)
        try:
            return self.framing.decode(line, self.device)
        except FrameError as exc:
            return exc
