"""The procedure language: what a procedure file says, as frozen dataclasses.

A procedure is ISA-88 shaped: Procedure > unit procedures > steps, with rules
that run beside the steps of their unit procedure. It is written for a line
(``config/lines/<name>.yaml``) and names the line's devices; the loader
(:mod:`flexctl.procedure.loader`) turns YAML into this model and says
file:line:column for anything malformed; the validator
(:mod:`flexctl.procedure.validate`) checks the model against a line before
anything runs.

Example::

    procedure: car-t
    version: "1.0"
    description: Autologous CAR-T, thaw to cryopreservation
    line: sim                  # the line it is written for (default of validate and run)
    parameters:
      apheresis_volume: {type: float, unit: mL, default: 100, limits: [20, 300]}
      target_dose:      {type: float, unit: cells, default: 8.0e9, limits: [1.0e8, 2.0e10]}
      expansion_limit:  {type: duration, default: "14 d", limits: ["7 d", "14 d"]}
      vector_lot:       {type: text, pattern: "^[A-Z0-9-]+$"}   # no default: set per batch
    interlocks:                # armed for the whole batch
      - {name: bioreactor_alarms, alarm: bioreactor, codes: [DO_CRITICAL, OVERFILL]}
    unit_procedures:
      - name: thaw
        interlocks:            # armed while this unit procedure runs
          - {name: thaw_alarms, alarm: thaw, codes: [OVERSHOOT, NO_END_POINT]}
          - {name: plate_temperature, band: thaw.plate_temperature, high: 40, delay: 2 min}
        steps:
          - id: load_bag
            command: thaw.twin_load_bag
            args: {volume_ml: "=apheresis_volume", start_temperature_c: -150}
          - {id: start_thaw, command: thaw.start, args: {program: standard}}
          - id: thawed
            wait_until: "thaw.thaw_complete"
            timeout: 30 min
            poll: 30 s
            on_timeout: hold
          - id: bag_id
            prompt: Scan the apheresis bag barcode (chain of identity)
            entry: {type: text, pattern: "^[A-Z0-9-]{6,}$"}
            role: operator
            meaning: performed
          - {id: settle, wait: 5 min}
          - {id: thaw_curve, record: thaw.sample_temperature, unit: degC}
          - id: sample_volume
            prompt: Take the sample; enter the volume taken
            entry: {type: float, unit: mL, limits: [0.5, 5], suggest: "=apheresis_volume / 100"}
            role: operator
          - {id: sp, set: bioreactor.temperature_sp, value: 37}
        rules:
          - id: perfusion
            every: 12 h
            when: "bioreactor.sample_vcd > 0"
            command: bioreactor.perfuse
            args: {rate_ml_per_day: "=0 if bioreactor.sample_vcd < 2e6 else 500"}

Top-level keys: ``procedure`` (its name) and ``version`` (text: quote it, so
``"1.0"`` is not read as a number), ``unit_procedures`` (a non-empty list),
and optionally ``description``, ``line`` (a shipped line name, or a path
relative to the procedure file), ``parameters`` and ``interlocks``.

**Parameters** are set per batch (``flexctl validate --param name=value``).
Each has a ``type``: ``float``, ``int``, ``bool``, ``text`` or ``duration``;
optionally a ``unit``, a ``description``, a ``default`` (without one, every
batch must set it), ``limits: [low, high]`` (numbers for float and int,
durations for duration) and, for text, a ``pattern`` (a regular expression the
whole value must match). In expressions a duration parameter is its number of
seconds.

**Unit procedures** have a ``name``, optionally a ``description``, a
non-empty list of ``steps`` and optionally ``rules`` and ``interlocks``.

**Steps.** Every step has an ``id`` (letters, digits and ``_``), unique in the
procedure (ids of steps and rules and the names of interlocks share one
namespace and may not be a device or parameter name), optionally a
``description``, and exactly one of these kind keys:

- ``command: device.method`` with ``args`` (a mapping of argument name to
  value): calls a public async method of the device's driver, in device terms
  (``bioreactor.set_temperature``, ``thaw.start`` ...).
- ``wait_until: <condition>``: polls the condition every ``poll`` (default
  ``1 min``) until it holds, at most ``timeout`` (required); ``on_timeout``
  says what then: ``hold`` (default: the batch holds and a person decides),
  ``abort``, or ``continue`` (goes on and records a deviation).
- ``wait: <duration>``: waits that long in process time.
- ``prompt: <text>``: asks a person, who signs with an e-signature:
  ``role`` (``operator``, ``supervisor`` or ``qa``, required) and
  ``meaning`` (``performed`` (default), ``verified`` or ``approved``).
  Without ``entry`` it is a confirmation; with ``entry: {type, pattern,
  limits, unit, suggest}`` (type ``text``, ``float`` or ``int``) the person
  enters a value (a barcode for the chain of identity, a count ...), checked
  against the pattern (text) or limits (numbers). ``suggest`` is the value
  the batch expects, written like a command argument (a literal, or an
  ``=`` expression over parameters, earlier step results and device signals,
  evaluated when the prompt is asked): a console shows it and the simulation
  user enters it; a person may still enter another value that fits the entry.
  A literal suggestion must itself fit the entry.
- ``record: <expression>``: writes a measurement to the batch record, with
  an optional ``unit``.
- ``set: device.signal`` with ``value``: writes a writable signal of the
  device's profile, within the profile's limits.

**Rules** run beside the steps of their unit procedure while it runs: an
``id``, ``every`` (a duration), an optional ``when`` condition, and a command
with the keys of a command step (``command``, ``args``).

**Interlocks** hold the batch by themselves, without a step asking: a person
must restart it (after finding the cause). Each has a ``name`` (the rules of
a step id: it shares their namespace and may not be a device or parameter
name) and one of two kinds:

- ``band: device.signal`` with ``low`` and/or ``high`` (numbers; an absent
  one is open) and an optional ``delay`` (a duration, default none): the
  batch holds once the signal has been outside ``[low, high]`` for longer
  than the delay (without one, at the first reading outside). The signal is
  a number of the device's profile; a reading that is no number is outside.
  The delay lets a known, short excursion pass (the dip of a cold addition).
- ``alarm: device`` with optional ``codes`` (a list of the device's alarm
  codes, as the device writes them): the batch holds when the device raises
  any of them, or any alarm at all without ``codes``. The device's profile
  must have an ``alarm`` signal.

Written at the top level they are armed for the whole batch; written in a
unit procedure, while that unit procedure runs. Arm a band only where the
process keeps the signal in it from the start (an empty bioreactor bag reads
DO 0): a restart is refused while an armed band is outside, whatever its delay.

**Values** (command arguments, ``set`` values, ``suggest``): a YAML number or
true/false is a literal; a string starting with ``=`` is an expression (the
rest of the string); any other string is literal text.

**Expressions** (conditions, ``record``, ``=`` values) are evaluated safely
(never ``eval``); see :mod:`flexctl.procedure.expression`. A name in one is a
parameter (``target_dose``), a signal of a line device (``bioreactor.sample_vcd``)
or a field of an earlier step's result (``isolation.output_cells``; an entry
prompt's value is ``bag_id.value``). A rule may use the steps of earlier unit
procedures only, since it runs beside the steps of its own.

**Alarms** (``alarms:``, at the top level) are ISA-18.2 limit alarms on a
numeric device signal, watched for the whole batch (see
:mod:`flexctl.supervisor.alarm_defs` for the keys: ``name``, ``signal``,
``kind`` high or low, ``limit``, ``deadband``, ``on_delay``, ``off_delay``,
``priority``, ``interlock``, ``message``). Each transition is journaled;
people acknowledge and shelve them with a reason; one with ``interlock: true``
holds the batch when it activates, and a restart waits until it has cleared.

**Durations** are a number and a unit, and may add up: ``30 s``, ``5 min``,
``12 h``, ``1 d 12 h`` (see :mod:`flexctl.procedure.duration`). A bare number
is refused: the unit is part of the meaning.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, TypeAlias

from flexctl.errors import ConfigurationError, Where
from flexctl.procedure.expression import Expression

if TYPE_CHECKING:
    from flexctl.supervisor.alarm_defs import AlarmDefinition

Literal: TypeAlias = bool | int | float | str
"""A literal value in a procedure: number, true/false or text."""


class ProcedureError(ConfigurationError):
    """A procedure (or its batch parameters) has problems; ``problems`` lists them all."""

    def __init__(self, problems: Sequence[ConfigurationError]) -> None:
        if not problems:
            raise ValueError("ProcedureError needs at least one problem")
        self.problems = tuple(problems)
        first = self.problems[0]
        more = len(self.problems) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        super().__init__(first.where, first.message + suffix)


@dataclass(frozen=True)
class TextSpan:
    """Where a scalar's text is in the file, so a message can point into it.

    ``columns[i]`` is the 1-based column of the text's i-th character (it knows
    the opening quote and escapes); ``None`` when the text is not on one line
    of the file as written (block scalars, folded strings), and then every
    offset points at the value itself.
    """

    where: Where
    columns: tuple[int, ...] | None = None
    end: int = 0

    def at(self, offset: int) -> Where:
        """The place of the character at ``offset`` (0-based) of the text."""
        if self.columns is None or offset < 0:
            return self.where
        if offset < len(self.columns):
            return Where(self.where.file, self.where.line, self.columns[offset])
        return Where(self.where.file, self.where.line, self.end)

    def skip(self, count: int) -> TextSpan:
        """The span of the text without its first ``count`` characters."""
        if self.columns is None:
            return self
        return TextSpan(self.where, self.columns[count:], self.end)


@dataclass(frozen=True)
class Expr:
    """A compiled expression with the place of its text."""

    text: str
    compiled: Expression = field(repr=False, compare=False)
    span: TextSpan

    @property
    def names(self) -> frozenset[str]:
        return self.compiled.names

    @property
    def where(self) -> Where:
        return self.span.at(0)


@dataclass(frozen=True)
class Duration:
    """A duration as written and in seconds."""

    text: str
    seconds: float
    span: TextSpan

    @property
    def where(self) -> Where:
        return self.span.where


Value: TypeAlias = Literal | Expr
"""A command argument or ``set`` value: a literal or an ``=`` expression."""


@dataclass(frozen=True)
class Argument:
    """A named value (a command argument, or the value of a ``set`` step)."""

    name: str
    value: Value
    where: Where
    key_where: Where


@dataclass(frozen=True)
class Target:
    """A ``device.member`` reference: a command's method or a ``set`` step's signal."""

    device: str
    member: str
    span: TextSpan

    @property
    def device_where(self) -> Where:
        return self.span.at(0)

    @property
    def member_where(self) -> Where:
        return self.span.at(len(self.device) + 1)

    def __str__(self) -> str:
        return f"{self.device}.{self.member}"


@dataclass(frozen=True)
class Call:
    """A driver method called with named arguments."""

    target: Target
    args: Mapping[str, Argument]
    where: Where


class OnTimeout(StrEnum):
    """What a ``wait_until`` does when its timeout passes."""

    HOLD = "hold"
    ABORT = "abort"
    CONTINUE = "continue"


class Role(StrEnum):
    """Who may answer a prompt."""

    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    QA = "qa"


class Meaning(StrEnum):
    """What an e-signature on a prompt means (21 CFR 11.50)."""

    PERFORMED = "performed"
    VERIFIED = "verified"
    APPROVED = "approved"


class EntryType(StrEnum):
    TEXT = "text"
    FLOAT = "float"
    INT = "int"


class ParameterType(StrEnum):
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    TEXT = "text"
    DURATION = "duration"


@dataclass(frozen=True)
class Entry:
    """What a person enters at a prompt.

    ``suggest`` is the value the batch expects (a literal or an expression over
    parameters, step results and device signals, evaluated when the prompt is
    asked): a console shows it, and the simulation user enters it. A person may
    still enter another value within the entry's pattern or limits.
    """

    type: EntryType
    where: Where
    pattern: str | None = None
    limits: tuple[float, float] | None = None
    unit: str | None = None
    suggest: Argument | None = None


@dataclass(frozen=True, kw_only=True)
class Step:
    """What every step has; the kinds below add their own fields."""

    kind: ClassVar[str] = ""
    id: str
    unit_procedure: str
    where: Where
    id_where: Where
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class CommandStep(Step):
    kind: ClassVar[str] = "command"
    call: Call


@dataclass(frozen=True, kw_only=True)
class WaitUntilStep(Step):
    kind: ClassVar[str] = "wait_until"
    condition: Expr
    timeout: Duration
    poll: Duration
    on_timeout: OnTimeout = OnTimeout.HOLD


@dataclass(frozen=True, kw_only=True)
class WaitStep(Step):
    kind: ClassVar[str] = "wait"
    duration: Duration


@dataclass(frozen=True, kw_only=True)
class PromptStep(Step):
    kind: ClassVar[str] = "prompt"
    text: str
    role: Role
    meaning: Meaning = Meaning.PERFORMED
    entry: Entry | None = None


@dataclass(frozen=True, kw_only=True)
class RecordStep(Step):
    kind: ClassVar[str] = "record"
    expression: Expr
    unit: str | None = None


@dataclass(frozen=True, kw_only=True)
class SetStep(Step):
    kind: ClassVar[str] = "set"
    target: Target
    value: Argument


STEP_KINDS: tuple[type[Step], ...] = (
    CommandStep,
    WaitUntilStep,
    WaitStep,
    PromptStep,
    RecordStep,
    SetStep,
)


@dataclass(frozen=True)
class Rule:
    """A command that runs every ``every`` (when ``when`` holds) beside a unit procedure."""

    id: str
    unit_procedure: str
    every: Duration
    call: Call
    where: Where
    id_where: Where
    when: Expr | None = None
    description: str = ""


@dataclass(frozen=True)
class BandInterlock:
    """``device.signal`` must stay within [low, high] while armed (either bound may be open).

    Out of the band for longer than ``delay`` (process seconds), the batch holds.
    ``where`` is the interlock's mapping, ``name_where`` its name.
    """

    name: str
    target: Target
    low: float | None
    high: float | None
    delay: Duration | None
    where: Where
    name_where: Where | None = None


@dataclass(frozen=True)
class AlarmInterlock:
    """While armed, any of the device's alarms ``codes`` (any alarm at all if empty) holds."""

    name: str
    device: str
    codes: tuple[str, ...]
    where: Where
    device_where: Where
    name_where: Where | None = None


