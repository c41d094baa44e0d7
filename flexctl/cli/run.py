"""``flexctl run``: run one batch of a procedure from start to end, headless.

First the procedure is checked against the line, as ``flexctl validate`` does;
any problem is printed as ``file:line:column: message`` and nothing starts
(exit 2). Then the line comes up: on the simulated line every twin starts in
this process behind its real protocol, and a virtual clock drives process
time (``--speed N``: wall time x N instead). The batch runs to its end; a line
per step start and per batch state change goes to stdout (process day and
time, unit procedure, step, key values), logs go to stderr, and a summary ends
the output.

Prompts are answered and signed by the simulation user only under
``--auto-sign``, which a line of twins implies and a line with any hardware
device refuses. Under auto-sign a parameter without a default gets a made-up
value, and a prompt whose entry the procedure compares with a parameter or an
earlier entry is answered with that value (the simulated bag carries the
batch's chain-of-identity label; both people read the same vial).

An interlock monitor checks the devices the running unit procedure uses each
``--monitor-period`` of process time (default 1 min), and the idle others every
15 periods; a lost device, a device alarm or a value out of its band (the
interlocks the procedure arms) holds the batch. Headless, nobody can
restart a held batch: it is stopped (devices stay in their hold state) and
the run fails. Ctrl-C (or SIGTERM) aborts the batch safely, every device to
its abort state; a second one stops at once.

Exit status: 0 the batch is Complete; 1 it ended Stopped or Aborted, or a
device failed; 2 bad input; 130 interrupted (143 for SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import math
import re
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    from flexctl.cli.progress import Output, Summary
    from flexctl.clock import Clock
    from flexctl.errors import ConfigurationError
    from flexctl.line import Line
    from flexctl.line_runtime import DeviceDescription, LineRuntime, ServedTwins
    from flexctl.procedure.model import Literal, Parameter, Procedure
    from flexctl.record.batch_record import BatchRecord
    from flexctl.record.historian import Historian
    from flexctl.record.journal import Journal, JournalEntry
    from flexctl.record.sqlite_store import SqliteStore
    from flexctl.record.store import BatchInfo
    from flexctl.supervisor.batch_state import BatchState
    from flexctl.supervisor.executor import Batch, Executor
    from flexctl.supervisor.prompts import Prompter
    from flexctl.supervisor.resumption import Resumption

# The exit codes of flexctl.cli.main (imported from there would be circular).
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_BAD_INPUT: Final = 2
SIGNAL_EXITS: Final = {signal.SIGINT: 130, signal.SIGTERM: 143}
DEFAULT_MONITOR = "1 min"
#: The record store of a run, in the working directory.
DEFAULT_DB = "flexctl.db"
#: Where ``--serve`` listens when no endpoint is given.
DEFAULT_SERVE = "opc.tcp://127.0.0.1:4840/flexctl"
#: Wall seconds a served run goes on serving after the batch ended (consoles read the end).
SERVE_LINGER_S = 3.0
TWIN_CHOICES: Final = ("in-process", "external")
#: The ``record`` of the journal entries saying where each device is (first in the journal).
ORIGIN_RECORD: Final = "device origin"

#: ``a.value == b`` (or ``a == b.value``) in a wait_until: an entry checked against something.
_EQUALS = re.compile(r"^\s*([A-Za-z_]\w*(?:\.value)?)\s*==\s*([A-Za-z_]\w*(?:\.value)?)\s*$")


def _factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a factor > 0, got {text!r}")
    return value


def _period(text: str) -> float:
    from flexctl.procedure.duration import DurationError, parse_duration

    try:
        seconds = parse_duration(text)
    except DurationError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (write e.g. '1 min')") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected a duration > 0, got {text!r}")
    return seconds


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "run",
        help="run one batch of a procedure on a line, headless, to its end",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_batch_arguments(
        parser, speed_help="(default: a virtual clock, as fast as the twins answer)"
    )
    parser.add_argument(
        "--twins",
        choices=TWIN_CHOICES,
        default=None,
        help="start the line's twins here (in-process, the default) or use the ones "
        "'flexctl sim serve' runs (external)",
    )
    parser.add_argument(
        "--endpoints",
        type=Path,
        default=None,
        help="the endpoints file of 'flexctl sim serve' (implies --twins external)",
    )
    parser.add_argument(
        "--auto-sign",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the simulation user answers and signs every prompt (implied on a line of twins; "
        "refused on a line with hardware)",
    )
    parser.add_argument(
        "--serve",
        nargs="?",
        const=DEFAULT_SERVE,
        default=None,
        metavar="ENDPOINT",
        help=f"also serve the batch over OPC UA for consoles (default endpoint {DEFAULT_SERVE}); "
        "a held batch then waits for a person instead of being stopped",
    )
    parser.add_argument(
        "--pki",
        type=Path,
        default=None,
        help="with --serve: the server's certificate folder (default: 'pki' beside the store)",
    )
    parser.set_defaults(handler=run)


def add_batch_arguments(
    parser: argparse.ArgumentParser, *, speed_help: str, speed_default: float | None = None
) -> None:
    """The arguments of a batch that ``flexctl run`` and ``flexctl serve`` share."""
    parser.add_argument("procedure", type=Path, help="the procedure file (YAML)")
    parser.add_argument(
        "--line",
        help="a shipped line name or a path to a line file (default: the procedure's 'line:', "
        "else sim)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a batch parameter (repeatable)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="the line seed of the twins (default 0)"
    )
    parser.add_argument(
        "--speed",
        type=_factor,
        default=speed_default,
        help=f"process time = wall time x this factor {speed_help}",
    )
    parser.add_argument("--batch-id", default=None, help="the batch id (default: name-UTC time)")
    parser.add_argument(
        "--db",
        type=Path,
        default=Path(DEFAULT_DB),
        help=f"the record store (SQLite) the batch is written to, with the users who sign "
        f"(default {DEFAULT_DB} here; created if missing)",
    )
    parser.add_argument(
        "--monitor-period",
        type=_period,
        default=_period(DEFAULT_MONITOR),
        metavar="DURATION",
        help=f"process time between two checks of a device in use by the interlock monitor "
        f"(default {DEFAULT_MONITOR}; idle devices every 15 periods)",
    )
    parser.add_argument(
        "--sample-period",
        type=_period,
        default=None,
        metavar="DURATION",
        help="process time between two historian samples of a device (default: each driver's "
        "own, 1 min, the bioreactor's 5 min; never faster than the device's checks)",
    )


# -- the plan: everything checked before anything starts ---------------------------------


@dataclass
class Plan:
    """A checked run: what to run, where, on which clock, who signs."""

    procedure: Procedure
    line: Line
    values: dict[str, Literal]
    batch_id: str
    seed: int
    clock: str  # virtual | scaled | real
    speed: float
    twins: str
    endpoints: Path | None
    auto_sign: bool
    auto_sign_why: str
    monitor_period: float
    db: Path = Path(DEFAULT_DB)
    sample_period: float | None = None
    #: Where to serve the batch over OPC UA (None: not served), and the server's certificates.
    serve: str | None = None
    pki: Path | None = None
    #: A batch that goes on from its journal (flexctl resume), instead of a new one.
    resume: Resumption | None = None
    #: Its process time and the UTC time process time 0 stood for, to go on from.
    clock_start: float = 0.0
    epoch: datetime | None = None
    simulated: dict[str, Literal] = field(default_factory=dict)
    answers: dict[str, Literal] = field(default_factory=dict)
    answer_notes: list[str] = field(default_factory=list)
    #: External twins: their endpoints file, read and checked once while planning.
    served: ServedTwins | None = None

    @property
    def hardware(self) -> list[str]:
        return _hardware(self.line)

    @property
    def origins(self) -> dict[str, str]:
        """Where each device of the run is: in-process twin, external twin or hardware."""
        origins = {}
        for name, device in self.line.devices.items():
            if not device.twin:
                origins[name] = "hardware"
            elif self.twins == "external":
                origins[name] = "external twin"
            else:
                origins[name] = "in-process twin"
        return origins


@dataclass
class RunOutcome:
    """What a run ended with (the exit code, and for tests the record itself)."""

    exit_code: int
    state: BatchState | None = None
    batch_id: str = ""
    entries: list[JournalEntry] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: Summary | None = None
    plan: Plan | None = None
    interrupted_by: str | None = None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment
        return "flexctl-user"


def _plan(
    args: argparse.Namespace, *, people_answer: bool = False
) -> Plan | list[ConfigurationError]:
    """Check everything a run needs; every problem, or the plan.

    ``people_answer``: prompts are answered by people at a console (``flexctl serve``),
    so a prompt step is no problem without auto-sign.
    """
    from flexctl.errors import ConfigurationError, Where
    from flexctl.procedure.validate import check_procedure, validate_procedure

    check = check_procedure(args.procedure, line=args.line, params=args.param)
    if check.problems:
        return list(check.problems)
    procedure, line = check.procedure, check.line
    assert procedure is not None and line is not None  # no problems: both were loaded
    problems: list[ConfigurationError] = []
    timing = _timing(args, line, problems)
    auto_sign, why = _who_signs(args, procedure, line, problems, people_answer=people_answer)
    simulated = _missing_parameters(procedure, check.values, auto_sign, problems)
    values = {**check.values, **simulated}
    if simulated:  # checked again with the made-up values in place
        problems += validate_procedure(procedure, line, values=values)
    batch_id = args.batch_id
    if batch_id is None:
        batch_id = f"{procedure.name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    if not batch_id.strip():
        problems.append(ConfigurationError(Where("--batch-id"), "a batch needs an id"))
    if problems:
        return problems
    answers, notes = _consistent_answers(procedure, values) if auto_sign else ({}, [])
    return Plan(
        procedure=procedure,
        line=line,
        values=values,
        batch_id=batch_id,
        seed=timing.seed,
        clock=timing.clock,
        speed=timing.speed,
        twins=timing.twins,
        endpoints=timing.endpoints,
        served=timing.served,
        auto_sign=auto_sign,
        auto_sign_why=why,
        monitor_period=args.monitor_period,
        db=args.db,
        sample_period=getattr(args, "sample_period", None),
        serve=getattr(args, "serve", None),
        pki=getattr(args, "pki", None),
        simulated=simulated,
        answers=answers,
        answer_notes=notes,
    )


@dataclass(frozen=True)
class _Timing:
    twins: str
    endpoints: Path | None
    clock: str
    speed: float
    seed: int
    served: ServedTwins | None = None


def _hardware(line: Line) -> list[str]:
    return [name for name, device in line.devices.items() if not device.twin]


def _timing(args: argparse.Namespace, line: Line, problems: list[ConfigurationError]) -> _Timing:
    """Where the twins run and which clock drives process time."""
    from flexctl.errors import ConfigurationError, Where
    from flexctl.line_runtime import (
        DEFAULT_ENDPOINTS_FILE,
        check_external_twins,
        load_served_twins,
    )

    twins = args.twins or ("external" if args.endpoints is not None else "in-process")
    if args.endpoints is not None and twins != "external":
        problems.append(ConfigurationError(Where("--endpoints"), "is for --twins external only"))
    endpoints: Path | None = None
    served: ServedTwins | None = None
    speed = args.speed if args.speed is not None else 1.0
    seed = args.seed if args.seed is not None else 0
    clock = "virtual" if args.speed is None else "scaled"
    if twins == "external":
        # Twins in another process run on their own scaled clock: this one must match it.
        endpoints = args.endpoints or DEFAULT_ENDPOINTS_FILE
        clock = "scaled"
        try:
            # Read once: what is checked here is what the line connects to.
            served = load_served_twins(endpoints, line)
        except ConfigurationError as exc:
            problems.append(exc)
        else:
            untrusted = check_external_twins(served)
            if untrusted:
                # Twins elsewhere could be real equipment; the simulation user never signs
                # there, and a line file's `twin: true` alone does not make a device a twin.
                refused = (
                    "external twins refused" if args.auto_sign is False else ("auto-sign refused")
                )
                problems.append(
                    ConfigurationError(
                        Where(str(endpoints)),
                        f"{refused}: the external twins are not verifiably on this machine "
                        f"(only loopback TCP and existing pseudo-terminals of a running "
                        f"'flexctl sim serve'): {'; '.join(untrusted)}",
                    )
                )
                served = None
            else:
                doc = served.document
                speed = float(_served(doc, "speed", args.speed, endpoints, problems))
                seed = int(_served(doc, "seed", args.seed, endpoints, problems))
    hardware = _hardware(line)
    if hardware:
        clock = "real"
        if args.speed not in (None, 1.0):
            problems.append(
                ConfigurationError(
                    Where("--speed"),
                    f"line {line.name} has hardware ({', '.join(hardware)}): "
                    "it runs in wall time only",
                )
            )
    return _Timing(twins, endpoints, clock, speed, seed, served)


def _who_signs(
    args: argparse.Namespace,
    procedure: Procedure,
    line: Line,
    problems: list[ConfigurationError],
    *,
    people_answer: bool = False,
) -> tuple[bool, str]:
    """Whether the simulation user answers the prompts, and why."""
    from flexctl.errors import ConfigurationError, Where
    from flexctl.procedure.model import PromptStep

    hardware = _hardware(line)
    if args.auto_sign is True and hardware:
        problems.append(
            ConfigurationError(
                Where("--auto-sign"),
                f"refused: line {line.name} has hardware ({', '.join(hardware)}); the "
                "simulation user never signs on a real line",
            )
        )
        return False, "refused"
    if args.auto_sign is not None:
        auto_sign, why = bool(args.auto_sign), "--auto-sign" if args.auto_sign else "off"
    else:
        auto_sign = not hardware
        why = f"implied: every device of line {line.name} is a twin" if auto_sign else "off"
    prompts = [s for s in procedure.steps() if isinstance(s, PromptStep)]
    if prompts and not auto_sign and not people_answer:
        problems.append(
            ConfigurationError(
                prompts[0].where,
                f"step {prompts[0].id} asks a person ({len(prompts)} prompt steps in all), and "
                "flexctl run has no operator console: only the simulation user (--auto-sign, "
                "on a line of twins) can answer",
            )
        )
    return auto_sign, why


def _missing_parameters(
    procedure: Procedure,
    given: Mapping[str, Literal],
    auto_sign: bool,
    problems: list[ConfigurationError],
) -> dict[str, Literal]:
    """Made-up values for parameters without a default (auto-sign only); else problems."""
    from flexctl.errors import ConfigurationError

    simulated: dict[str, Literal] = {}
    for param in procedure.parameters.values():
        if not param.required or param.name in given:
            continue
        if not auto_sign:
            problems.append(
                ConfigurationError(
                    param.where,
                    f"parameter {param.name} has no default: set it for this batch "
                    f"(--param {param.name}=...); only a run the simulation user signs "
                    "makes one up",
                )
            )
            continue
        try:
            simulated[param.name] = _simulated_value(param)
        except ConfigurationError as exc:
            problems.append(exc)
    return simulated


def _served(
    document: Mapping[str, Any],
    key: str,
    given: float | None,
    path: Path,
    problems: list[ConfigurationError],
) -> float:
    """The ``speed`` or ``seed`` the external twins run with; a given option must match."""
    from flexctl.errors import ConfigurationError, Where

    value = document.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(ConfigurationError(Where(str(path)), f"no {key} in the endpoints file"))
        return given if given is not None else 0
    if given is not None and given != value:
        problems.append(
            ConfigurationError(
                Where(f"--{key}"),
                f"{given:g}, but the external twins run with {key} {value:g} ({path})",
            )
        )
    return value


def _simulated_value(param: Parameter) -> Literal:
    """A deterministic value for a parameter without a default (simulated runs only)."""
    from flexctl.errors import ConfigurationError
    from flexctl.procedure.loader import check_parameter_value
    from flexctl.procedure.model import Entry, EntryType, ParameterType
    from flexctl.supervisor.prompts import default_answer

    if param.type is ParameterType.BOOL:
        return False
    kind = {ParameterType.TEXT: EntryType.TEXT, ParameterType.INT: EntryType.INT}
    entry = Entry(
        kind.get(param.type, EntryType.FLOAT),
        param.where,
        pattern=param.pattern,
        limits=param.limits,
    )
    try:
        value = default_answer(entry, param.name)
    except ValueError as exc:
        raise ConfigurationError(
            param.where, f"parameter {param.name}: cannot make up a value ({exc}); set it"
        ) from None
    why = check_parameter_value(param, value)
    if why is not None:
        raise ConfigurationError(
            param.where, f"parameter {param.name}: cannot make up a value ({why}); set it"
        )
    return value


def _consistent_answers(
    procedure: Procedure, values: Mapping[str, Literal]
) -> tuple[dict[str, Literal], list[str]]:
    """Answers that keep the simulated world consistent with the procedure's own checks.

    A ``wait_until`` of the form ``step.value == parameter`` (a scanned bag against the
    batch's chain-of-identity ID) or ``later.value == earlier.value`` (a second person
    reading the same vial) must hold for a real batch; the simulation user therefore
    enters the parameter's value, or the earlier entry, at that prompt.
    """
    from flexctl.procedure.model import PromptStep, WaitUntilStep
    from flexctl.supervisor.prompts import check_answer, default_answer

    order = {step.id: index for index, step in enumerate(procedure.steps())}
    prompts = {
        s.id: s for s in procedure.steps() if isinstance(s, PromptStep) and s.entry is not None
    }
    answers: dict[str, Literal] = {}
    notes: list[str] = []

    def entered(step_id: str) -> Literal | None:
        if step_id in answers:
            return answers[step_id]
        try:
            return default_answer(prompts[step_id].entry, step_id)
        except ValueError:
            return None

    for step in procedure.steps():
        if not isinstance(step, WaitUntilStep):
            continue
        match = _EQUALS.match(step.condition.text)
        if match is None:
            continue
        sides: list[tuple[str, str]] = []
        for side in match.groups():
            head, dot, rest = side.partition(".")
            if dot and rest == "value" and head in prompts and order[head] < order[step.id]:
                sides.append(("entry", head))
            elif not dot and side in values:
                sides.append(("parameter", side))
        if len(sides) != 2:
            continue
        kinds = sorted(sides)
        value: Literal | None
        if [k for k, _ in kinds] == ["entry", "parameter"]:
            target, source = kinds[0][1], kinds[1][1]
            value, said = values[source], f"parameter {source}"
        elif [k for k, _ in kinds] == ["entry", "entry"]:
            first, second = sorted((n for _, n in sides), key=order.__getitem__)
            target, value, said = second, entered(first), f"the entry at {first}"
        else:
            continue
        if value is None or check_answer(prompts[target].entry, value) is not None:
            continue
        answers[target] = value
        notes.append(f"{target} is answered with {said} ({value!r}), as {step.id} checks")
    return answers, notes


# -- running -----------------------------------------------------------------------------


class _Signals:
    """Ctrl-C and SIGTERM: the first aborts the batch safely, the next stops at once."""

    def __init__(self, task: asyncio.Task[Any], actor: str) -> None:
        self.task = task
        self.actor = actor
        self.executor: Executor | None = None
        self.received: signal.Signals | None = None
        self.count = 0
        self.hard = False
        self._loop = asyncio.get_running_loop()
        self._installed: list[signal.Signals] = []

    def install(self) -> None:
        for number in SIGNAL_EXITS:
            try:
                self._loop.add_signal_handler(number, self.on_signal, number)
            except (RuntimeError, ValueError, NotImplementedError):  # not the main thread
                continue
            self._installed.append(number)

    def remove(self) -> None:
        for number in self._installed:
            self._loop.remove_signal_handler(number)
        self._installed.clear()

    def on_signal(self, number: signal.Signals) -> None:
        from flexctl.supervisor.batch_state import FINAL, BatchCommand, BatchState

        name = signal.Signals(number).name
        executor = self.executor
        if executor is not None and executor.state in FINAL:
            print(
                f"flexctl run: {name}: batch {executor.batch.batch_id} has already ended "
                f"{executor.state.value}; closing the line",
                file=sys.stderr,
                flush=True,
            )
            return
        self.count += 1
        self.received = self.received or number
        if self.count == 1 and executor is not None:
            if BatchCommand.Abort in executor.machine.allowed():
                print(
                    f"flexctl run: {name}: aborting batch {executor.batch.batch_id} safely "
                    f"(every device to its abort state); {name} again stops at once",
                    file=sys.stderr,
                    flush=True,
                )
                executor.command(
                    BatchCommand.Abort, actor=self.actor, reason=f"{name} at the console"
                )
                return
            if executor.state is BatchState.Aborting:
                return  # already on its way to a safe end
        print(f"flexctl run: {name}: stopping at once", file=sys.stderr, flush=True)
        self.hard = True
        self.task.cancel()


#: Who stops a held batch of a headless run: the software, never the person who started it.
HEADLESS_ACTOR: Final = "system"


class _Headless:
    """Acts for the absent person: a held batch is stopped (nobody could restart it).

    The Stop is the software's decision, so it is journaled as ``system`` (ALCOA:
    attributable), not as the login of whoever started the run.
    """

    def __init__(self, actor: str = HEADLESS_ACTOR) -> None:
        self.actor = actor
        self.executor: Executor | None = None

    def __call__(self, entry: JournalEntry) -> None:
        from flexctl.record.journal import EntryKind

        if entry.kind is EntryKind.BATCH_STATE and entry.payload.get("new") == "Held":
            # Not from inside the state machine's own delivery: on the next loop turn.
            asyncio.get_running_loop().call_soon(self._stop_held)

    def _stop_held(self) -> None:
        from flexctl.supervisor.batch_state import BatchCommand, BatchState

        executor = self.executor
        if executor is None or executor.state is not BatchState.Held:
            return
        executor.command(
            BatchCommand.Stop,
            actor=self.actor,
            reason="headless run: held, and nobody is here to restart it; stopped "
            "automatically by flexctl run, not by a person (devices stay in their hold state)",
        )


def _make_clock(plan: Plan) -> Clock:
    from flexctl.clock import RealClock, ScaledClock, VirtualClock

    if plan.clock == "virtual":
        return VirtualClock(start=plan.clock_start, epoch=plan.epoch)
    if plan.clock == "scaled":
        return ScaledClock(plan.speed, epoch=plan.epoch, start=plan.clock_start)
    return RealClock(start=plan.clock_start)


def _header(plan: Plan, out: Output, actor: str) -> None:
    from flexctl.supervisor.prompts import SIM_USER

    p = plan.procedure
    clock = {
        "virtual": "virtual (discrete-event)",
        "scaled": f"scaled, wall time x {plan.speed:g}",
        "real": "real (wall time)",
    }[plan.clock]
    lines = [
        f"flexctl run: {p.name} {p.version}, batch {plan.batch_id}, started by {actor}",
        f"line {plan.line.name}: {len(plan.line.devices)} devices "
        f"({len(plan.line.devices) - len(plan.hardware)} twins {plan.twins}"
        + (f", hardware: {', '.join(plan.hardware)}" if plan.hardware else "")
        + f"), seed {plan.seed}; clock {clock}; interlock monitor every "
        f"{plan.monitor_period:g} s",
    ]
    origins = plan.origins
    lines.append(
        "device origins: " + ", ".join(f"{name} {origin}" for name, origin in origins.items())
    )
    if plan.served is not None:
        lines.append(
            f"external twins: {plan.served.path} (flexctl sim serve, pid {plan.served.pid}); "
            "loopback and pseudo-terminal endpoints only"
        )
    if plan.auto_sign:
        lines.append(
            f"auto-sign ({plan.auto_sign_why}): every prompt is answered and signed by the "
            f"simulation user {SIM_USER!r}, not a person"
        )
    for name, value in plan.simulated.items():
        lines.append(
            f"simulated parameter: {name} = {value!r} (no default; made up because the "
            "simulation user signs this run)"
        )
    lines += [f"simulation user: {note}" for note in plan.answer_notes]
    for text in lines:
        out.line(text)


def _open_store(plan: Plan) -> SqliteStore:
    """The record store, refusing a batch id it already holds (bad input: exit 2)."""
    from flexctl.errors import ConfigurationError, Where
    from flexctl.record.sqlite_store import SqliteStore
    from flexctl.record.store import RecordError

    try:
        store = SqliteStore(plan.db)
    except RecordError as exc:
        raise ConfigurationError(Where(str(plan.db)), str(exc)) from None
    if plan.resume is not None:
        return store  # flexctl resume found the batch there
    if any(b.batch_id == plan.batch_id for b in store.batches()):
        store.close()
        raise ConfigurationError(
            Where("--batch-id"),
            f"batch {plan.batch_id} is already in {plan.db}: give another --batch-id",
        )
    return store


def make_executor(
    plan: Plan,
    batch: Batch,
    runtime: LineRuntime,
    *,
    journal: Journal,
    historian: Historian,
    prompter: Prompter | None,
) -> Executor:
    """The batch's executor as ``flexctl run`` and ``flexctl serve`` both make it."""
    from flexctl.supervisor.executor import Executor

    return Executor(
        batch,
        runtime.drivers,
        clock=runtime.clock,
        journal=journal,
        prompter=prompter,
        monitor_period=plan.monitor_period,
        historian=historian,
        limit_alarms=plan.line.alarms,
        sample_period=plan.sample_period,
    )


