"""Check a procedure against a line before anything runs, and read batch parameters.

:func:`check_procedure` is what ``flexctl validate`` runs: load the file
(:mod:`flexctl.procedure.loader` reports syntax, schema, durations, expression
syntax and parameters), find the line, then :func:`validate_procedure`:

- ids: unique across steps, rules and interlocks (their names), and not also
  a device or parameter name; unit procedure names unique;
- devices: every ``device.x`` names a device of the line;
- commands: a public async method of the device's driver class (not the
  plumbing in :data:`NOT_COMMANDS`); every argument known to it and every
  required one given (keyword-only arguments with a default, such as
  ``within`` and ``poll``, are optional); a literal argument of the type the
  method declares and, where the driver maps the argument to a signal in its
  ``argument_limits`` class attribute (method -> argument -> signal), within
  the profile's limits of that signal;
- ``set``: a writable signal of the device's profile, a literal value of the
  signal's type and within its limits;
- expressions: every name is a parameter, a ``device.signal`` of the line or
  an earlier step's ``id.<field>`` (rules: steps of earlier unit procedures),
  also in an entry's ``suggest``;
- interlocks: the device on the line; a band's signal in the device's profile
  and a number; an alarm interlock's device has an ``alarm`` signal (codes are
  the device's own text and are not checked).

A value that is just a parameter (``"=culture_temperature"``) is checked like a
literal with the parameter's value for this batch (given, else its default);
so is a ``suggest``, against its entry.

Every problem is a :class:`~flexctl.errors.ConfigurationError` with
file:line:column; all of them are collected, sorted by place.
"""

from __future__ import annotations

import enum
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from drivers.base import Driver
from flexctl.errors import ConfigurationError, OutOfRangeError, Where
from flexctl.line import Line, LineDevice, find_line
from flexctl.procedure.duration import DurationError, parse_duration
from flexctl.procedure.loader import (
    check_entry_value,
    check_parameter_value,
    read_procedure,
    suggest,
)
from flexctl.procedure.model import (
    BandInterlock,
    Call,
    CommandStep,
    Expr,
    InterlockSpec,
    Literal,
    Parameter,
    ParameterType,
    Procedure,
    ProcedureError,
    PromptStep,
    RecordStep,
    Rule,
    SetStep,
    Step,
    Target,
    WaitUntilStep,
)
from flexctl.profile import Profile, SignalSpec
from flexctl.supervisor.alarm_defs import AlarmDefinition

#: The line a procedure without a ``line:`` is checked against.
DEFAULT_LINE = "sim"


#: Public async driver methods a procedure does not call as commands: the
#: language has its own steps for them (``set``, ``wait_until``, ``record``)
#: or they belong to the supervisor (the link, the safe state).
NOT_COMMANDS = frozenset(
    {
        "connect",
        "close",
        "link_up",
        "read",
        "get",
        "set",
        "command",
        "wait_until",
        "set_and_wait",
        "safe_state",
        "recover",  # the supervisor's, after a crash
    }
)

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


