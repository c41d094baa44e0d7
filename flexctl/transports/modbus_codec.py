"""Values to and from 16-bit Modbus registers (or coils): pure functions, no pymodbus.

A multi-register number is packed big-endian (most significant byte first), cut
into 16-bit words, then reordered as the device wants:

* ``word_order``: ``big`` puts the most significant word in the first register,
  ``little`` the least significant one (the common "word swap").
* ``byte_order``: ``big`` puts the high byte first inside each register (the
  Modbus norm), ``little`` swaps the two bytes of every register.

So for a 32-bit value with bytes ``A B C D``: big/big is ``AB CD``, little/big
``CD AB``, big/little ``BA DC`` and little/little ``DC BA``. Strings fill a
fixed number of registers (``length``), two UTF-8 bytes per register in the
same orders, padded with NUL bytes; a string read back ends at its first NUL
(a C string: what follows it is whatever the device left in the buffer), so
text holding a NUL cannot be written.

Engineering value = raw * ``scale`` + ``offset``. Encoding goes the other way,
rounds to the integer type and refuses (:class:`OutOfRangeError`) a value that
does not fit. With integer scale and offset an integer raw value decodes to an
``int``; otherwise numbers decode to ``float``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from flexctl.errors import OutOfRangeError
from flexctl.profile import Value

ORDERS = ("big", "little")

#: Registers per value (strings take ``length`` registers instead).
WIDTHS: dict[str, int] = {
    "bool": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "int64": 4,
    "uint64": 4,
    "float32": 2,
    "float64": 4,
}
CODEC_TYPES: tuple[str, ...] = (*WIDTHS, "string")

_FORMATS = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}
_INT_RANGES = {
    name: ((-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1))
    for name, bits, signed in (
        ("int16", 16, True),
        ("uint16", 16, False),
        ("int32", 32, True),
        ("uint32", 32, False),
        ("int64", 64, True),
        ("uint64", 64, False),
    )
}


def is_integer_type(type_name: str) -> bool:
    return type_name in _INT_RANGES


def is_float_type(type_name: str) -> bool:
    return type_name in ("float32", "float64")


@dataclass(frozen=True)
class Codec:
    """How one value sits in registers; ``length`` (registers) only for strings."""

    type: str
    word_order: str = "big"
    byte_order: str = "big"
    scale: int | float = 1
    offset: int | float = 0
    length: int = 0
    _words: struct.Struct = field(init=False, repr=False, compare=False)
    _value: struct.Struct | None = field(init=False, repr=False, compare=False)
    _identity: bool = field(init=False, repr=False, compare=False)
    _int_result: bool = field(init=False, repr=False, compare=False)
    _endian: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.type not in CODEC_TYPES:
            raise ValueError(f"unknown register type {self.type!r}")
        if self.word_order not in ORDERS or self.byte_order not in ORDERS:
            raise ValueError("word_order and byte_order must be 'big' or 'little'")
        if self.type == "string":
            if self.length < 1:
                raise ValueError("a string needs a length of at least one register")
        elif self.length:
            raise ValueError("length applies to strings only")
        if not _finite_number(self.scale) or self.scale == 0:
            raise ValueError("scale must be a finite, non-zero number")
        if not _finite_number(self.offset):
            raise ValueError("offset must be a finite number")
        if self.type in ("bool", "string") and (self.scale != 1 or self.offset != 0):
            raise ValueError(f"scale and offset do not apply to {self.type}")
        width = self.length if self.type == "string" else WIDTHS[self.type]
        # Packing the words little-endian is exactly "swap the bytes of each register".
        endian = ">" if self.byte_order == "big" else "<"
        fmt = _FORMATS.get(self.type)
        object.__setattr__(self, "_words", struct.Struct(f"{endian}{width}H"))
        object.__setattr__(self, "_value", struct.Struct(f">{fmt}") if fmt else None)
        object.__setattr__(self, "_identity", self.scale == 1 and self.offset == 0)
        object.__setattr__(self, "_endian", endian)
        object.__setattr__(
            self,
            "_int_result",
            self.type in _INT_RANGES
            and isinstance(self.scale, int)
            and isinstance(self.offset, int),
        )

    @property
    def width(self) -> int:
        """Registers this value occupies (one bit in a coil table)."""
        return self.length if self.type == "string" else WIDTHS[self.type]

    # -- registers -----------------------------------------------------------

    def encode(self, value: Value) -> list[int]:
        """The registers for ``value``; OutOfRangeError when it does not fit."""
        if self.type == "bool":
            if not isinstance(value, bool):
                raise OutOfRangeError(f"expected a bool, got {value!r}")
            return [1 if value else 0]
        if self.type == "string":
            return self._from_bytes(self._string_bytes(value))
        assert self._value is not None
        raw = self._raw(value)
        try:
            data = self._value.pack(raw)
        except (struct.error, OverflowError) as exc:
            raise OutOfRangeError(f"{value!r} does not fit {self.type}: {exc}") from None
        return self._from_bytes(data)

    def decode(self, registers: Sequence[int]) -> Value:
        """The value held in ``registers`` (exactly :attr:`width` of them)."""
        if len(registers) != self.width:
            raise OutOfRangeError(
                f"{self.type}: expected {self.width} registers, got {len(registers)}"
            )
        if self.type == "bool":
            return registers[0] != 0
        data = self._to_bytes(registers)
        if self.type == "string":
            try:
                return data.split(b"\x00", 1)[0].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise OutOfRangeError(f"string registers are not UTF-8: {exc.reason}") from None
        assert self._value is not None
        raw: int | float = self._value.unpack(data)[0]
        if self._identity:
            return raw
        if self._int_result:
            return int(raw) * int(self.scale) + int(self.offset)
        return raw * self.scale + self.offset

    # -- many values at once ------------------------------------------------

    @property
    def bulk(self) -> bool:
        """True when neighbouring values of this codec pack with one struct call."""
        return self._value is not None and self._identity

    def decode_many(self, registers: Sequence[int], count: int) -> list[Value]:
        """``count`` neighbouring values (``count * width`` registers) in one go."""
        if not self.bulk or count == 1:
            width = self.width
            return [self.decode(registers[i * width : (i + 1) * width]) for i in range(count)]
        if len(registers) != count * self.width:
            raise OutOfRangeError(
                f"{self.type}: expected {count * self.width} registers, got {len(registers)}"
            )
        # Reversing every register reverses the values and, inside each, its words:
        # so a little word order costs two slices, not a loop.
        little = self.word_order == "little" and self.width > 1
        words = registers[::-1] if little else registers
        try:
            data = _struct(self._endian, f"{len(words)}H").pack(*words)
        except struct.error as exc:
            raise OutOfRangeError(f"not 16-bit registers: {exc}") from None
        values = list(_struct(">", f"{count}{_FORMATS[self.type]}").unpack(data))
        return values[::-1] if little else values

    def encode_many(self, values: Sequence[Value]) -> list[int]:
        """The registers of neighbouring ``values``, all of this codec."""
        if not self.bulk or len(values) == 1:
            return [word for value in values for word in self.encode(value)]
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise OutOfRangeError(f"expected a number for {self.type}, got {value!r}")
        little = self.word_order == "little" and self.width > 1
        ordered = values[::-1] if little else values
        try:
            data = _struct(">", f"{len(values)}{_FORMATS[self.type]}").pack(*ordered)
        except (struct.error, OverflowError):
            # one of them does not fit: let the one-by-one path say which
            return [word for value in values for word in self.encode(value)]
        words = list(_struct(self._endian, f"{len(values) * self.width}H").unpack(data))
        return words[::-1] if little else words

    # -- coils ---------------------------------------------------------------

    @staticmethod
    def encode_bit(value: Value) -> bool:
        if not isinstance(value, bool):
            raise OutOfRangeError(f"expected a bool, got {value!r}")
        return value

    # -- helpers -------------------------------------------------------------

    def _raw(self, value: Value) -> int | float:
        """Engineering value to raw number (rounded and range-checked for integers)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise OutOfRangeError(f"expected a number for {self.type}, got {value!r}")
        if self.type in _INT_RANGES:
            number = _int_raw(value, self.scale, self.offset)
            low, high = _INT_RANGES[self.type]
            if not low <= number <= high:
                raise OutOfRangeError(
                    f"{value!r} gives raw {number}, which does not fit {self.type} [{low}, {high}]"
                )
            return number
        try:
            raw = float(value)
        except OverflowError:
            raise OutOfRangeError(f"{value!r} does not fit {self.type}") from None
        if self._identity:
            return raw
        scaled = (raw - self.offset) / self.scale
        if math.isfinite(raw) and not math.isfinite(scaled):
            raise OutOfRangeError(f"{value!r} overflows {self.type} at scale {self.scale:g}")
        return scaled

    def _string_bytes(self, value: Value) -> bytes:
        if not isinstance(value, str):
            raise OutOfRangeError(f"expected text, got {value!r}")
        if "\x00" in value:
            raise OutOfRangeError(f"{value!r} holds a NUL, which ends a string in registers")
        data = value.encode("utf-8")
        size = 2 * self.length
        if len(data) > size:
            raise OutOfRangeError(
                f"{value!r} is {len(data)} bytes, more than {self.length} registers hold ({size})"
            )
        return data.ljust(size, b"\x00")

    def _from_bytes(self, data: bytes) -> list[int]:
        words = list(self._words.unpack(data))
        if self.word_order == "little":
            words.reverse()
        return words

    def _to_bytes(self, registers: Sequence[int]) -> bytes:
        words = registers if self.word_order == "big" else registers[::-1]
        try:
            return self._words.pack(*words)
        except struct.error as exc:
            raise OutOfRangeError(f"not 16-bit registers: {list(registers)!r}") from exc