async def _run_executor(
    plan: Plan,
    executor: Executor,
    runtime: LineRuntime,
    store: SqliteStore,
    *,
    out: Output,
    actor: str,
) -> None:
    """Run the batch; with ``--serve``, while serving it over OPC UA for consoles."""
    if plan.serve is None:
        await executor.run(actor=actor, resume=plan.resume)
        return
    from flexctl.northbound.server import SupervisorServer

    if not any(not user.disabled for user in store.users()):
        out.line("serving, but the store has no enabled user: nobody can log in (flexctl users)")
    pki = plan.pki if plan.pki is not None else plan.db.parent / "pki"
    async with SupervisorServer(
        runtime, executor, store, certificate_dir=pki, endpoint=plan.serve
    ) as server:
        out.line(f"serving: {server.endpoint}")
        await executor.run(actor=actor, resume=plan.resume)
        await server.linger(SERVE_LINGER_S)


def _finish_record(
    plan: Plan, journal: Journal, historian: Historian, store: SqliteStore, out: Output
) -> list[JournalEntry]:
    """The batch's entries; its report written; the historian flushed and the store closed."""
    try:
        entries = journal.entries()
        if entries:  # the batch is in the store: its record, for people to read
            _write_report(plan, store, historian, out)
        return entries
    finally:
        _close_record(historian, store)


