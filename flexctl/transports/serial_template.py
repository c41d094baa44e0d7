"""Request and reply templates of ASCII line protocols (pure: no I/O).

A template is literal text with named fields, ``"TS {value:f}"``,
``"OK {cycles:d}"``, ``"ID {name:s} {version:d}"``. Field types:

- ``f``: a finite float; sent as the shortest exact ``repr`` (so 37.5 and
  0.1 round-trip exactly) or with a precision, ``{value:.2f}``; received as
  ``-12.5``, ``3``, ``1e-3`` ... (``nan`` and ``inf`` are refused).
- ``d``: an integer (``-123``).
- ``b``: a bool sent as ``0``/``1``.
- ``s``: printable ASCII text without spaces, possibly empty (a device with no
  alarm answers ``"ALM "``, and ``"ALM {value:s}"`` reads it as ``""``). A
  text field that ends the template takes the rest of the line, spaces
  included (``"STEP {value:s}"`` carries ``"segment 3"``).
- no type (``{value}``): the template's default type (a signal's type), or,
  where there is none (command templates), taken from the value when sending
  and read as int, else float, else text when receiving.

``{{`` and ``}}`` are literal braces. Two fields must be separated by literal
text, or a received line would be ambiguous. Ill-formed templates raise
:class:`TemplateError` (the caller adds file:line); values a template cannot
carry raise :class:`~flexctl.errors.OutOfRangeError`; a line that does not fit
raises :class:`TemplateMismatch`, a :class:`~flexctl.errors.ProtocolError`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from flexctl.errors import OutOfRangeError, ProtocolError
from flexctl.profile import Value

FIELD_TYPES = ("f", "d", "b", "s")
"""Field types a template may name; ``""`` stands for "untyped" (auto)."""

# What a field matches on the wire. Literal parts are escaped, the whole is anchored.
_FLOAT = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_INT = r"[-+]?\d+"
_PATTERNS = {"f": _FLOAT, "d": _INT, "b": "[01]", "s": "[!-~]*", "": "[!-~]+"}
_REST = "[ -~]*"  # printable ASCII with spaces, for a text field that ends the template
_INT_RE = re.compile(_INT)
_FLOAT_RE = re.compile(_FLOAT)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPEC_RE = re.compile(r"(?:\.(\d{1,2}))?([fdbs]?)")
_MAX_PRECISION = 17


class TemplateError(ValueError):
    """An ill-formed template; the caller turns it into a ConfigurationError with file:line."""


class TemplateMismatch(ProtocolError):
    """A received line does not fit the template."""

    def __init__(self, template: str, line: str) -> None:
        self.template = template
        self.line = line
        super().__init__("", f"reply {line!r} does not fit {template!r}")


@dataclass(frozen=True)
class Field:
    """One named field: its type (``""`` = auto) and, for floats, a precision."""

    name: str
    type: str
    precision: int | None = None
    rest: bool = False  # a text field that ends the template: spaces allowed


class Template:
    """A compiled template: :meth:`format` for sending, :meth:`parse` for receiving."""

    __slots__ = ("_converters", "_parts", "_regex", "_verify", "fields", "names", "text")

    def __init__(self, text: str, default_type: str = "") -> None:
        if default_type not in ("", *FIELD_TYPES):
            raise TemplateError(f"unknown default field type {default_type!r}")
        if not isinstance(text, str) or not text:
            raise TemplateError("a template must be non-empty text")
        bad = next((c for c in text if not " " <= c <= "~"), None)
        if bad is not None:
            raise TemplateError(f"template {text!r}: {bad!r} is not printable ASCII")
        self.text = text
        parts = _split(text, default_type)
        fields = [p for p in parts if isinstance(p, Field)]
        self._parts: tuple[str | Field, ...] = tuple(parts)
        self.fields: tuple[Field, ...] = tuple(fields)
        self.names: tuple[str, ...] = tuple(f.name for f in fields)
        pattern = "".join(
            re.escape(p) if isinstance(p, str) else f"({_REST if p.rest else _PATTERNS[p.type]})"
            for p in parts
        )
        self._regex = re.compile(pattern)
        self._converters: tuple[Callable[[str], Value], ...] = tuple(
            _CONVERTERS[f.type] for f in fields
        )
        # With two fields or more, one can swallow the literal after it ("{a:s},{b:s}"
        # with a = "x,y", "{a:d}5{b:d}"); format() then checks its output reads back.
        # One field between fixed literals is always read back as sent.
        self._verify = len(fields) > 1

    def __repr__(self) -> str:
        return f"Template({self.text!r})"

    @property
    def is_literal(self) -> bool:
        """True when the template has no fields (its text is sent as is)."""
        return not self.fields

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def format(self, values: Mapping[str, Value] | None = None) -> str:
        """The line for ``values``; OutOfRangeError for a value the template cannot carry."""
        if not self.fields:
            return self.text
        values = values or {}
        out: list[str] = []
        texts: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            try:
                value = values[part.name]
            except KeyError:
                raise OutOfRangeError(
                    f"template {self.text!r}: no value for field {part.name!r}"
                ) from None
            text = _format_value(part, value)
            out.append(text)
            texts.append(text)
        line = "".join(out)
        if self._verify:
            match = self._regex.fullmatch(line)
            if match is None or match.groups() != tuple(texts):
                raise OutOfRangeError(
                    f"template {self.text!r}: values {dict(values)!r} would be read back "
                    "differently (a text value contains the literal that follows it)"
                )
        return line

    def parse(self, line: str) -> dict[str, Value]:
        """The named, typed values of ``line``; TemplateMismatch when it does not fit."""
        parsed = self._parse_or_none(line)
        if parsed is None:
            raise TemplateMismatch(self.text, line)
        return parsed

    def _parse_or_none(self, line: str) -> dict[str, Value] | None:
        match = self._regex.fullmatch(line)
        if match is None:
            return None
        result: dict[str, Value] = {}
        for name, convert, text in zip(self.names, self._converters, match.groups(), strict=True):
            try:
                result[name] = convert(text)
            except ValueError:  # an overflowing float, an int too long to convert
                return None
        return result


def _split(text: str, default_type: str) -> list[str | Field]:
    """Literal runs and fields of a template, in order; TemplateError if ill-formed."""
    parts: list[str | Field] = []
    fields: list[Field] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if text.startswith("{{", i) or text.startswith("}}", i):
            literal.append(char)
            i += 2
            continue
        if char == "}":
            raise TemplateError(f"template {text!r}: single '}}' at {i} (write '}}}}')")
        if char != "{":
            literal.append(char)
            i += 1
            continue
        end = text.find("}", i)
        if end < 0:
            raise TemplateError(f"template {text!r}: '{{' at {i} is never closed")
        body = text[i + 1 : end]
        if "{" in body:
            raise TemplateError(f"template {text!r}: '{{' inside a field at {i}")
        field = _parse_field(text, body, default_type)
        if any(f.name == field.name for f in fields):
            raise TemplateError(f"template {text!r}: field {field.name!r} appears twice")
        if literal:
            parts.append("".join(literal))
            literal = []
        elif parts and isinstance(parts[-1], Field):
            raise TemplateError(
                f"template {text!r}: fields {parts[-1].name!r} and {field.name!r} "
                "need literal text between them"
            )
        parts.append(field)
        fields.append(field)
        i = end + 1
    if literal:
        parts.append("".join(literal))
    elif parts and isinstance(parts[-1], Field) and parts[-1].type == "s":
        parts[-1] = replace(parts[-1], rest=True)
    return parts


def _parse_field(text: str, body: str, default_type: str) -> Field:
    name, _, spec = body.partition(":")
    if not _NAME_RE.fullmatch(name):
        raise TemplateError(
            f"template {text!r}: field {{{body}}} needs a name (letters, digits, _), "
            "e.g. {value:f}"
        )
    match = _SPEC_RE.fullmatch(spec)
    if match is None:
        raise TemplateError(
            f"template {text!r}: field {{{body}}}: unknown format {spec!r} "
            "(expected f, d, b, s or a precision such as .2f)"
        )
    digits, kind = match.groups()
    kind = kind or default_type
    precision = None
    if digits is not None:
        if kind != "f":
            raise TemplateError(
                f"template {text!r}: field {{{body}}}: a precision needs a float field (f)"
            )
        precision = int(digits)
        if precision > _MAX_PRECISION:
            raise TemplateError(
                f"template {text!r}: field {{{body}}}: precision above {_MAX_PRECISION}"
            )
    return Field(name, kind, precision)


# -- receiving ---------------------------------------------------------------------


def _to_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # "1e999" overflows to inf
        raise ValueError(text)
    return value


def _to_bool(text: str) -> bool:
    return text == "1"


def _to_auto(text: str) -> Value:
    try:
        if _INT_RE.fullmatch(text):
            return int(text)
        if _FLOAT_RE.fullmatch(text):
            return _to_float(text)
    except ValueError:  # too many digits, or a float that overflows: keep the text
        pass
    return text


def _to_text(text: str) -> str:
    return text


_CONVERTERS: dict[str, Callable[[str], Value]] = {
    "f": _to_float,
    "d": int,
    "b": _to_bool,
    "s": _to_text,
    "": _to_auto,
}


# -- sending -----------------------------------------------------------------------


def _format_value(field: Field, value: Value) -> str:
    kind = field.type
    if kind == "":
        kind = (
            "b"
            if isinstance(value, bool)
            else "d"
            if isinstance(value, int)
            else "f"
            if isinstance(value, float)
            else "s"
        )
    if kind == "f":
        return _format_float(field, value)
    if kind == "d":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int):  # a bool is 0/1 here, for bool signals sent as d
            return str(int(value))
    elif kind == "b":
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return "1" if value else "0"
    elif kind == "s" and isinstance(value, str):
        low = " " if field.rest else "!"
        if all(low <= c <= "~" for c in value):
            return value
        spaces = "" if field.rest else ", no spaces"
        raise OutOfRangeError(
            f"field {field.name}: {value!r} is not sendable text (printable ASCII{spaces})"
        )
    raise OutOfRangeError(f"field {field.name}: expected a {_KIND_NAMES[kind]}, got {value!r}")


def _format_float(field: Field, value: Value) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OutOfRangeError(f"field {field.name}: expected a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        raise OutOfRangeError(f"field {field.name}: {value} is too large for a float") from None
    if not math.isfinite(number):
        raise OutOfRangeError(f"field {field.name}: {number} cannot be sent")
    if field.precision is None:
        return repr(number)  # shortest text that reads back to the same float
    return format(number, f".{field.precision}f")


_KIND_NAMES = {"f": "number", "d": "integer", "b": "bool (0/1)", "s": "text"}