InterlockSpec: TypeAlias = BandInterlock | AlarmInterlock
"""An interlock as written: armed for the whole batch (the procedure's ``interlocks:``)
or while its unit procedure runs (the unit procedure's)."""


@dataclass(frozen=True)
class UnitProcedure:
    name: str
    steps: tuple[Step, ...]
    rules: tuple[Rule, ...]
    where: Where
    description: str = ""
    interlocks: tuple[InterlockSpec, ...] = ()


@dataclass(frozen=True)
class Parameter:
    """A batch parameter; a duration's default and limits are in seconds."""

    name: str
    type: ParameterType
    where: Where
    unit: str | None = None
    default: Literal | None = None
    limits: tuple[float, float] | None = None
    pattern: str | None = None
    description: str = ""

    @property
    def required(self) -> bool:
        """Without a default, every batch must set it."""
        return self.default is None


@dataclass(frozen=True)
class Procedure:
    """A loaded procedure (see the module docstring for the language)."""

    name: str
    version: str
    unit_procedures: tuple[UnitProcedure, ...]
    parameters: Mapping[str, Parameter]
    where: Where
    description: str = ""
    line: str | None = None
    line_where: Where | None = None
    interlocks: tuple[InterlockSpec, ...] = ()
    #: ISA-18.2 limit alarms watched for the whole batch (see flexctl.supervisor.alarm_defs)
    alarms: tuple[AlarmDefinition, ...] = ()

    @property
    def file(self) -> str:
        return self.where.file

    def steps(self) -> Iterator[Step]:
        """Every step, in the order they run."""
        for unit in self.unit_procedures:
            yield from unit.steps

    def rules(self) -> Iterator[Rule]:
        for unit in self.unit_procedures:
            yield from unit.rules

    def step(self, step_id: str) -> Step:
        for step in self.steps():
            if step.id == step_id:
                return step
        raise KeyError(step_id)