def _write_report(plan: Plan, store: SqliteStore, historian: Historian, out: Output) -> None:
    """The batch report beside the store; a failure is said, never raised over the run."""
    import structlog

    from flexctl.cli.report import write_report
    from flexctl.errors import FlexctlError

    path = plan.db.parent / f"report-{plan.batch_id}.html"
    try:
        historian.flush()  # every sample in the store before the report reads it
        written = write_report(store, plan.batch_id, path)
    except (FlexctlError, OSError, ValueError) as exc:
        structlog.get_logger("flexctl.cli.run").exception("report not written", path=str(path))
        out.line(f"report: NOT written ({type(exc).__name__}: {exc}); `flexctl report` retries")
        return
    out.line(f"report: {written}")


def _close_record(historian: Historian, store: SqliteStore) -> None:
    """Flush the historian and close the store; a failure is logged, never raised over the run."""
    import structlog

    from flexctl.errors import FlexctlError

    try:
        historian.close()
    except FlexctlError:
        structlog.get_logger("flexctl.cli.run").exception(
            "historian flush failed at the end of the run", store=store.location
        )
    finally:
        store.close()


def _start_record(
    plan: Plan, store: SqliteStore, runtime: LineRuntime, *, clock: Clock, actor: str, out: Output
) -> BatchRecord:
    """Say the line is up; create the batch in the store (audited), or open the resumed one."""
    from flexctl.record.batch_record import BatchRecord, create_batch

    origins = plan.origins
    described = runtime.describe().values()
    out.line("line up: " + ", ".join(f"{d.name} {d.source} ({origins[d.name]})" for d in described))
    if plan.resume is not None:
        out.line(f"record: batch {plan.batch_id} resumed in {store.location}")
        return BatchRecord(store, plan.batch_id)
    info = _batch_info(plan, runtime, clock, actor)
    record = create_batch(store, info, process_time=clock.now())
    out.line(f"record: batch {plan.batch_id} in {store.location}")
    return record


