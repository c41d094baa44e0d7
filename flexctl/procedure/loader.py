"""Load a procedure file into the model, collecting every problem with its place.

The loader checks everything a procedure says on its own: YAML syntax, the
schema (unknown keys with the expected ones, missing keys, wrong types),
durations, expression syntax, the parameters (type, default, limits,
pattern), a literal ``suggest`` against its entry, and the interlocks
(:mod:`flexctl.procedure.interlocks`). Checks against a line (devices,
commands, signals, limits, names) are :mod:`flexctl.procedure.validate`'s.

Problems are collected, not raised one at a time: :func:`read_procedure`
returns the model built from every well-formed part together with the list of
problems, each a :class:`~flexctl.errors.ConfigurationError` whose place is
file:line:column. Inside an expression, a duration or a pattern the column
points at the offending character of the string (after its opening quote).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from flexctl.errors import ConfigurationError, Where
from flexctl.procedure.duration import DurationError, format_duration, parse_duration
from flexctl.procedure.expression import (
    BOOLEAN,
    NUMBER,
    TEXT,
    ExpressionError,
    compile_expression,
)
from flexctl.procedure.interlocks import read_interlocks
from flexctl.procedure.model import (
    Argument,
    Call,
    CommandStep,
    Duration,
    Entry,
    EntryType,
    Expr,
    Literal,
    Meaning,
    OnTimeout,
    Parameter,
    ParameterType,
    Procedure,
    ProcedureError,
    PromptStep,
    RecordStep,
    Role,
    Rule,
    SetStep,
    Step,
    Target,
    TextSpan,
    UnitProcedure,
    Value,
    WaitStep,
    WaitUntilStep,
)
from flexctl.yamlpos import PosDict, PosList, load_text

if TYPE_CHECKING:
    from flexctl.supervisor.alarm_defs import AlarmDefinition

TOP_KEYS = (
    "procedure",
    "version",
    "description",
    "line",
    "parameters",
    "interlocks",
    "alarms",
    "unit_procedures",
)
PARAMETER_KEYS = ("type", "unit", "default", "limits", "pattern", "description")
UNIT_KEYS = ("name", "description", "steps", "rules", "interlocks")
STEP_COMMON_KEYS = ("id", "description")
#: The kind key of each step kind, and the keys that kind takes besides id/description.
STEP_KEYS: Mapping[str, tuple[str, ...]] = {
    "command": ("command", "args"),
    "wait_until": ("wait_until", "timeout", "poll", "on_timeout"),
    "wait": ("wait",),
    "prompt": ("prompt", "role", "meaning", "entry"),
    "record": ("record", "unit"),
    "set": ("set", "value"),
}
RULE_KEYS = ("id", "description", "every", "when", "command", "args")
ENTRY_KEYS = ("type", "pattern", "limits", "unit", "suggest")
DEFAULT_POLL = "1 min"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TARGET = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\Z")
# YAML's line breaks (PyYAML counts these when it numbers lines).
_BREAKS = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
# Source characters a double-quoted escape takes, by the letter after the backslash.
_ESCAPE_WIDTH = {"x": 4, "u": 6, "U": 10}

_E = TypeVar("_E", bound=StrEnum)


@dataclass(frozen=True)
class Loaded:
    """What :func:`read_procedure` found: the model (None if there is none at all) and problems.

    ``skipped`` are the names of parameters and the ids of steps and rules too
    malformed to load: the validator treats references to them as known, so
    one mistake is reported once, not again at every use.
    """

    procedure: Procedure | None
    problems: tuple[ConfigurationError, ...]
    skipped: Mapping[str, Where] = field(default_factory=dict)


def load_procedure(path: Path) -> Procedure:
    """Load a procedure; :class:`ProcedureError` (with every problem) if anything is wrong."""
    loaded = read_procedure(path)
    if loaded.problems or loaded.procedure is None:
        raise ProcedureError(loaded.problems or (ConfigurationError(Where(str(path)), "empty"),))
    return loaded.procedure


def read_procedure(path: Path) -> Loaded:
    """Read a procedure file: the model of its well-formed parts and every problem found."""
    where = Where(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return Loaded(None, (ConfigurationError(where, f"cannot read file: {exc.strerror}"),))
    except UnicodeDecodeError as exc:
        return Loaded(None, (ConfigurationError(where, f"not UTF-8 text: {exc.reason}"),))
    return parse_procedure(text, str(path))


def parse_procedure(text: str, filename: str) -> Loaded:
    """Parse procedure text (``filename`` names it in messages)."""
    try:
        data = load_text(text, filename)
    except ConfigurationError as exc:
        return Loaded(None, (exc,))
    reader = _Reader(filename, text)
    procedure = reader.procedure(data)
    problems = sorted(reader.problems, key=lambda p: (p.where.line, p.where.column))
    return Loaded(procedure, tuple(problems), dict(reader.skipped))


def is_name(text: str) -> bool:
    """Letters, digits and ``_``, not starting with a digit: a name expressions can use."""
    return bool(_NAME.match(text))


def suggest(word: str, candidates: Iterable[str]) -> str:
    """``", did you mean 'x'?"`` when a candidate is close to ``word``, else ``""``."""
    options = list(candidates)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.7)
    if not close and len(word) >= 3:
        close = sorted(o for o in options if o.startswith(word) or word.startswith(o))[:1]
    return f", did you mean {close[0]!r}?" if close else ""


def check_parameter_value(param: Parameter, value: Literal) -> str | None:
    """Why ``value`` (already of the parameter's type) is not acceptable, or None."""
    if param.type is ParameterType.TEXT and param.pattern is not None and isinstance(value, str):
        try:
            matched = re.fullmatch(param.pattern, value) is not None
        except re.error:
            return None  # the pattern itself is reported where it is written
        if not matched:
            return f"{value!r} does not match the pattern {param.pattern!r}"
    if param.limits is not None and isinstance(value, int | float) and not isinstance(value, bool):
        low, high = param.limits
        if not low <= value <= high:
            if param.type is ParameterType.DURATION:
                return (
                    f"{format_duration(value)} is outside the limits "
                    f"[{format_duration(low)}, {format_duration(high)}]"
                )
            unit = f" {param.unit}" if param.unit else ""
            return f"{value:g}{unit} is outside the limits [{low:g}, {high:g}]{unit}"
    return None


def check_entry_value(entry: Entry, value: Literal) -> str | None:
    """Why ``value`` would not answer a prompt with ``entry`` (type, pattern, limits), or None."""
    if entry.type is EntryType.TEXT:
        if not isinstance(value, str):
            return f"expected text, got {kind_of(value)}"
        if entry.pattern is not None:
            try:
                matched = re.fullmatch(entry.pattern, value) is not None
            except re.error:
                return None  # the pattern itself is reported where it is written
            if not matched:
                return f"{value!r} does not match the pattern {entry.pattern!r}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"expected a finite number, got {kind_of(value)}"
    if entry.type is EntryType.INT and not isinstance(value, int):
        return f"expected a whole number, got {kind_of(value)}"
    if entry.limits is not None:
        low, high = entry.limits
        if not low <= value <= high:
            unit = f" {entry.unit}" if entry.unit else ""
            return f"{value:g}{unit} is outside the limits [{low:g}, {high:g}]{unit}"
    return None


def kind_of(value: Any) -> str:
    """How a wrong value is named in a message."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return f"{type(value).__name__} {value!r}"


def _typed(type_: ParameterType, raw: Any) -> Literal | None:
    """``raw`` as a value of a float, int, bool or text parameter, or None if it is not one."""
    if type_ is ParameterType.FLOAT and _is_number(raw) and math.isfinite(raw):
        return float(raw)
    if type_ is ParameterType.INT and _is_number(raw) and isinstance(raw, int):
        return raw
    if (type_ is ParameterType.BOOL and isinstance(raw, bool)) or (
        type_ is ParameterType.TEXT and isinstance(raw, str)
    ):
        return raw
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Reader:
    """Walks the loaded YAML, builds the model and collects problems."""

    def __init__(self, filename: str, text: str) -> None:
        self.file = filename
        self.lines = _BREAKS.split(text)
        self.problems: list[ConfigurationError] = []
        self.skipped: dict[str, Where] = {}

    def problem(self, where: Where, message: str) -> None:
        self.problems.append(ConfigurationError(where, message))

    # -- generic shapes -------------------------------------------------------------

    def mapping(self, value: Any, where: Where, what: str) -> PosDict | None:
        if isinstance(value, PosDict):
            return value
        self.problem(where, f"{what}: expected a mapping, got {kind_of(value)}")
        return None

    def sequence(self, value: Any, where: Where, what: str) -> PosList | None:
        if isinstance(value, PosList):
            return value
        self.problem(where, f"{what}: expected a list, got {kind_of(value)}")
        return None

    def keys(
        self, raw: PosDict, allowed: Sequence[str], what: str, required: Sequence[str] = ()
    ) -> None:
        expected = ", ".join(sorted(allowed))
        for key in raw:
            if key not in allowed:
                self.problem(
                    raw.key_at(key),
                    f"{what}: unknown key {key!r}{suggest(key, allowed)} "
                    f"(expected one of {expected})",
                )
        for key in required:
            if key not in raw:
                self.problem(raw.where, f"{what}: missing key {key!r}")

    def text(self, raw: PosDict, key: str, what: str, *, empty: bool = False) -> str | None:
        """``raw[key]`` as text (None, with a problem, when it is something else)."""
        if key not in raw:
            return None
        value = raw[key]
        if isinstance(value, str) and (empty or value.strip()):
            return value
        self.problem(raw.at(key), f"{what}: {key}: expected text, got {kind_of(value)}")
        return None

    def choice(
        self, raw: PosDict, key: str, what: str, enum: type[_E], default: _E | None
    ) -> _E | None:
        """One of ``enum``'s values (``default`` when absent; None, with a problem, if wrong)."""
        if key not in raw:
            return default
        value = raw[key]
        members = [m.value for m in enum]
        if isinstance(value, str) and value in members:
            return enum(value)
        self.problem(
            raw.at(key),
            f"{what}: {key}: expected one of {', '.join(members)}, got {kind_of(value)}",
        )
        return None

    def name_of(self, raw: PosDict, key: str, what: str) -> str | None:
        """An identifier under ``key`` (an id or a unit procedure's name)."""
        name = self.text(raw, key, what)
        if name is None:
            return None
        if not is_name(name):
            self.problem(
                raw.at(key),
                f"{what}: {key} {name!r}: expected letters, digits and _ "
                "(not starting with a digit), so expressions can name it",
            )
            return None
        return name

    # -- positions inside strings -----------------------------------------------------

    def span(self, where: Where, text: str) -> TextSpan:
        """Map each character of a scalar's ``text`` to its column in the file."""
        if not 1 <= where.line <= len(self.lines) or where.column < 1:
            return TextSpan(where)
        source = self.lines[where.line - 1]
        start = where.column - 1
        if start >= len(source):
            return TextSpan(where)
        opening = source[start]
        mapped: tuple[list[int], int] | None
        if opening == '"':
            mapped = _double_quoted(source, start + 1)
        elif opening == "'":
            mapped = _single_quoted(source, start + 1)
        elif source.startswith(text, start):
            mapped = (list(range(where.column, where.column + len(text))), where.column + len(text))
        else:
            mapped = None
        if mapped is None or len(mapped[0]) != len(text):
            return TextSpan(where)
        return TextSpan(where, tuple(mapped[0]), mapped[1])

    def expression(
        self, raw: PosDict, key: str, what: str, *, condition: bool = False
    ) -> Expr | None:
        """An expression written without ``=`` (a condition, a ``record``)."""
        if key not in raw:
            return None
        value = raw[key]
        if not isinstance(value, str) or not value.strip():
            expected = "a condition (an expression)" if condition else "an expression"
            self.problem(raw.at(key), f"{what}: {key}: expected {expected}, got {kind_of(value)}")
            return None
        expr = self.compile(value, self.span(raw.at(key), value), f"{what}: {key}")
        if expr is not None and condition and expr.compiled.kind in (NUMBER, TEXT):
            self.problem(
                expr.span.at(0),
                f"{what}: {key}: a condition must be true or false, not {expr.compiled.kind}",
            )
            return None
        return expr

    def compile(self, text: str, span: TextSpan, what: str) -> Expr | None:
        try:
            compiled = compile_expression(text)
        except ExpressionError as exc:
            self.problem(span.at(exc.offset), f"{what}: {exc.message}")
            return None
        return Expr(text=text, compiled=compiled, span=span)

    def duration(
        self, raw: PosDict, key: str, what: str, default: str | None = None
    ) -> Duration | None:
        """A duration, checked to be longer than zero."""
        if key not in raw:
            if default is None:
                return None
            return Duration(default, parse_duration(default), TextSpan(raw.where))
        return self.duration_value(raw[key], raw.at(key), f"{what}: {key}", positive=True)

    def duration_value(
        self, value: Any, where: Where, what: str, *, positive: bool = False
    ) -> Duration | None:
        if not isinstance(value, str):
            hint = " (a bare number is refused: the unit is part of the meaning)"
            self.problem(
                where,
                f"{what}: expected a duration such as '30 s', '5 min', '12 h' or '1 d 12 h', "
                f"got {kind_of(value)}{hint if _is_number(value) else ''}",
            )
            return None
        span = self.span(where, value)
        try:
            seconds = parse_duration(value)
        except DurationError as exc:
            self.problem(span.at(exc.offset), f"{what}: {exc.message}")
            return None
        if positive and not seconds > 0:
            self.problem(span.at(0), f"{what}: must be longer than 0 s, got {value!r}")
            return None
        return Duration(value, seconds, span)

    def value(self, value: Any, where: Where, what: str) -> Value | None:
        """A command argument or ``set`` value: literal, or ``=expression``."""
        if isinstance(value, bool):
            return value
        if _is_number(value):
            if isinstance(value, float) and not math.isfinite(value):
                self.problem(where, f"{what}: {value!r} is not a finite number")
                return None
            return value  # type: ignore[no-any-return]
        if isinstance(value, str):
            if value.startswith("="):
                return self.compile(value[1:], self.span(where, value).skip(1), what)
            return value
        self.problem(
            where,
            f"{what}: expected a number, true/false, text or an =expression, got {kind_of(value)}",
        )
        return None

    def target(self, raw: PosDict, key: str, what: str, member: str) -> Target | None:
        value = raw.get(key)
        if isinstance(value, str):
            match = _TARGET.match(value)
            if match:
                span = self.span(raw.at(key), value)
                return Target(match.group(1), match.group(2), span)
        self.problem(raw.at(key), f"{what}: {key}: expected device.{member}, got {kind_of(value)}")
        return None

    # -- the document -------------------------------------------------------------------

    def procedure(self, data: Any) -> Procedure | None:
        top = self.mapping(data, Where(self.file, 1, 1), "procedure")
        if top is None:
            return None
        self.keys(top, TOP_KEYS, "procedure", ("procedure", "version", "unit_procedures"))
        name = self.text(top, "procedure", "procedure") or ""
        version = ""
        if "version" in top:
            raw_version = top["version"]
            if isinstance(raw_version, str) and raw_version.strip():
                version = raw_version
            else:
                hint = f' (quote it: "{raw_version}")' if _is_number(raw_version) else ""
                self.problem(
                    top.at("version"), f"version: expected text, got {kind_of(raw_version)}{hint}"
                )
        description = self.text(top, "description", "procedure", empty=True) or ""
        line = self.text(top, "line", "procedure")
        parameters = self.parameters(top)
        interlocks = read_interlocks(self, top, "")
        alarms = self.alarms(top)
        units: list[UnitProcedure] = []
        raw_units = None
        if "unit_procedures" in top:
            raw_units = self.sequence(
                top["unit_procedures"], top.at("unit_procedures"), "unit_procedures"
            )
        if raw_units is not None:
            if not raw_units:
                self.problem(top.at("unit_procedures"), "unit_procedures: expected at least one")
            for index, raw in enumerate(raw_units):
                unit = self.unit(raw, raw_units.at(index), index)
                if unit is not None:
                    units.append(unit)
        return Procedure(
            name=name,
            version=version,
            unit_procedures=tuple(units),
            parameters=parameters,
            where=top.where,
            description=description,
            line=line,
            line_where=top.at("line") if line is not None else None,
            interlocks=interlocks,
            alarms=alarms,
        )

    def alarms(self, top: PosDict) -> tuple[AlarmDefinition, ...]:
        """The procedure's ISA-18.2 alarm definitions (``alarms:``); a problem is reported."""
        from flexctl.supervisor.alarm_defs import parse_alarms

        if top.get("alarms") is None:
            return ()
        try:
            return parse_alarms(top["alarms"], top.at("alarms"))
        except ConfigurationError as exc:
            self.problems.append(exc)
            return ()

    # -- parameters -----------------------------------------------------------------------

    def parameters(self, top: PosDict) -> dict[str, Parameter]:
        if "parameters" not in top or top["parameters"] is None:
            return {}
        raw = self.mapping(top["parameters"], top.at("parameters"), "parameters")
        result: dict[str, Parameter] = {}
        if raw is not None:
            for name, spec in raw.items():
                param = self.parameter(name, spec, raw)
                if param is not None:
                    result[name] = param
                elif is_name(name):
                    self.skipped.setdefault(name, raw.key_at(name))
        return result

    def parameter(self, name: str, raw: Any, parent: PosDict) -> Parameter | None:
        what = f"parameter {name}"
        ok = True
        if not is_name(name):
            self.problem(
                parent.key_at(name),
                f"{what}: expected letters, digits and _ (not starting with a digit), "
                "so expressions can name it",
            )
            ok = False
        spec = self.mapping(raw, parent.at(name), what)
        if spec is None:
            return None
        self.keys(spec, PARAMETER_KEYS, what, ("type",))
        type_ = self.choice(spec, "type", what, ParameterType, None)
        unit = self.text(spec, "unit", what)
        description = self.text(spec, "description", what, empty=True) or ""
        if type_ is None:
            return None
        limits = self.parameter_limits(spec, type_, what)
        pattern = self.pattern(spec, what, allowed=type_ is ParameterType.TEXT)
        param = Parameter(
            name=name,
            type=type_,
            where=parent.key_at(name),
            unit=unit,
            limits=limits,
            pattern=pattern,
            description=description,
        )
        default: Literal | None = None
        if "default" in spec:
            default = self.parameter_default(param, spec)
            if default is None:
                ok = False
        if not ok:
            return None
        return Parameter(
            name=name,
            type=type_,
            where=parent.key_at(name),
            unit=unit,
            default=default,
            limits=limits,
            pattern=pattern,
            description=description,
        )

    def parameter_limits(
        self, spec: PosDict, type_: ParameterType, what: str
    ) -> tuple[float, float] | None:
        if "limits" not in spec:
            return None
        raw = spec["limits"]
        where = spec.at("limits")
        if type_ not in (ParameterType.FLOAT, ParameterType.INT, ParameterType.DURATION):
            self.problem(where, f"{what}: limits apply to float, int and duration parameters")
            return None
        if not isinstance(raw, PosList) or len(raw) != 2:
            self.problem(where, f"{what}: limits: expected [low, high], got {kind_of(raw)}")
            return None
        bounds: list[float] = []
        for index, item in enumerate(raw):
            item_where = raw.at(index)
            if type_ is ParameterType.DURATION:
                duration = self.duration_value(item, item_where, f"{what}: limits")
                if duration is None:
                    return None
                bounds.append(duration.seconds)
            elif (
                _is_number(item)
                and math.isfinite(item)
                and (type_ is ParameterType.FLOAT or isinstance(item, int))
            ):
                bounds.append(float(item))
            else:
                expected = "a whole number" if type_ is ParameterType.INT else "a finite number"
                self.problem(
                    item_where, f"{what}: limits: expected {expected}, got {kind_of(item)}"
                )
                return None
        if bounds[0] > bounds[1]:
            self.problem(where, f"{what}: limits: low must not be above high, got {raw!r}")
            return None
        return (bounds[0], bounds[1])

    def pattern(self, spec: PosDict, what: str, *, allowed: bool) -> str | None:
        if "pattern" not in spec:
            return None
        if not allowed:
            self.problem(spec.at("pattern"), f"{what}: a pattern applies to text only")
            return None
        pattern = self.text(spec, "pattern", what)
        if pattern is None:
            return None
        try:
            re.compile(pattern)
        except re.error as exc:
            span = self.span(spec.at("pattern"), pattern)
            self.problem(span.at(exc.pos or 0), f"{what}: pattern: {exc.msg}")
            return None
        return pattern

    def parameter_default(self, param: Parameter, spec: PosDict) -> Literal | None:
        where = spec.at("default")
        raw = spec["default"]
        what = f"parameter {param.name}: default"
        value: Literal | None = None
        if param.type is ParameterType.DURATION:
            duration = self.duration_value(raw, where, what)
            value = None if duration is None else duration.seconds
            if duration is None:
                return None
        else:
            value = _typed(param.type, raw)
        if value is None:
            expected = {
                ParameterType.FLOAT: "a finite number",
                ParameterType.INT: "a whole number",
                ParameterType.BOOL: "true or false",
                ParameterType.TEXT: "text",
            }[param.type]
            self.problem(where, f"{what}: expected {expected}, got {kind_of(raw)}")
            return None
        why = check_parameter_value(param, value)
        if why is not None:
            self.problem(where, f"{what}: {why}")
            return None
        return value

    # -- unit procedures, steps, rules -------------------------------------------------------

    def unit(self, raw: Any, where: Where, index: int) -> UnitProcedure | None:
        spec = self.mapping(raw, where, f"unit procedure {index + 1}")
        if spec is None:
            return None
        name = self.name_of(spec, "name", f"unit procedure {index + 1}")
        what = f"unit procedure {name or index + 1}"
        self.keys(spec, UNIT_KEYS, what, ("name", "steps"))
        description = self.text(spec, "description", what, empty=True) or ""
        steps: list[Step] = []
        rules: list[Rule] = []
        label = name or str(index + 1)
        raw_steps = None
        if "steps" in spec:
            raw_steps = self.sequence(spec["steps"], spec.at("steps"), f"{what}: steps")
        if raw_steps is not None:
            if not raw_steps:
                self.problem(spec.at("steps"), f"{what}: steps: expected at least one step")
            for i, item in enumerate(raw_steps):
                step = self.step(item, raw_steps.at(i), label, i)
                if step is not None:
                    steps.append(step)
        raw_rules = None
        if "rules" in spec and spec["rules"] is not None:
            raw_rules = self.sequence(spec["rules"], spec.at("rules"), f"{what}: rules")
        for i, item in enumerate(raw_rules or ()):
            rule = self.rule(item, raw_rules.at(i) if raw_rules else where, label, i)
            if rule is not None:
                rules.append(rule)
        interlocks = read_interlocks(self, spec, f"unit procedure {label}: ")
        if name is None:
            return None
        return UnitProcedure(
            name=name,
            steps=tuple(steps),
            rules=tuple(rules),
            where=spec.where,
            description=description,
            interlocks=interlocks,
        )

    def step(self, raw: Any, where: Where, unit: str, index: int) -> Step | None:
        spec = self.mapping(raw, where, f"unit procedure {unit}: step {index + 1}")
        if spec is None:
            return None
        step_id = spec.get("id")
        what = (
            f"step {step_id}"
            if isinstance(step_id, str) and step_id
            else f"unit procedure {unit}: step {index + 1}"
        )
        kinds = [key for key in spec if key in STEP_KEYS]
        if not kinds:
            every = sorted({*STEP_COMMON_KEYS, *(k for keys in STEP_KEYS.values() for k in keys)})
            self.keys(spec, every, what)
            self.problem(
                spec.where,
                f"{what}: no step kind: expected one of {', '.join(STEP_KEYS)}",
            )
            self.skip(spec, step_id)
            return None
        if len(kinds) > 1:
            self.problem(
                spec.key_at(kinds[1]),
                f"{what}: one kind per step, got {' and '.join(kinds)}",
            )
            self.skip(spec, step_id)
            return None
        kind = kinds[0]
        self.keys(spec, (*STEP_COMMON_KEYS, *STEP_KEYS[kind]), f"{what} ({kind})", ("id",))
        valid_id = self.name_of(spec, "id", what) if "id" in spec else None
        description = self.text(spec, "description", what, empty=True) or ""
        build = getattr(self, f"_step_{kind}")
        fields = build(spec, what)
        if valid_id is None or fields is None:
            self.skip(spec, step_id)
            return None
        step: Step = fields[0](
            id=valid_id,
            unit_procedure=unit,
            where=spec.where,
            id_where=spec.at("id"),
            description=description,
            **fields[1],
        )
        return step

    def skip(self, spec: PosDict, step_id: Any) -> None:
        if isinstance(step_id, str) and is_name(step_id):
            self.skipped.setdefault(step_id, spec.at("id"))

    def call(self, spec: PosDict, what: str) -> Call | None:
        target = self.target(spec, "command", what, "method") if "command" in spec else None
        args: dict[str, Argument] = {}
        ok = target is not None
        if "args" in spec and spec["args"] is not None:
            raw_args = self.mapping(spec["args"], spec.at("args"), f"{what}: args")
            if raw_args is None:
                ok = False
            else:
                for name, raw in raw_args.items():
                    value = self.value(raw, raw_args.at(name), f"{what}: argument {name}")
                    if value is None:
                        ok = False
                        continue
                    args[name] = Argument(name, value, raw_args.at(name), raw_args.key_at(name))
        if not ok or target is None:
            return None
        return Call(target=target, args=args, where=spec.at("command"))

    def _step_command(self, spec: PosDict, what: str) -> _Fields | None:
        call = self.call(spec, what)
        return None if call is None else (CommandStep, {"call": call})

    def _step_wait_until(self, spec: PosDict, what: str) -> _Fields | None:
        condition = self.expression(spec, "wait_until", what, condition=True)
        timeout = self.duration(spec, "timeout", what)
        if "timeout" not in spec:
            self.problem(spec.where, f"{what}: missing key 'timeout' (how long to wait at most)")
        poll = self.duration(spec, "poll", what, default=DEFAULT_POLL)
        on_timeout = self.choice(spec, "on_timeout", what, OnTimeout, OnTimeout.HOLD)
        if condition is None or timeout is None or poll is None or on_timeout is None:
            return None
        return (
            WaitUntilStep,
            {"condition": condition, "timeout": timeout, "poll": poll, "on_timeout": on_timeout},
        )

    def _step_wait(self, spec: PosDict, what: str) -> _Fields | None:
        duration = self.duration(spec, "wait", what)
        return None if duration is None else (WaitStep, {"duration": duration})

    def _step_prompt(self, spec: PosDict, what: str) -> _Fields | None:
        text = self.text(spec, "prompt", what)
        role = self.choice(spec, "role", what, Role, None)
        if "role" not in spec:
            self.problem(
                spec.where,
                f"{what}: missing key 'role' (who signs: {', '.join(r.value for r in Role)})",
            )
        meaning = self.choice(spec, "meaning", what, Meaning, Meaning.PERFORMED)
        entry: Entry | None = None
        entry_ok = True
        if "entry" in spec and spec["entry"] is not None:
            entry = self.entry(spec["entry"], spec.at("entry"), f"{what}: entry")
            entry_ok = entry is not None
        if text is None or role is None or meaning is None or not entry_ok:
            return None
        return (PromptStep, {"text": text, "role": role, "meaning": meaning, "entry": entry})

    def entry(self, raw: Any, where: Where, what: str) -> Entry | None:
        spec = self.mapping(raw, where, what)
        if spec is None:
            return None
        self.keys(spec, ENTRY_KEYS, what)
        type_ = self.choice(spec, "type", what, EntryType, EntryType.TEXT)
        unit = self.text(spec, "unit", what)
        if type_ is None:
            return None
        pattern = self.pattern(spec, what, allowed=type_ is EntryType.TEXT)
        limits: tuple[float, float] | None = None
        if "limits" in spec:
            if type_ is EntryType.TEXT:
                self.problem(spec.at("limits"), f"{what}: limits apply to float and int entries")
                return None
            param_type = ParameterType.INT if type_ is EntryType.INT else ParameterType.FLOAT
            limits = self.parameter_limits(spec, param_type, what)
            if limits is None:
                return None
        if "pattern" in spec and pattern is None:
            return None
        entry = Entry(type=type_, where=spec.where, pattern=pattern, limits=limits, unit=unit)
        if "suggest" not in spec:
            return entry
        suggestion = self.suggestion(spec, entry, f"{what}: suggest")
        return None if suggestion is None else replace(entry, suggest=suggestion)

    def suggestion(self, spec: PosDict, entry: Entry, what: str) -> Argument | None:
        """The entry's ``suggest``: a value like a command argument, that fits the entry."""
        where = spec.at("suggest")
        value = self.value(spec["suggest"], where, what)
        if value is None:
            return None
        if isinstance(value, Expr):
            # an expression is checked when it is asked; only a kind the text shows here
            kind = value.compiled.kind
            wrong = (BOOLEAN, NUMBER) if entry.type is EntryType.TEXT else (BOOLEAN, TEXT)
            if kind in wrong:
                expected = "text" if entry.type is EntryType.TEXT else "a number"
                self.problem(
                    value.where, f"{what}: expected {expected}, the expression gives {kind}"
                )
                return None
        else:
            why = check_entry_value(entry, value)
            if why is not None:
                self.problem(where, f"{what}: {why}")
                return None
        return Argument("suggest", value, where, spec.key_at("suggest"))

    def _step_record(self, spec: PosDict, what: str) -> _Fields | None:
        expression = self.expression(spec, "record", what)
        unit = self.text(spec, "unit", what)
        if expression is None or ("unit" in spec and unit is None):
            return None
        return (RecordStep, {"expression": expression, "unit": unit})

    def _step_set(self, spec: PosDict, what: str) -> _Fields | None:
        target = self.target(spec, "set", what, "signal")
        value: Value | None = None
        if "value" in spec:
            value = self.value(spec["value"], spec.at("value"), f"{what}: value")
        else:
            self.problem(spec.where, f"{what}: missing key 'value'")
        if target is None or value is None:
            return None
        argument = Argument(target.member, value, spec.at("value"), spec.key_at("value"))
        return (SetStep, {"target": target, "value": argument})

    def rule(self, raw: Any, where: Where, unit: str, index: int) -> Rule | None:
        spec = self.mapping(raw, where, f"unit procedure {unit}: rule {index + 1}")
        if spec is None:
            return None
        rule_id = spec.get("id")
        what = (
            f"rule {rule_id}"
            if isinstance(rule_id, str) and rule_id
            else f"unit procedure {unit}: rule {index + 1}"
        )
        self.keys(spec, RULE_KEYS, what, ("id", "every", "command"))
        valid_id = self.name_of(spec, "id", what) if "id" in spec else None
        description = self.text(spec, "description", what, empty=True) or ""
        every = self.duration(spec, "every", what)
        when = self.expression(spec, "when", what, condition=True)
        call = self.call(spec, what)
        broken_when = "when" in spec and when is None
        if valid_id is None or every is None or call is None or broken_when:
            self.skip(spec, rule_id)
            return None
        return Rule(
            id=valid_id,
            unit_procedure=unit,
            every=every,
            call=call,
            where=spec.where,
            id_where=spec.at("id"),
            when=when,
            description=description,
        )


_Fields = tuple[Callable[..., Step], dict[str, Any]]


def _double_quoted(source: str, start: int) -> tuple[list[int], int] | None:
    """Columns of the characters of a double-quoted scalar that ends on this line."""
    columns: list[int] = []
    index = start
    while index < len(source):
        char = source[index]
        if char == '"':
            return columns, index + 1
        columns.append(index + 1)
        if char == "\\":
            if index + 1 >= len(source):
                return None  # an escaped line break: the string goes on below
            index += _ESCAPE_WIDTH.get(source[index + 1], 2)
        else:
            index += 1
    return None


def _single_quoted(source: str, start: int) -> tuple[list[int], int] | None:
    """Columns of the characters of a single-quoted scalar that ends on this line."""
    columns: list[int] = []
    index = start
    while index < len(source):
        if source[index] == "'":
            if source.startswith("''", index):
                columns.append(index + 1)
                index += 2
                continue
            return columns, index + 1
        columns.append(index + 1)
        index += 1
    return None