_STRUCTS: dict[str, struct.Struct] = {}


def _struct(endian: str, body: str) -> struct.Struct:
    """A compiled struct, kept: batches repeat the same few shapes."""
    fmt = endian + body
    compiled = _STRUCTS.get(fmt)
    if compiled is None:
        compiled = _STRUCTS[fmt] = struct.Struct(fmt)
    return compiled


def _finite_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _int_raw(value: int | float, scale: int | float, offset: int | float) -> int:
    """Exact integer arithmetic where possible: int64 values do not survive a float."""
    if isinstance(value, int) and isinstance(scale, int) and isinstance(offset, int):
        quotient, remainder = divmod(value - offset, scale)
        if remainder == 0:
            return quotient
    try:
        raw = value if scale == 1 and offset == 0 else (value - offset) / scale
        if not math.isfinite(raw):
            raise OutOfRangeError(f"{value!r} is not a finite number in raw units")
    except OverflowError:
        raise OutOfRangeError(f"{value!r} is far outside any integer register") from None
    return round(raw)


def encode(
    value: Value,
    type_name: str,
    *,
    word_order: str = "big",
    byte_order: str = "big",
    scale: int | float = 1,
    offset: int | float = 0,
    length: int = 0,
) -> list[int]:
    """Registers for ``value`` (see :class:`Codec`)."""
    return Codec(type_name, word_order, byte_order, scale, offset, length).encode(value)


def decode(
    registers: Sequence[int],
    type_name: str,
    *,
    word_order: str = "big",
    byte_order: str = "big",
    scale: int | float = 1,
    offset: int | float = 0,
    length: int = 0,
) -> Value:
    """The value in ``registers`` (see :class:`Codec`)."""
    return Codec(type_name, word_order, byte_order, scale, offset, length).decode(registers)