def _batch_info(plan: Plan, runtime: LineRuntime, clock: Clock, actor: str) -> BatchInfo:
    """What the batch is, as the store keeps it: the files as run, the devices as found."""
    import hashlib

    from flexctl.record.journal import jsonable
    from flexctl.record.store import BatchInfo

    procedure_path = Path(plan.procedure.file)
    procedure_bytes = procedure_path.read_bytes()
    line_path = Path(plan.line.where.file)
    devices: dict[str, Any] = {}
    for name, described in runtime.describe().items():
        device = dict(described.as_dict())
        driver = runtime.drivers.get(name)
        if driver is not None:
            device["described"] = jsonable(driver.describe())
        devices[name] = jsonable(device)
    return BatchInfo(
        batch_id=plan.batch_id,
        procedure_name=plan.procedure.name,
        procedure_version=plan.procedure.version,
        procedure_path=str(procedure_path),
        procedure_sha256=hashlib.sha256(procedure_bytes).hexdigest(),
        procedure_text=procedure_bytes.decode("utf-8"),
        line_name=plan.line.name,
        line_path=str(line_path),
        line_text=line_path.read_text(encoding="utf-8"),
        parameters={k: jsonable(v) for k, v in plan.values.items()},
        seed=plan.seed,
        simulated=not plan.hardware,
        devices=devices,
        created_utc=clock.utcnow(),
        created_by=actor,
    )