@dataclass(frozen=True)
class Check:
    """What :func:`check_procedure` found."""

    path: Path
    procedure: Procedure | None
    line: Line | None
    values: Mapping[str, Literal] = field(default_factory=dict)
    problems: tuple[ConfigurationError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def check_procedure(path: Path, *, line: str | None = None, params: Sequence[str] = ()) -> Check:
    """Load ``path``, find its line and validate; every problem, never an exception.

    ``line`` is a shipped line name or a path (relative to the working
    folder); by default the procedure's ``line:`` (a name, or a path relative
    to the procedure file), else ``sim``. ``params`` are ``name=value`` batch
    parameters, checked if given (a parameter without a default need not be).
    """
    loaded = read_procedure(path)
    problems = list(loaded.problems)
    procedure = loaded.procedure
    if procedure is None:
        return Check(path, None, None, problems=_sorted(problems, str(path)))
    the_line: Line | None = None
    try:
        if line is not None:
            the_line = find_line(line, where=Where("--line"))
        elif procedure.line is not None:
            the_line = find_line(procedure.line, base=path.parent, where=procedure.line_where)
        else:
            the_line = find_line(DEFAULT_LINE, where=procedure.where)
    except ConfigurationError as exc:
        problems.append(exc)
    values: dict[str, Literal] = {}
    try:
        values = parse_parameter_values(procedure, params, require_all=False)
    except ProcedureError as exc:
        problems.extend(exc.problems)
    problems += validate_procedure(procedure, the_line, values=values, skipped=loaded.skipped)
    return Check(path, procedure, the_line, values, _sorted(problems, procedure.file))


def validate_procedure(
    procedure: Procedure,
    line: Line | None,
    *,
    values: Mapping[str, Literal] | None = None,
    skipped: Mapping[str, Where] | None = None,
) -> list[ConfigurationError]:
    """Every problem of ``procedure`` on ``line`` (without a line, only the ids are checked).

    ``values`` are this batch's parameter values (defaults fill the rest);
    ``skipped`` the ids of steps the loader could not load (references to them
    are not reported again).
    """
    checker = _Validator(procedure, line, values or {}, skipped or {})
    checker.run()
    return list(_sorted(checker.problems, procedure.file))


def parse_parameter_values(
    procedure: Procedure, items: Sequence[str], *, require_all: bool = True
) -> dict[str, Literal]:
    """Batch parameters from ``name=value`` texts, with defaults for the rest.

    Each value is converted to the parameter's type (a duration to seconds)
    and checked against its limits or pattern. With ``require_all`` a
    parameter without a default that is not given is a problem too.
    ProcedureError lists every problem.
    """
    problems: list[ConfigurationError] = []
    given: dict[str, Literal] = {}
    for item in items:
        where = Where(f"--param {item}")
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            problems.append(ConfigurationError(where, "expected name=value"))
            continue
        param = procedure.parameters.get(name)
        if param is None:
            known = ", ".join(sorted(procedure.parameters)) or "none"
            problems.append(
                ConfigurationError(
                    where,
                    f"unknown parameter {name!r}{suggest(name, procedure.parameters)} "
                    f"(procedure {procedure.name} has: {known})",
                )
            )
            continue
        if name in given:
            problems.append(ConfigurationError(where, f"parameter {name} is given twice"))
            continue
        try:
            given[name] = convert_parameter(param, text.strip())
        except ValueError as exc:
            problems.append(ConfigurationError(where, f"parameter {name}: {exc}"))
    result: dict[str, Literal] = {}
    for name, param in procedure.parameters.items():
        if name in given:
            result[name] = given[name]
        elif param.default is not None:
            result[name] = param.default
        elif require_all and not any(p.message.startswith(f"parameter {name}:") for p in problems):
            problems.append(
                ConfigurationError(
                    param.where,
                    f"parameter {name} has no default: set it for this batch (--param {name}=...)",
                )
            )
    if problems:
        raise ProcedureError(problems)
    return result


def convert_parameter(param: Parameter, text: str) -> Literal:
    """``text`` as a value of ``param`` (ValueError saying why not)."""
    value: Literal
    if param.type is ParameterType.TEXT:
        value = text
    elif param.type is ParameterType.BOOL:
        if text.lower() in _TRUE:
            value = True
        elif text.lower() in _FALSE:
            value = False
        else:
            raise ValueError(f"expected true or false, got {text!r}")
    elif param.type is ParameterType.DURATION:
        try:
            value = parse_duration(text)
        except DurationError as exc:
            raise ValueError(f"{exc.message} in {text!r}") from None
    else:
        number = text
        if param.unit and number.endswith(param.unit):
            number = number[: -len(param.unit)].strip()
        try:
            value = int(number) if param.type is ParameterType.INT else float(number)
        except ValueError:
            expected = "a whole number" if param.type is ParameterType.INT else "a number"
            raise ValueError(f"expected {expected}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {text!r}")
    why = check_parameter_value(param, value)
    if why is not None:
        raise ValueError(why)
    return value


def driver_commands(cls: type[Driver]) -> dict[str, Callable[..., Any]]:
    """The methods a procedure may call on a device driven by ``cls``."""
    commands: dict[str, Callable[..., Any]] = {}
    for name in dir(cls):
        if name.startswith("_") or name in NOT_COMMANDS:
            continue
        member = getattr(cls, name)
        if inspect.iscoroutinefunction(member):
            commands[name] = member
    return commands


def _sorted(
    problems: Sequence[ConfigurationError], main_file: str
) -> tuple[ConfigurationError, ...]:
    unique: dict[tuple[Where, str], ConfigurationError] = {}
    for problem in problems:
        unique.setdefault((problem.where, problem.message), problem)
    return tuple(
        sorted(
            unique.values(),
            key=lambda p: (p.where.file != main_file, p.where.file, p.where.line, p.where.column),
        )
    )


class _Validator:
    def __init__(
        self,
        procedure: Procedure,
        line: Line | None,
        values: Mapping[str, Literal],
        skipped: Mapping[str, Where],
    ) -> None:
        self.procedure = procedure
        self.line = line
        self.values = values
        self.skipped = skipped
        self.problems: list[ConfigurationError] = []
        #: every step id -> where it is (for "comes later" messages)
        self.step_ids: dict[str, Where] = {s.id: s.id_where for s in procedure.steps()}
        #: every interlock: the procedure's own, then each unit procedure's
        self.interlocks: list[InterlockSpec] = [
            *procedure.interlocks,
            *(i for unit in procedure.unit_procedures for i in unit.interlocks),
        ]

    def problem(self, where: Where, message: str) -> None:
        self.problems.append(ConfigurationError(where, message))

    def run(self) -> None:
        self.check_ids()
        if self.line is None:
            return
        self.check_collisions(self.line)
        for interlock in self.interlocks:
            self.check_interlock(interlock, self.line)
        plant = {alarm.name: alarm for alarm in self.line.alarms}
        for alarm in self.procedure.alarms:
            self.check_alarm(alarm, self.line)
            if alarm.name in plant:
                self.problem(
                    alarm.where,
                    f"alarm {alarm.name}: line {self.line.name} has an alarm of that name "
                    f"already (at {plant[alarm.name].where})",
                )
        earlier: set[str] = set()
        for unit in self.procedure.unit_procedures:
            before_unit = frozenset(earlier)
            for rule in unit.rules:
                self.check_rule(rule, before_unit)
            for step in unit.steps:
                self.check_step(step, earlier)
                earlier.add(step.id)

    # -- ids ----------------------------------------------------------------------------

    def check_ids(self) -> None:
        units: dict[str, Where] = {}
        for unit in self.procedure.unit_procedures:
            if unit.name in units:
                self.problem(
                    unit.where,
                    f"unit procedure {unit.name!r} appears twice "
                    f"(first at line {units[unit.name].line})",
                )
            units.setdefault(unit.name, unit.where)
        seen: dict[str, Where] = dict(self.skipped)
        # steps, rules and interlocks share one namespace, checked in file order
        items: list[Step | Rule] = [*self.procedure.steps(), *self.procedure.rules()]
        named = [(i.id, i.id_where, "id") for i in items]
        named += [(i.name, _name_where(i), "interlock name") for i in self.interlocks]
        for name, where, what in sorted(named, key=lambda n: (n[1].line, n[1].column)):
            first = seen.get(name)
            if first is not None and first != where:
                self.problem(where, f"duplicate {what} {name!r} (first at line {first.line})")
            seen.setdefault(name, where)

    def check_collisions(self, line: Line) -> None:
        for name, param in self.procedure.parameters.items():
            if name in line.devices:
                self.problem(
                    param.where,
                    f"parameter {name!r} is also a device of line {line.name}; rename it",
                )
        items: list[Step | Rule] = [*self.procedure.steps(), *self.procedure.rules()]
        for item in items:
            if item.id in line.devices:
                self.problem(
                    item.id_where,
                    f"id {item.id!r} is also a device of line {line.name}: "
                    f"'{item.id}.x' could mean either; rename the step",
                )
            elif item.id in self.procedure.parameters:
                self.problem(item.id_where, f"id {item.id!r} is also a parameter; rename one")
        for interlock in self.interlocks:
            name, where = interlock.name, _name_where(interlock)
            if name in line.devices:
                self.problem(
                    where,
                    f"interlock name {name!r} is also a device of line {line.name}; rename it",
                )
            elif name in self.procedure.parameters:
                self.problem(where, f"interlock name {name!r} is also a parameter; rename one")

    # -- interlocks -------------------------------------------------------------------------

    def check_interlock(self, interlock: InterlockSpec, line: Line) -> None:
        what = f"interlock {interlock.name}"
        if isinstance(interlock, BandInterlock):
            device = self.device(interlock.target, what)
            if device is None:
                return
            profile = device.profile
            member, where = interlock.target.member, interlock.target.member_where
            spec = profile.signals.get(member)
            if spec is None:
                self.problem(
                    where,
                    f"{what}: device {device.name} has no signal {member!r}"
                    f"{suggest(member, profile.signals)} in profile {profile.name}",
                )
            elif not spec.numeric:
                kind = f"one of {', '.join(spec.enum)}" if spec.enum is not None else spec.type
                self.problem(
                    where,
                    f"{what}: signal {member} of {device.name} is not a number ({kind}) in "
                    f"profile {profile.name}; a band needs a number",
                )
            return
        found = line.devices.get(interlock.device)
        if found is None:
            known = ", ".join(sorted(line.devices))
            self.problem(
                interlock.device_where,
                f"{what}: unknown device {interlock.device!r}"
                f"{suggest(interlock.device, line.devices)} (line {line.name} has {known})",
            )
        elif "alarm" not in found.profile.signals:
            self.problem(
                interlock.device_where,
                f"{what}: device {found.name} has no 'alarm' signal in profile "
                f"{found.profile.name}, so its alarms cannot be watched",
            )

    def check_alarm(self, alarm: AlarmDefinition, line: Line) -> None:
        """An ISA-18.2 limit alarm watches a numeric signal of a device on the line."""
        what = f"alarm {alarm.name}"
        device = line.devices.get(alarm.device)
        if device is None:
            known = ", ".join(sorted(line.devices))
            self.problem(
                alarm.where,
                f"{what}: unknown device {alarm.device!r}"
                f"{suggest(alarm.device, line.devices)} (line {line.name} has {known})",
            )
            return
        profile = device.profile
        spec = profile.signals.get(alarm.signal_name)
        if spec is None:
            self.problem(
                alarm.where,
                f"{what}: device {device.name} has no signal {alarm.signal_name!r}"
                f"{suggest(alarm.signal_name, profile.signals)} in profile {profile.name}",
            )
        elif not spec.numeric:
            self.problem(
                alarm.where,
                f"{what}: signal {alarm.signal_name} of {device.name} is not a number in "
                f"profile {profile.name}; a limit alarm needs a number",
            )

    # -- steps and rules ------------------------------------------------------------------

    def check_step(self, step: Step, earlier: Set[str]) -> None:
        what = f"step {step.id}"
        if isinstance(step, CommandStep):
            self.check_call(step.call, what, earlier)
        elif isinstance(step, WaitUntilStep):
            self.check_names(step.condition, f"{what}: wait_until", earlier)
        elif isinstance(step, RecordStep):
            self.check_names(step.expression, f"{what}: record", earlier)
        elif isinstance(step, SetStep):
            self.check_set(step, what, earlier)
        elif isinstance(step, PromptStep) and step.entry and step.entry.suggest:
            entry, value = step.entry, step.entry.suggest.value
            if isinstance(value, Expr):
                self.check_names(value, f"{what}: entry: suggest", earlier)
            literal = self.literal_of(value) if isinstance(value, Expr) else None
            if literal is not None:
                why = check_entry_value(entry, literal[0])
                if why is not None:
                    where = step.entry.suggest.where
                    self.problem(where, f"{what}: entry: suggest: {why}{literal[1]}")

    def check_rule(self, rule: Rule, scope: Set[str]) -> None:
        what = f"rule {rule.id}"
        if rule.when is not None:
            self.check_names(rule.when, f"{what}: when", scope, rule=True)
        self.check_call(rule.call, what, scope, rule=True)

    def device(self, target: Target, what: str) -> LineDevice | None:
        assert self.line is not None
        device = self.line.devices.get(target.device)
        if device is None:
            known = ", ".join(sorted(self.line.devices))
            self.problem(
                target.device_where,
                f"{what}: unknown device {target.device!r}"
                f"{suggest(target.device, self.line.devices)} (line {self.line.name} has {known})",
            )
        return device

    def check_call(self, call: Call, what: str, scope: Set[str], *, rule: bool = False) -> None:
        for arg in call.args.values():
            if isinstance(arg.value, Expr):
                self.check_names(arg.value, f"{what}: argument {arg.name}", scope, rule=rule)
        device = self.device(call.target, what)
        if device is None:
            return
        cls = device.driver_class()
        commands = driver_commands(cls)
        method = commands.get(call.target.member)
        if method is None:
            hint = suggest(call.target.member, commands)
            listing = "" if hint else f" (it has: {', '.join(sorted(commands))})"
            self.problem(
                call.target.member_where,
                f"{what}: device {device.name} ({device.driver} driver) has no command "
                f"{call.target.member!r}{hint}{listing}",
            )
            return
        parameters = [p for p in inspect.signature(method).parameters.values() if p.name != "self"]
        any_name = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        named = {
            p.name: p
            for p in parameters
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        }
        for arg in call.args.values():
            if arg.name not in named and not any_name:
                expected = ", ".join(named) or "none"
                self.problem(
                    arg.key_where,
                    f"{what}: {call.target} has no argument {arg.name!r}"
                    f"{suggest(arg.name, named)} (expected: {expected})",
                )
        missing = [
            p.name
            for p in named.values()
            if p.default is inspect.Parameter.empty and p.name not in call.args
        ]
        if missing:
            self.problem(
                call.target.span.where,
                f"{what}: {call.target} needs argument{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)}",
            )
        hints = _type_hints(method)
        limits: Mapping[str, str] = cls.argument_limits.get(call.target.member, {})
        for arg in call.args.values():
            literal = self.literal_of(arg.value)
            if literal is None:
                continue
            value, source = literal
            annotation = hints.get(arg.name)
            if annotation is not None and not _accepts(annotation, value):
                self.problem(
                    arg.where,
                    f"{what}: argument {arg.name}: expected {_describe(annotation)}, "
                    f"got {value!r}{source}",
                )
                continue
            signal = limits.get(arg.name)
            spec = device.profile.signals.get(signal) if signal else None
            if spec is not None:
                why = _outside(spec, value, device.profile)
                if why is not None:
                    self.problem(
                        arg.where, f"{what}: argument {arg.name}: {why}{source} (signal {signal})"
                    )

    def check_set(self, step: SetStep, what: str, earlier: Set[str]) -> None:
        if isinstance(step.value.value, Expr):
            self.check_names(step.value.value, f"{what}: value", earlier)
        device = self.device(step.target, what)
        if device is None:
            return
        profile = device.profile
        spec = profile.signals.get(step.target.member)
        if spec is None:
            self.problem(
                step.target.member_where,
                f"{what}: device {device.name} has no signal {step.target.member!r}"
                f"{suggest(step.target.member, profile.signals)} in profile {profile.name}",
            )
            return
        if not spec.writable:
            writable = ", ".join(sorted(n for n, s in profile.signals.items() if s.writable))
            self.problem(
                step.target.member_where,
                f"{what}: signal {spec.name} of {device.name} is not writable in profile "
                f"{profile.name} (writable: {writable or 'none'})",
            )
            return
        literal = self.literal_of(step.value.value)
        if literal is None:
            return
        value, source = literal
        try:
            spec.encode(value)
        except OutOfRangeError as exc:
            self.problem(step.value.where, f"{what}: {exc}{source} (profile {profile.name})")
            return
        why = _outside(spec, value, profile)
        if why is not None:
            self.problem(step.value.where, f"{what}: {why}{source}")

    def literal_of(self, value: Literal | Expr) -> tuple[Literal, str] | None:
        """A literal, or a bare parameter's value for this batch, with where it came from."""
        if not isinstance(value, Expr):
            return value, ""
        name = value.text.strip()
        param = self.procedure.parameters.get(name)
        if param is None or param.type is ParameterType.DURATION:
            return None
        current = self.values.get(name, param.default)
        if current is None:
            return None
        return current, f" (parameter {name})"

    # -- names in expressions -----------------------------------------------------------------

    def check_names(self, expr: Expr, what: str, scope: Set[str], *, rule: bool = False) -> None:
        for name in sorted(expr.names):
            why = self.resolve(name, scope, rule=rule)
            if why is not None:
                self.problem(expr.span.at(_offset_of(expr.text, name)), f"{what}: {why}")

    def resolve(self, name: str, scope: Set[str], *, rule: bool) -> str | None:
        """Why ``name`` names nothing here, or None when it is fine."""
        assert self.line is not None
        devices = self.line.devices
        parameters = self.procedure.parameters
        head, _, rest = name.partition(".")
        if not rest:
            if name in parameters or (name in self.skipped and name not in self.step_ids):
                return None
            if name in devices:
                return f"{name!r} is a device: name one of its signals, as {name}.<signal>"
            if name in self.step_ids or name in self.skipped:
                return f"{name!r} is a step: name a field of its result, as {name}.value"
            known = ", ".join(sorted(parameters)) or "none"
            return (
                f"unknown name {name!r}{suggest(name, parameters)} "
                f"(not a parameter; parameters: {known})"
            )
        if head in devices:
            profile = devices[head].profile
            if "." in rest:
                return f"{name!r}: a device signal is named device.signal"
            if rest not in profile.signals:
                return (
                    f"device {head} has no signal {rest!r}{suggest(rest, profile.signals)} "
                    f"in profile {profile.name}"
                )
            return None
        if head in scope or head in self.skipped:
            return None
        if head in self.step_ids:
            if rule:
                return (
                    f"{name!r}: a rule runs beside its unit procedure's steps, so it can only "
                    "name steps of earlier unit procedures"
                )
            return (
                f"{name!r}: step {head} comes later (line {self.step_ids[head].line}); "
                "only earlier steps can be named"
            )
        if head in parameters:
            return f"parameter {head} has no fields: write {head}"
        return (
            f"unknown name {name!r}: {head!r} is neither a device of line "
            f"{self.line.name}{suggest(head, [*devices, *self.step_ids])} nor an earlier step"
        )


def _name_where(interlock: InterlockSpec) -> Where:
    return interlock.name_where or interlock.where


def _offset_of(text: str, name: str) -> int:
    """Where ``name`` first appears in ``text`` as a whole name (0 if it cannot be found)."""
    parts = [re.escape(p) for p in name.split(".")]
    pattern = r"(?<![\w.])" + r"\s*\.\s*".join(parts) + r"(?![\w])"
    match = re.search(pattern, text)
    return match.start() if match else 0


def _outside(spec: SignalSpec, value: Literal, profile: Profile) -> str | None:
    """``"name: v unit is outside the limits [lo, hi] unit of profile p"`` or None."""
    if spec.limits is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    low, high = spec.limits
    if low <= value <= high:
        return None
    unit = f" {spec.unit}" if spec.unit else ""
    return (
        f"{spec.name}: {value:g}{unit} is outside the limits [{low:g}, {high:g}]{unit} "
        f"of profile {profile.name}"
    )


def _type_hints(method: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(method)
    except (NameError, TypeError, AttributeError):
        return {}  # annotations that cannot be resolved: the argument types go unchecked


def _union_members(annotation: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return typing.get_args(annotation)
    return None


def _accepts(annotation: Any, value: Literal) -> bool:
    """Whether a literal fits a parameter annotation (True when it cannot be judged)."""
    members = _union_members(annotation)
    if members is not None:
        return any(_accepts(m, value) for m in members)
    if annotation is type(None):
        return False
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return not isinstance(value, bool) and any(value == m.value for m in annotation)
    return True


def _describe(annotation: Any) -> str:
    members = _union_members(annotation)
    if members is not None:
        return " or ".join(_describe(m) for m in members if m is not type(None))
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    if annotation in names:
        return names[annotation]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in annotation)
    return str(getattr(annotation, "__name__", annotation))
