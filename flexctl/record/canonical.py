"""The canonical encoding that every hash of the record is computed over.

JSON with keys sorted, no insignificant whitespace, UTF-8 (``ensure_ascii=False``),
finite numbers only, and datetimes as UTC ISO 8601 text with microseconds
(``2025-01-02T03:04:05.000000+00:00``). Floats are written with Python's
shortest round-trip ``repr``, so ``json.loads`` gives back the very same float.

The encoding is injective on what it accepts: keys must be strings (an ``int``
key would silently become text and collide with the string), ``True`` and
``1`` and ``1.0`` encode differently, and a value the encoding cannot keep
exactly (NaN, infinity, a naive datetime, a lone surrogate) is refused with
:class:`CanonicalError` rather than changed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime

from flexctl.record.store import RecordError

#: The prev_hash of the first entry of every chain.
GENESIS_HASH = "0" * 64


class CanonicalError(RecordError, ValueError):
    """A value has no canonical encoding (not JSON data, not finite, a naive datetime)."""


def utc_text(moment: datetime) -> str:
    """``moment`` as UTC ISO 8601 text with microseconds; a naive datetime is refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CanonicalError(f"datetime {moment.isoformat()} has no time zone; UTC is required")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_utc(text: str) -> datetime:
    """The inverse of :func:`utc_text`: an aware datetime in UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise CanonicalError(f"time {text!r} has no time zone; UTC is required")
    return moment.astimezone(UTC)


class _Refused(Exception):
    """Raised inside :func:`_plain`; carries where (keys, indexes) on the way out."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


def _plain(value: object) -> object:
    """``value`` checked and made plain JSON data (datetimes as text), or _Refused."""
    # Scalars returned as they are (json writes bool, int and str subclasses as their base).
    if value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused(f"{value!r} is not a finite number")
        return value
    if isinstance(value, datetime):
        try:
            return utc_text(value)
        except CanonicalError as exc:
            raise _Refused(str(exc)) from None
    if isinstance(value, Mapping):
        plain: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Refused(f"key {key!r} is not a string")
            try:
                plain[key] = _plain(item)
            except _Refused as refused:
                refused.path.append(f"[{key!r}]")
                raise
        return plain
    if isinstance(value, list | tuple):
        items: list[object] = []
        for index, item in enumerate(value):
            try:
                items.append(_plain(item))
            except _Refused as refused:
                refused.path.append(f"[{index}]")
                raise
        return items
    raise _Refused(f"{type(value).__name__} {value!r} is not JSON data")


def encode(value: object) -> bytes:
    """The canonical encoding of ``value``: canonical JSON text in UTF-8."""
    try:
        plain = _plain(value)
    except _Refused as refused:
        where = "value" + "".join(reversed(refused.path))
        raise CanonicalError(f"{where}: {refused.message}") from None
    text = json.dumps(
        plain,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalError(f"value holds text that is not valid Unicode: {exc}") from None


def encode_text(value: object) -> str:
    """The canonical JSON text of ``value`` (what is stored in a JSON column)."""
    return encode(value).decode("utf-8")


def sha256_hex(value: object) -> str:
    """The SHA-256 (lower-case hex) of the canonical encoding of ``value``."""
    return hashlib.sha256(encode(value)).hexdigest()