def _journal_origins(
    plan: Plan, journal: Journal, clock: Clock, described: Mapping[str, DeviceDescription]
) -> None:
    """The batch's first entries: where each device is (in-process twin, external, hardware)."""
    from flexctl.record.journal import SYSTEM, EntryKind, JournalEntry

    served_by = plan.served.pid if plan.served is not None else None
    for name, origin in plan.origins.items():
        payload: dict[str, Any] = {
            "record": ORIGIN_RECORD,
            "origin": origin,
            "driver": plan.line.devices[name].driver,
        }
        if origin != "in-process twin":  # an in-process twin's port changes every run
            payload["source"] = described[name].source if name in described else None
        if origin == "external twin":
            payload["served_by_pid"] = served_by
            payload["endpoints_file"] = str(plan.served.path) if plan.served else None
        journal.append(
            JournalEntry(
                process_time=clock.now(),
                utc=clock.utcnow(),
                kind=EntryKind.RECORD,
                actor=SYSTEM,
                batch=plan.batch_id,
                device=name,
                payload=payload,
            )
        )


async def run_batch(
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    observers: Sequence[Callable[[JournalEntry], object]] = (),
) -> RunOutcome:
    """Check, bring the line up, run the batch and summarize: ``flexctl run`` itself.

    ``out`` takes the progress and the summary (default stdout); ``observers``
    see every journal entry as it is written (tests).
    """
    began = time.perf_counter()
    planned = _plan(args)
    if not isinstance(planned, Plan):
        _print_problems(f"flexctl run {args.procedure}", planned)
        return RunOutcome(EXIT_BAD_INPUT)
    from flexctl.cli.resume import unfinished_plan
    from flexctl.errors import ConfigurationError, Where
    from flexctl.record.lock import StoreBusy, supervisor_lock

    try:
        with supervisor_lock(planned.db):
            resumed = unfinished_plan(planned, args, out=out)
            if isinstance(resumed, list):
                _print_problems(f"flexctl run {args.procedure}", resumed)
                return RunOutcome(EXIT_BAD_INPUT)
            return await run_plan(resumed or planned, out=out, observers=observers, began=began)
    except (StoreBusy, FileNotFoundError) as exc:
        raise ConfigurationError(Where(str(planned.db)), str(exc)) from None


