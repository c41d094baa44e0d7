"""Values of the record as a person reads them in the report (plain text, not yet escaped).

A recorded value is shown exactly as stored (a float by its shortest round-trip
text), never rounded: the report is the record. Summary figures use the
run summary's readable numbers instead (:func:`flexctl.cli.progress.number`).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from importlib import metadata

from flexctl.report.rows import Moment


def value_text(value: object) -> str:
    """A JSON value: text as it is, numbers exactly, true/false, lists and objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return float_text(value)
    if isinstance(value, int | str):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


def float_text(value: float) -> str:
    """A float exactly (its shortest round-trip text), large and tiny ones as ``2.1e6``."""
    text = repr(value)
    size = abs(value)
    if not math.isfinite(value) or 1e-4 <= size < 1e6 or size == 0:
        return text
    mantissa, _, exponent = f"{Decimal(text).normalize():E}".partition("E")
    return f"{mantissa}e{int(exponent)}"


def utc_text(moment: datetime) -> str:
    """``2025-03-04 05:06:07 UTC`` (the record's times are UTC; seconds are enough to read)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def moment_text(moment: Moment | None) -> str:
    """``d03 14:20 (2025-03-07 19:26:07 UTC)``, or ``-`` when there is none."""
    if moment is None:
        return "-"
    return f"{moment.stamp} ({utc_text(moment.utc)})"


def yes_no(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def flexctl_version() -> str:
    try:
        return metadata.version("flexctl")
    except metadata.PackageNotFoundError:
        return "unknown"