def _print_problems(what: str, problems: Sequence[ConfigurationError]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)
    count = len(problems)
    print(
        f"{what}: {count} problem{'s' if count != 1 else ''}; nothing was started",
        file=sys.stderr,
    )


async def run_plan(
    planned: Plan,
    *,
    out: TextIO | None = None,
    observers: Sequence[Callable[[JournalEntry], object]] = (),
    began: float | None = None,
) -> RunOutcome:
    """Run a checked plan (a new batch, or a resumed one), print its summary."""
    from flexctl.cli.progress import Output
    from flexctl.supervisor.batch_state import FINAL

    began = time.perf_counter() if began is None else began
    stream = Output(out)

    outcome = await _execute(planned, stream, observers)
    if outcome.summary is not None:
        from flexctl.cli.progress import summary_lines

        outcome.summary = dataclasses.replace(
            outcome.summary, wall_seconds=time.perf_counter() - began
        )
        stream.line()
        for text in summary_lines(outcome.summary):
            stream.line(text)
    state = outcome.state.value if outcome.state is not None else "not started"
    if outcome.interrupted_by is not None:
        left = ""
        if outcome.state is not None and outcome.state not in FINAL:
            left = " (stopped at once: not every device may be in its safe state)"
        print(
            f"flexctl run: interrupted ({outcome.interrupted_by}); batch {outcome.batch_id} "
            f"is {state}{left}",
            file=sys.stderr,
        )
    elif outcome.exit_code != EXIT_OK:
        print(f"flexctl run: batch {outcome.batch_id} ended {state}", file=sys.stderr)
    return outcome


async def _execute(
    plan: Plan, stream: Output, observers: Sequence[Callable[[JournalEntry], object]]
) -> RunOutcome:
    """Bring the line up and run the batch on it; the outcome, summary without wall time."""
    from flexctl.cli.progress import ObservedJournal, Progress, summarize
    from flexctl.clock import VirtualClock
    from flexctl.line_runtime import LineRuntime
    from flexctl.record.historian import Historian
    from flexctl.supervisor.batch_state import BatchState
    from flexctl.supervisor.executor import Batch
    from flexctl.supervisor.prompts import AutoSigner

    actor = _user()
    task = asyncio.current_task()
    assert task is not None
    signals = _Signals(task, actor)
    headless = _Headless()
    clock = _make_clock(plan)
    journal = ObservedJournal()
    journal.subscribe(Progress(plan.procedure, stream))
    if plan.serve is None:  # served, a person at a console restarts a held batch
        journal.subscribe(headless)
    for observer in observers:
        journal.subscribe(observer)
    batch = Batch(plan.batch_id, plan.procedure, plan.values)
    executor: Executor | None = None
    store = _open_store(plan)
    historian = Historian(store)
    _header(plan, stream, actor)
    signals.install()
    try:
        async with LineRuntime(
            plan.line,
            clock,
            seed=plan.seed,
            twins="external" if plan.twins == "external" else "in-process",
            endpoints=plan.served if plan.twins == "external" else None,
        ) as runtime:
            journal.inner = _start_record(
                plan, store, runtime, clock=clock, actor=actor, out=stream
            )
            _journal_origins(plan, journal, clock, runtime.describe())
            prompter = AutoSigner(plan.answers) if plan.auto_sign else None
            executor = make_executor(
                plan, batch, runtime, journal=journal, historian=historian, prompter=prompter
            )
            signals.executor = headless.executor = executor
            await _run_executor(plan, executor, runtime, store, out=stream, actor=actor)
    except asyncio.CancelledError:
        # Ours (a second Ctrl-C, or one before the batch started): exit 130, no trace.
        if not signals.hard or task.uncancel() > 0:
            raise
    finally:
        signals.remove()
        if isinstance(clock, VirtualClock):
            await clock.aclose()
        entries = _finish_record(plan, journal, historian, store, stream)
    outcome = RunOutcome(
        EXIT_OK if batch.state is BatchState.Complete else EXIT_FAILED,
        state=batch.state,
        batch_id=plan.batch_id,
        entries=entries,
        results=dict(executor.results) if executor is not None else {},
        plan=plan,
    )
    if signals.received is not None:
        outcome.interrupted_by = signal.Signals(signals.received).name
        outcome.exit_code = SIGNAL_EXITS[signals.received]
    if outcome.entries:
        outcome.summary = summarize(
            batch_id=plan.batch_id,
            state=batch.state,
            procedure=plan.procedure,
            line=plan.line,
            entries=outcome.entries,
            results=outcome.results,
            parameters=batch.parameters,
            requests=clock.requests,
            wall_seconds=0.0,
        )
    return outcome


async def run(args: argparse.Namespace) -> int:
    outcome = await run_batch(args)
    return outcome.exit_code
