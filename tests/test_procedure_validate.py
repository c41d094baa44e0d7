"""Validation: every mistake in a procedure, reported at its file:line:column.

Each broken procedure in the table marks the expected place with ``@@`` (the
marker is removed before the file is written). Inside an expression, a
duration or a pattern, the place is the offending character of the string,
after its opening quote when the string is quoted.
"""

from __future__ import annotations

import functools
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.bioreactor import Bioreactor
from drivers.thaw import ThawDevice
from flexctl.errors import ConfigurationError, Where
from flexctl.line import Line, shipped_line
from flexctl.procedure.loader import parse_procedure
from flexctl.procedure.model import ProcedureError
from flexctl.procedure.validate import (
    check_procedure,
    driver_commands,
    parse_parameter_values,
    validate_procedure,
)

GOOD = Path(__file__).parent / "data" / "procedures" / "good.yaml"
HEAD = 'procedure: p\nversion: "1"\nline: sim\n'


def proc(steps: str, *, parameters: str = "", rules: str = "", head: str = HEAD) -> str:
    """A procedure of one unit procedure ``u``; ``steps`` and ``rules`` are indented 6."""
    text = head
    if parameters:
        text += "parameters:\n" + parameters
    text += "unit_procedures:\n  - name: u\n    steps:\n" + steps
    if rules:
        text += "    rules:\n" + rules
    return text


def marked(text: str) -> tuple[str, int, int]:
    """Text without its ``@@`` marker, and the 1-based line and column the marker was at."""
    index = text.index("@@")
    before = text[:index]
    return text.replace("@@", "", 1), before.count("\n") + 1, index - before.rfind("\n")


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    fragment: str


WAIT = "      - {id: w, wait: 1 min}\n"
P_FLOAT = "  vol: {type: float, unit: mL, default: 100, limits: [20, 300]}\n"

CASES = [
    # -- YAML shape and schema ---------------------------------------------------------------
    Case(
        "unknown top-level key",
        proc(WAIT, head=HEAD + "@@descripton: x\n"),
        "unknown key 'descripton', did you mean 'description'? (expected one of alarms, "
        "description, interlocks, line, parameters, procedure, unit_procedures, version)",
    ),
    Case(
        "version as a number",
        proc(WAIT, head="procedure: p\nversion: @@1.0\nline: sim\n"),
        'version: expected text, got the number 1.0 (quote it: "1.0")',
    ),
    Case(
        "missing version", proc(WAIT, head="@@procedure: p\nline: sim\n"), "missing key 'version'"
    ),
    Case(
        "unit procedures not a list",
        HEAD + "unit_procedures: @@{name: u}\n",
        "unit_procedures: expected a list, got a mapping",
    ),
    Case("no unit procedures", HEAD + "unit_procedures: @@[]\n", "expected at least one"),
    Case(
        "unit procedure without steps",
        HEAD + "unit_procedures:\n  - @@name: u\n",
        "unit procedure u: missing key 'steps'",
    ),
    Case(
        "unit procedure name not a name",
        HEAD + "unit_procedures:\n  - name: @@thaw it\n    steps:\n" + WAIT,
        "name 'thaw it': expected letters, digits and _",
    ),
    Case(
        "unknown step key with the expected ones",
        proc("      - {id: a, command: thaw.stop, @@argz: {}}\n"),
        "step a (command): unknown key 'argz', did you mean 'args'? "
        "(expected one of args, command, description, id)",
    ),
    Case("step without id", proc("      - @@{command: thaw.stop}\n"), "missing key 'id'"),
    Case("step not a mapping", proc("      - @@wait 5 min\n"), "step 1: expected a mapping"),
    Case(
        "step without a kind",
        proc("      - @@{id: a, description: x}\n"),
        "step a: no step kind: expected one of command, wait_until, wait, prompt, record, set",
    ),
    Case(
        "step with two kinds",
        proc("      - {id: a, wait: 5 min, @@record: thaw.alarm}\n"),
        "step a: one kind per step, got wait and record",
    ),
    Case(
        "id that expressions cannot name",
        proc("      - {id: @@load-bag, wait: 5 min}\n"),
        "id 'load-bag': expected letters, digits and _",
    ),
    Case(
        "wait_until without timeout",
        proc("      - @@{id: a, wait_until: thaw.thaw_complete}\n"),
        "step a: missing key 'timeout'",
    ),
    Case(
        "unknown on_timeout",
        proc("      - {id: a, wait_until: thaw.thaw_complete, timeout: 1 h, on_timeout: @@wait}\n"),
        "on_timeout: expected one of hold, abort, continue, got text 'wait'",
    ),
    Case("prompt without role", proc("      - @@{id: a, prompt: Go}\n"), "missing key 'role'"),
    Case(
        "unknown role",
        proc("      - {id: a, prompt: Go, role: @@boss}\n"),
        "role: expected one of operator, supervisor, qa, got text 'boss'",
    ),
    Case(
        "unknown meaning",
        proc("      - {id: a, prompt: Go, role: qa, meaning: @@seen}\n"),
        "meaning: expected one of performed, verified, approved",
    ),
    Case(
        "prompt text not text",
        proc("      - {id: a, prompt: @@[1], role: qa}\n"),
        "prompt: expected text, got a list",
    ),
    Case(
        "unknown entry type",
        proc("      - {id: a, prompt: Go, role: qa, entry: {type: @@date}}\n"),
        "entry: type: expected one of text, float, int",
    ),
    Case(
        "limits on a text entry",
        proc("      - {id: a, prompt: Go, role: qa, entry: {type: text, limits: @@[1, 2]}}\n"),
        "limits apply to float and int entries",
    ),
    Case(
        "entry pattern that does not compile",
        proc('      - {id: a, prompt: Go, role: qa, entry: {pattern: "ab@@(c"}}\n'),
        "entry: pattern: missing ), unterminated subpattern",
    ),
    Case(
        "unknown entry key",
        proc("      - {id: a, prompt: Go, role: qa, entry: {@@regex: x}}\n"),
        "unknown key 'regex'",
    ),
    Case(
        "args not a mapping",
        proc("      - {id: a, command: thaw.start, args: @@[standard]}\n"),
        "args: expected a mapping, got a list",
    ),
    Case(
        "argument value of no kind",
        proc("      - {id: a, command: thaw.start, args: {program: @@[a]}}\n"),
        "argument program: expected a number, true/false, text or an =expression, got a list",
    ),
    Case(
        "argument not finite",
        proc(
            "      - {id: a, command: thaw.twin_load_bag,"
            " args: {volume_ml: @@.nan, start_temperature_c: 1}}\n"
        ),
        "argument volume_ml: nan is not a finite number",
    ),
    Case(
        "command without a method",
        proc("      - {id: a, command: @@thaw}\n"),
        "command: expected device.method, got text 'thaw'",
    ),
    Case(
        "set without value",
        proc("      - @@{id: a, set: bioreactor.temperature_sp}\n"),
        "missing key 'value'",
    ),
    Case(
        "rule without every",
        proc(WAIT, rules="      - @@{id: r, command: thaw.stop}\n"),
        "rule r: missing key 'every'",
    ),
    Case(
        "unknown rule key",
        proc(WAIT, rules="      - {id: r, every: 1 h, command: thaw.stop, @@if: x}\n"),
        "rule r: unknown key 'if'",
    ),
    # -- ids ---------------------------------------------------------------------------------
    Case(
        "duplicate step id",
        proc("      - {id: a, wait: 1 min}\n      - {id: @@a, wait: 2 min}\n"),
        "duplicate id 'a' (first at line 7)",
    ),
    Case(
        "rule id that is a step id",
        proc(
            "      - {id: a, wait: 1 min}\n",
            rules="      - {id: @@a, every: 1 h, command: thaw.stop}\n",
        ),
        "duplicate id 'a' (first at line 7)",
    ),
    Case(
        "duplicate unit procedure",
        HEAD
        + "unit_procedures:\n  - name: u\n    steps:\n"
        + WAIT
        + "  - @@name: u\n    steps:\n      - {id: w2, wait: 1 min}\n",
        "unit procedure 'u' appears twice (first at line 5)",
    ),
    Case(
        "step id that is a device",
        proc("      - {id: @@thaw, wait: 1 min}\n"),
        "id 'thaw' is also a device of line sim",
    ),
    Case(
        "step id that is a parameter",
        proc("      - {id: @@vol, wait: 1 min}\n", parameters=P_FLOAT),
        "id 'vol' is also a parameter",
    ),
    Case(
        "parameter that is a device",
        proc(WAIT, parameters="  @@freezer: {type: float}\n"),
        "parameter 'freezer' is also a device of line sim",
    ),
    # -- devices, commands and arguments -----------------------------------------------------
    Case(
        "unknown device",
        proc("      - {id: a, command: @@pump.start}\n"),
        "unknown device 'pump' (line sim has bioreactor, freezer, processor, thaw)",
    ),
    Case(
        "misspelt device",
        proc("      - {id: a, command: @@thwa.start}\n"),
        "unknown device 'thwa', did you mean 'thaw'?",
    ),
    Case(
        "unknown command",
        proc("      - {id: a, command: thaw.@@strat}\n"),
        "device thaw (thaw driver) has no command 'strat', did you mean 'start'?",
    ),
    Case(
        "unknown command lists the commands",
        proc("      - {id: a, command: freezer.@@defrost}\n"),
        "has no command 'defrost' (it has: abort, alarm, define_profile, door_closed, follow_run,",
    ),
    Case(
        "a synchronous driver method is not a command",
        proc("      - {id: a, command: thaw.@@describe}\n"),
        "has no command 'describe'",
    ),
    Case(
        "driver plumbing is not a command",
        proc("      - {id: a, command: thaw.@@safe_state, args: {action: hold}}\n"),
        "has no command 'safe_state'",
    ),
    Case(
        "unknown argument",
        proc("      - {id: a, command: thaw.start, args: {@@prog: standard}}\n"),
        "thaw.start has no argument 'prog', did you mean 'program'? (expected: program)",
    ),
    Case(
        "missing argument",
        proc("      - {id: a, command: @@thaw.twin_load_bag, args: {volume_ml: 100}}\n"),
        "thaw.twin_load_bag needs argument start_temperature_c",
    ),
    Case(
        "missing keyword-only argument without default",
        proc("      - {id: a, command: @@freezer.wait_done}\n"),
        "freezer.wait_done needs argument within",
    ),
    Case(
        "argument of the wrong type",
        proc(
            "      - {id: a, command: thaw.twin_load_bag,"
            " args: {volume_ml: @@lots, start_temperature_c: -150}}\n"
        ),
        "argument volume_ml: expected a number, got 'lots'",
    ),
    Case(
        "true is not a number",
        proc("      - {id: a, command: bioreactor.set_temperature, args: {celsius: @@true}}\n"),
        "argument celsius: expected a number, got True",
    ),
    Case(
        "a keyword-only argument can be given, and typed",
        proc(
            "      - {id: a, command: bioreactor.set_temperature,"
            " args: {celsius: 37, within: @@soon}}\n"
        ),
        "argument within: expected a number, got 'soon'",
    ),
    # -- set ---------------------------------------------------------------------------------
    Case(
        "unknown signal",
        proc("      - {id: a, set: bioreactor.@@temp_sp, value: 37}\n"),
        "device bioreactor has no signal 'temp_sp' in profile bioreactor.opcua",
    ),
    Case(
        "signal not writable",
        proc("      - {id: a, set: bioreactor.@@temperature, value: 37}\n"),
        "signal temperature of bioreactor is not writable in profile bioreactor.opcua "
        "(writable: co2_sp, perfusion_rate_sp, rock_angle_sp, rock_rate_sp, temperature_sp)",
    ),
    Case(
        "set outside the profile's limits",
        proc("      - {id: sp, set: bioreactor.temperature_sp, value: @@45}\n"),
        "step sp: temperature_sp: 45 degC is outside the limits [30, 39] degC "
        "of profile bioreactor.opcua",
    ),
    Case(
        "set a value of the wrong type",
        proc("      - {id: sp, set: bioreactor.temperature_sp, value: @@warm}\n"),
        "temperature_sp: expected a float64 value, got 'warm' (profile bioreactor.opcua)",
    ),
    Case(
        "set to a parameter whose value is outside the limits",
        proc(
            '      - {id: sp, set: bioreactor.temperature_sp, value: @@"=temp"}\n',
            parameters="  temp: {type: float, default: 41}\n",
        ),
        "temperature_sp: 41 degC is outside the limits [30, 39] degC of profile "
        "bioreactor.opcua (parameter temp)",
    ),
    Case(
        "unknown device in set",
        proc("      - {id: a, set: @@stirrer.speed, value: 3}\n"),
        "unknown device 'stirrer'",
    ),
    # -- durations ---------------------------------------------------------------------------
    Case(
        "bare number",
        proc("      - {id: a, wait: @@30}\n"),
        "wait: expected a duration such as '30 s', '5 min', '12 h' or '1 d 12 h', got the number"
        " 30 (a bare number is refused: the unit is part of the meaning)",
    ),
    Case(
        "bad unit, plain", proc("      - {id: a, wait: 5 @@furlongs}\n"), "unknown unit 'furlongs'"
    ),
    Case(
        "bad unit, double-quoted",
        proc('      - {id: a, wait: "5 @@furlongs"}\n'),
        "step a: wait: unknown unit 'furlongs'",
    ),
    Case(
        "bad unit, single-quoted",
        proc("      - {id: a, wait: '5 @@furlongs'}\n"),
        "unknown unit 'furlongs'",
    ),
    Case(
        "bad duration in block style",
        proc("      - id: a\n        wait: 1 h @@90 min\n"),
        "90 min is not less than 1 h",
    ),
    Case("zero wait", proc("      - {id: a, wait: @@0 s}\n"), "wait: must be longer than 0 s"),
    Case(
        "zero timeout",
        proc("      - {id: a, wait_until: thaw.thaw_complete, timeout: @@0 min}\n"),
        "timeout: must be longer than 0 s",
    ),
    Case(
        "zero poll",
        proc("      - {id: a, wait_until: thaw.thaw_complete, timeout: 1 h, poll: '@@0 s'}\n"),
        "poll: must be longer than 0 s",
    ),
    Case(
        "bad every",
        proc(WAIT, rules="      - {id: r, every: @@12, command: thaw.stop}\n"),
        "rule r: every: expected a duration",
    ),
    # -- expressions -------------------------------------------------------------------------
    Case(
        "syntax error at the end, plain",
        proc("      - id: a\n        wait_until: (thaw.thaw_complete@@\n        timeout: 1 h\n"),
        "wait_until: missing ')' to close the '(' at offset 0",
    ),
    Case(
        "syntax error at the end, double-quoted",
        proc('      - {id: a, wait_until: "(thaw.thaw_complete@@", timeout: 1 h}\n'),
        "missing ')'",
    ),
    Case(
        "syntax error inside, plain",
        proc("      - {id: a, record: thaw.sample_temperature > @@* 2}\n"),
        "record: starred expressions are not allowed",
    ),
    Case(
        "syntax error inside, single-quoted",
        proc("      - {id: a, record: 'thaw.sample_temperature > @@* 2'}\n"),
        "starred expressions are not allowed",
    ),
    Case(
        "syntax error after an escape, double-quoted",
        proc('      - {id: a, record: "thaw.alarm == \\"x\\" @@)"}\n'),
        "record: unmatched ')'",
    ),
    Case(
        "=expression argument, plain",
        proc(
            "      - id: a\n        command: bioreactor.perfuse\n        args:\n"
            "          rate_ml_per_day: =500 + @@)\n"
        ),
        "argument rate_ml_per_day: expected a value, found ')'",
    ),
    Case(
        "=expression argument, quoted",
        proc('      - {id: a, command: bioreactor.perfuse, args: {rate_ml_per_day: "=500 +@@"}}\n'),
        "unexpected end of expression",
    ),
    Case(
        "condition that is not true or false",
        proc("      - {id: a, wait_until: @@thaw.sample_temperature + 1, timeout: 1 h}\n"),
        "wait_until: a condition must be true or false, not number",
    ),
    Case(
        "unknown plain name, quoted",
        proc('      - {id: a, wait_until: "thaw.thaw_complete and @@x > 1", timeout: 1 h}\n'),
        "wait_until: unknown name 'x' (not a parameter; parameters: none)",
    ),
    Case(
        "unknown plain name suggests a parameter",
        proc("      - {id: a, record: 2 * @@vl}\n", parameters=P_FLOAT),
        "unknown name 'vl', did you mean 'vol'?",
    ),
    Case(
        "unknown signal in an expression",
        proc('      - {id: a, record: "2 * @@thaw.sample_temp"}\n'),
        "device thaw has no signal 'sample_temp', did you mean 'sample_temperature'? "
        "in profile thaw.serial",
    ),
    Case(
        "a step named later",
        proc(
            "      - {id: a, record: @@b.value}\n      - {id: b, prompt: Count, role: qa,"
            " entry: {type: int}}\n"
        ),
        "'b.value': step b comes later (line 8); only earlier steps can be named",
    ),
    Case(
        "a step names itself",
        proc("      - {id: a, wait_until: @@a.value > 1, timeout: 1 h}\n"),
        "step a comes later (line 7)",
    ),
    Case(
        "a rule names a step of its own unit procedure",
        proc(
            "      - {id: a, prompt: Count, role: qa, entry: {type: int}}\n",
            rules="      - {id: r, every: 1 h, when: '@@a.value > 1', command: thaw.stop}\n",
        ),
        "a rule runs beside its unit procedure's steps",
    ),
    Case(
        "a rule argument names an unknown signal",
        proc(
            WAIT,
            rules="      - {id: r, every: 1 h, command: bioreactor.perfuse,"
            " args: {rate_ml_per_day: '=@@bioreactor.vcd'}}\n",
        ),
        "argument rate_ml_per_day: device bioreactor has no signal 'vcd'",
    ),
    Case("a device alone", proc("      - {id: a, record: @@thaw}\n"), "'thaw' is a device"),
    Case(
        "a step alone",
        proc(WAIT + "      - {id: a, record: 1 + @@w}\n"),
        "'w' is a step: name a field of its result, as w.value",
    ),
    Case(
        "unknown dotted name",
        proc("      - {id: a, record: @@fridge.temperature}\n"),
        "unknown name 'fridge.temperature': 'fridge' is neither a device of line sim "
        "nor an earlier step",
    ),
    Case(
        "a parameter has no fields",
        proc("      - {id: a, record: @@vol.value}\n", parameters=P_FLOAT),
        "parameter vol has no fields",
    ),
    Case(
        "signal of a signal",
        proc("      - {id: a, record: @@thaw.alarm.code}\n"),
        "a device signal is named device.signal",
    ),
    # -- parameters --------------------------------------------------------------------------
    Case(
        "unknown parameter type",
        proc(WAIT, parameters="  vol: {type: @@string}\n"),
        "parameter vol: type: expected one of float, int, bool, text, duration",
    ),
    Case(
        "parameter without type",
        proc(WAIT, parameters="  vol: @@{unit: mL}\n"),
        "missing key 'type'",
    ),
    Case(
        "unknown parameter key",
        proc(WAIT, parameters="  vol: {type: float, @@min: 3}\n"),
        "parameter vol: unknown key 'min'",
    ),
    Case(
        "parameter name that expressions cannot name",
        proc(WAIT, parameters="  @@bag-volume: {type: float}\n"),
        "parameter bag-volume: expected letters, digits and _",
    ),
    Case(
        "float default of the wrong type",
        proc(WAIT, parameters="  vol: {type: float, default: @@abc}\n"),
        "parameter vol: default: expected a finite number, got text 'abc'",
    ),
    Case(
        "int default that is not whole",
        proc(WAIT, parameters="  n: {type: int, default: @@2.5}\n"),
        "default: expected a whole number, got the number 2.5",
    ),
    Case(
        "bool default",
        proc(WAIT, parameters="  b: {type: bool, default: @@1}\n"),
        "default: expected true or false",
    ),
    Case(
        "default outside the limits",
        proc(
            WAIT, parameters="  vol: {type: float, unit: mL, default: @@500, limits: [20, 300]}\n"
        ),
        "parameter vol: default: 500 mL is outside the limits [20, 300] mL",
    ),
    Case(
        "duration default outside the limits",
        proc(
            WAIT, parameters='  t: {type: duration, default: @@"20 d", limits: ["7 d", "14 d"]}\n'
        ),
        "parameter t: default: 20 d is outside the limits [7 d, 14 d]",
    ),
    Case(
        "bad duration default",
        proc(WAIT, parameters='  t: {type: duration, default: "3 @@parsecs"}\n'),
        "parameter t: default: unknown unit 'parsecs'",
    ),
    Case(
        "bad duration limit",
        proc(WAIT, parameters="  t: {type: duration, limits: [@@7, 14 d]}\n"),
        "parameter t: limits: expected a duration",
    ),
    Case(
        "limits of one number",
        proc(WAIT, parameters="  vol: {type: float, limits: @@[5]}\n"),
        "limits: expected [low, high], got a list",
    ),
    Case(
        "limits upside down",
        proc(WAIT, parameters="  vol: {type: float, limits: @@[300, 20]}\n"),
        "limits: low must not be above high",
    ),
    Case(
        "limit not a number",
        proc(WAIT, parameters="  vol: {type: float, limits: [@@a, 5]}\n"),
        "limits: expected a finite number, got text 'a'",
    ),
    Case(
        "int limit not whole",
        proc(WAIT, parameters="  n: {type: int, limits: [1, @@4.5]}\n"),
        "limits: expected a whole number",
    ),
    Case(
        "limits on text",
        proc(WAIT, parameters="  lot: {type: text, limits: @@[1, 2]}\n"),
        "limits apply to float, int and duration parameters",
    ),
    Case(
        "pattern that does not compile, quoted",
        proc(WAIT, parameters='  lot: {type: text, pattern: "^@@[A-Z"}\n'),
        "parameter lot: pattern: unterminated character set",
    ),
    Case(
        "pattern that does not compile, plain",
        proc(WAIT, parameters="  lot: {type: text, pattern: ab@@(c}\n"),
        "pattern: missing ), unterminated subpattern",
    ),
    Case(
        "pattern on a number",
        proc(WAIT, parameters="  vol: {type: float, pattern: @@'^1'}\n"),
        "parameter vol: a pattern applies to text only",
    ),
    Case(
        "default that does not match the pattern",
        proc(WAIT, parameters='  lot: {type: text, default: @@abc, pattern: "^[A-Z]+$"}\n'),
        "default: 'abc' does not match the pattern '^[A-Z]+$'",
    ),
    # -- interlocks: the loader ------------------------------------------------------------------
    Case(
        "interlocks not a list",
        proc(WAIT, head=HEAD + "interlocks: @@{name: a, alarm: thaw}\n"),
        "interlocks: expected a list, got a mapping",
    ),
    Case(
        "unit procedure interlocks not a list",
        HEAD + "unit_procedures:\n  - name: u\n    interlocks: @@thaw\n    steps:\n" + WAIT,
        "unit procedure u: interlocks: expected a list, got text 'thaw'",
    ),
    Case(
        "interlock not a mapping",
        proc(WAIT, head=HEAD + "interlocks:\n  - @@thaw\n"),
        "interlock 1: expected a mapping, got text 'thaw'",
    ),
    Case(
        "interlock without a name",
        proc(WAIT, head=HEAD + "interlocks:\n  - @@{band: bioreactor.do, low: 10}\n"),
        "interlock 1 (band): missing key 'name'",
    ),
    Case(
        "interlock name that is not a name",
        proc(
            WAIT, head=HEAD + "interlocks:\n  - {name: @@do floor, band: bioreactor.do, low: 10}\n"
        ),
        "interlock do floor: name 'do floor': expected letters, digits and _",
    ),
    Case(
        "interlock of no kind",
        proc(WAIT, head=HEAD + "interlocks:\n  - @@{name: a, low: 10}\n"),
        "interlock a: expected 'band: device.signal' (a value kept in a band) "
        "or 'alarm: device' (the device's alarms)",
    ),
    Case(
        "interlock of two kinds",
        proc(
            WAIT,
            head=HEAD + "interlocks:\n  - {name: a, band: bioreactor.do, @@alarm: bioreactor}\n",
        ),
        "interlock a: one of band or alarm per interlock, got both",
    ),
    Case(
        "unknown band key with the band keys",
        proc(
            WAIT,
            head=HEAD + "interlocks:\n  - {name: a, band: bioreactor.do, low: 1, @@dealy: 1 h}\n",
        ),
        "interlock a (band): unknown key 'dealy', did you mean 'delay'? "
        "(expected one of band, delay, high, low, name)",
    ),
    Case(
        "unknown alarm key with the alarm keys",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, alarm: thaw, @@low: 1}\n"),
        "interlock a (alarm): unknown key 'low' (expected one of alarm, codes, name)",
    ),
    Case(
        "band that is not device.signal",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, band: @@temperature, low: 1}\n"),
        "interlock a: band: expected device.signal, got text 'temperature'",
    ),
    Case(
        "band without low or high",
        proc(WAIT, head=HEAD + "interlocks:\n  - @@{name: a, band: bioreactor.do, delay: 1 h}\n"),
        "interlock a: a band needs low, high or both",
    ),
    Case(
        "band low that is not a number",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, band: bioreactor.do, low: @@ten}\n"),
        "interlock a: low: expected a finite number, got text 'ten'",
    ),
    Case(
        "band high that is not finite",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, band: bioreactor.do, high: @@.inf}\n"),
        "interlock a: high: expected a finite number, got the number inf",
    ),
    Case(
        "true is not a bound",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, band: bioreactor.do, low: @@true}\n"),
        "interlock a: low: expected a finite number, got true",
    ),
    Case(
        "band low above high",
        proc(
            WAIT,
            head=HEAD + "interlocks:\n  - {name: a, band: bioreactor.do, low: @@20, high: 10.5}\n",
        ),
        "interlock a: low 20 is above high 10.5",
    ),
    Case(
        "band delay as a bare number",
        proc(
            WAIT,
            head=HEAD + "interlocks:\n  - {name: a, band: bioreactor.do, low: 10, delay: @@30}\n",
        ),
        "interlock a: delay: expected a duration such as '30 s', '5 min', '12 h' or '1 d 12 h', "
        "got the number 30 (a bare number is refused: the unit is part of the meaning)",
    ),
    Case(
        "band delay with an unknown unit",
        proc(
            WAIT,
            head=HEAD
            + "interlocks:\n  - {name: a, band: bioreactor.do, low: 10, delay: '3 @@moons'}\n",
        ),
        "interlock a: delay: unknown unit 'moons'",
    ),
    Case(
        "alarm that is not a device name",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, alarm: @@[thaw]}\n"),
        "interlock a: alarm: expected a device name, got a list",
    ),
    Case(
        "alarm of a device.signal",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, alarm: @@thaw.alarm}\n"),
        "interlock a: alarm: expected a device name, got text 'thaw.alarm'",
    ),
    Case(
        "codes not a list",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, alarm: thaw, codes: @@OVERSHOOT}\n"),
        "interlock a: codes: expected a list, got text 'OVERSHOOT'",
    ),
    Case(
        "an empty code",
        proc(
            WAIT, head=HEAD + "interlocks:\n  - {name: a, alarm: thaw, codes: [OVERSHOOT, @@'']}\n"
        ),
        "interlock a: codes: expected an alarm code (text), got text ''",
    ),
    Case(
        "a code that is a number",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, alarm: thaw, codes: [@@42]}\n"),
        "interlock a: codes: expected an alarm code (text), got the number 42",
    ),
    # -- interlocks: names and the line ---------------------------------------------------------
    Case(
        "interlock names are unique across the procedure",
        HEAD
        + "interlocks:\n  - {name: a, alarm: thaw}\nunit_procedures:\n  - name: u\n"
        + "    interlocks:\n      - {name: @@a, alarm: freezer}\n    steps:\n"
        + WAIT,
        "duplicate interlock name 'a' (first at line 5)",
    ),
    Case(
        "interlock name that is a later step id",
        proc(
            "      - {id: @@w, wait: 1 min}\n",
            head=HEAD + "interlocks:\n  - {name: w, alarm: thaw}\n",
        ),
        "duplicate id 'w' (first at line 5)",
    ),
    Case(
        "interlock name that is an earlier step id",
        HEAD
        + "unit_procedures:\n  - name: u\n    steps:\n"
        + WAIT
        + "    interlocks:\n      - {name: @@w, alarm: thaw}\n",
        "duplicate interlock name 'w' (first at line 7)",
    ),
    Case(
        "interlock name that is a rule id",
        proc(
            WAIT,
            rules="      - {id: r, every: 1 h, command: thaw.stop}\n",
            head=HEAD + "interlocks:\n  - {name: r, alarm: thaw}\n",
        ).replace("{id: r,", "{id: @@r,"),
        "duplicate id 'r' (first at line 5)",
    ),
    Case(
        "interlock name that is a device",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: @@freezer, alarm: freezer}\n"),
        "interlock name 'freezer' is also a device of line sim; rename it",
    ),
    Case(
        "interlock name that is a parameter",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: @@vol, alarm: thaw}\n", parameters=P_FLOAT),
        "interlock name 'vol' is also a parameter; rename one",
    ),
    Case(
        "band on an unknown device",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, band: @@pump.speed, low: 1}\n"),
        "interlock a: unknown device 'pump' (line sim has bioreactor, freezer, processor, thaw)",
    ),
    Case(
        "band on a misspelt device",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, band: @@bioreactr.do, low: 1}\n"),
        "interlock a: unknown device 'bioreactr', did you mean 'bioreactor'?",
    ),
    Case(
        "band on an unknown signal",
        proc(
            WAIT, head=HEAD + "interlocks:\n  - {name: a, band: bioreactor.@@dissolved, low: 1}\n"
        ),
        "interlock a: device bioreactor has no signal 'dissolved' in profile bioreactor.opcua",
    ),
    Case(
        "band on a misspelt signal",
        proc(
            WAIT, head=HEAD + "interlocks:\n  - {name: a, band: bioreactor.@@temprature, low: 1}\n"
        ),
        "device bioreactor has no signal 'temprature', did you mean 'temperature'?",
    ),
    Case(
        "band on an enum signal",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, band: bioreactor.@@status, low: 1}\n"),
        "interlock a: signal status of bioreactor is not a number (one of idle, busy, warn, "
        "error) in profile bioreactor.opcua; a band needs a number",
    ),
    Case(
        "band on a bool signal",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, band: bioreactor.@@rocking, high: 0}\n"),
        "signal rocking of bioreactor is not a number (bool)",
    ),
    Case(
        "band on a text signal",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, band: thaw.@@alarm, high: 0}\n"),
        "signal alarm of thaw is not a number (string) in profile thaw.serial",
    ),
    Case(
        "band in a unit procedure",
        HEAD
        + "unit_procedures:\n  - name: u\n    interlocks:\n"
        + "      - {name: a, band: @@stirrer.speed, high: 0}\n    steps:\n"
        + WAIT,
        "interlock a: unknown device 'stirrer'",
    ),
    Case(
        "alarm of an unknown device",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, alarm: @@pump}\n"),
        "interlock a: unknown device 'pump' (line sim has bioreactor, freezer, processor, thaw)",
    ),
    Case(
        "alarm of a misspelt device",
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, alarm: @@freezr}\n"),
        "interlock a: unknown device 'freezr', did you mean 'freezer'?",
    ),
    # -- suggest -----------------------------------------------------------------------------
    Case(
        "suggestion outside the limits",
        proc(
            "      - {id: a, prompt: Add, role: qa,"
            " entry: {type: float, unit: mL, limits: [0.1, 200], suggest: @@500}}\n"
        ),
        "step a: entry: suggest: 500 mL is outside the limits [0.1, 200] mL",
    ),
    Case(
        "text suggested for a number",
        proc("      - {id: a, prompt: Add, role: qa, entry: {type: float, suggest: @@lots}}\n"),
        "step a: entry: suggest: expected a finite number, got text 'lots'",
    ),
    Case(
        "a fraction suggested for a whole number",
        proc("      - {id: a, prompt: Count, role: qa, entry: {type: int, suggest: @@2.5}}\n"),
        "entry: suggest: expected a whole number, got the number 2.5",
    ),
    Case(
        "true suggested for a number",
        proc("      - {id: a, prompt: Count, role: qa, entry: {type: int, suggest: @@true}}\n"),
        "entry: suggest: expected a finite number, got true",
    ),
    Case(
        "suggestion that does not match the pattern",
        proc(
            "      - {id: a, prompt: Scan, role: qa,"
            " entry: {pattern: '^[A-Z]+$', suggest: @@abc}}\n"
        ),
        "entry: suggest: 'abc' does not match the pattern '^[A-Z]+$'",
    ),
    Case(
        "number suggested for text",
        proc("      - {id: a, prompt: Scan, role: qa, entry: {type: text, suggest: @@42}}\n"),
        "entry: suggest: expected text, got the number 42",
    ),
    Case(
        "suggested expression that gives a number for text",
        proc("      - {id: a, prompt: Scan, role: qa, entry: {suggest: '=@@1 + 2'}}\n"),
        "step a: entry: suggest: expected text, the expression gives number",
    ),
    Case(
        "suggested condition for a number",
        proc(
            "      - {id: a, prompt: Add, role: qa,"
            " entry: {type: float, suggest: '=@@bioreactor.do > 10'}}\n"
        ),
        "entry: suggest: expected a number, the expression gives boolean",
    ),
    Case(
        "suggestion of no kind",
        proc("      - {id: a, prompt: Add, role: qa, entry: {type: float, suggest: @@[1]}}\n"),
        "entry: suggest: expected a number, true/false, text or an =expression, got a list",
    ),
    Case(
        "suggested expression with a syntax error",
        proc("      - {id: a, prompt: Add, role: qa, entry: {type: float, suggest: '=1 +@@'}}\n"),
        "entry: suggest: unexpected end of expression",
    ),
    Case(
        "suggested expression with an unknown name",
        proc("      - {id: a, prompt: Add, role: qa, entry: {type: float, suggest: '=2 * @@x'}}\n"),
        "step a: entry: suggest: unknown name 'x' (not a parameter; parameters: none)",
    ),
    Case(
        "suggested expression with an unknown signal",
        proc(
            "      - {id: a, prompt: Add, role: qa,"
            " entry: {type: float, suggest: '=@@bioreactor.vol'}}\n"
        ),
        "entry: suggest: device bioreactor has no signal 'vol'",
    ),
    Case(
        "suggested expression naming a later step",
        proc(
            "      - {id: a, prompt: Add, role: qa, entry: {type: float, suggest: '=@@b.value'}}\n"
            "      - {id: b, record: bioreactor.volume}\n"
        ),
        "entry: suggest: 'b.value': step b comes later (line 8); only earlier steps can be named",
    ),
    Case(
        "suggested parameter outside the entry's limits",
        proc(
            "      - {id: a, prompt: Add, role: qa,"
            " entry: {type: float, limits: [0.1, 50], suggest: @@'=vol'}}\n",
            parameters=P_FLOAT,
        ),
        "step a: entry: suggest: 100 is outside the limits [0.1, 50] (parameter vol)",
    ),
    # -- the line ----------------------------------------------------------------------------
    Case(
        "unknown line",
        proc(WAIT, head='procedure: p\nversion: "1"\nline: @@nope\n'),
        "no shipped line named 'nope' (shipped: sim",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_broken_procedure_is_reported_where_the_mistake_is(tmp_path: Path, case: Case) -> None:
    text, line, column = marked(case.text)
    path = tmp_path / "p.yaml"
    path.write_text(text)
    check = check_procedure(path)
    assert not check.ok
    shown = "\n".join(str(p) for p in check.problems)
    assert len(check.problems) == 1, shown
    problem = check.problems[0]
    assert case.fragment in problem.message, shown
    assert problem.where == Where(str(path), line, column), shown


def test_the_good_procedure_is_valid_on_the_sim_line() -> None:
    check = check_procedure(GOOD)
    assert check.problems == ()
    assert check.ok
    assert check.line is not None and check.line.name == "sim"
    assert check.procedure is not None


def test_several_problems_are_reported_at_once_in_file_order(tmp_path: Path) -> None:
    text = proc(
        "      - {id: a, command: thaw.strat}\n"  # line 9
        "      - {id: b, wait: 30}\n"  # line 10: the loader's problem
        "      - {id: c, set: bioreactor.temperature_sp, value: 45}\n"  # line 11
        "      - {id: d, record: 'thaw.sample_temperature > vol + x'}\n"  # line 12
        "      - {id: a, wait: 5 min}\n",  # line 13
        parameters="  vol: {type: float, default: 500, limits: [20, 300]}\n",  # line 5
    )
    path = tmp_path / "p.yaml"
    path.write_text(text)
    problems = check_procedure(path).problems
    assert [(p.where.line, p.where.column) for p in problems] == [
        (5, 31),
        (9, 31),
        (10, 23),
        (11, 56),
        (12, 58),
        (13, 14),
    ]
    assert "default: 500 is outside the limits [20, 300]" in problems[0].message
    assert "has no command 'strat'" in problems[1].message
    assert "a bare number is refused" in problems[2].message
    assert "45 degC is outside the limits" in problems[3].message
    # vol is not reported again: its mistake is its default
    assert "unknown name 'x'" in problems[4].message
    assert "duplicate id 'a' (first at line 9)" in problems[5].message


def test_references_to_a_malformed_step_are_not_reported_again(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        proc(
            "      - {id: a, prompt: Count, role: boss, entry: {type: int}}\n"
            "      - {id: b, record: a.value}\n"
        )
    )
    (problem,) = check_procedure(path).problems
    assert "role" in problem.message


PERFUSE = (
    "      - {{id: {id}, command: bioreactor.start_perfusion, args: {{rate_ml_per_day: {rate}}}}}\n"
)


def test_argument_limits_declared_by_a_driver_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        Bioreactor,
        "argument_limits",
        {"start_perfusion": {"rate_ml_per_day": "perfusion_rate_sp"}},
        raising=False,
    )
    text, line, column = marked(
        proc(
            PERFUSE.format(id="a", rate="@@2500")
            + PERFUSE.format(id="b", rate="1500")
            + PERFUSE.format(id="c", rate="'=r'"),
            parameters="  r: {type: float, default: 3000}\n",
        )
    )
    path = tmp_path / "p.yaml"
    path.write_text(text)
    first, second = check_procedure(path).problems
    assert first.where == Where(str(path), line, column)
    assert first.message == (
        "step a: argument rate_ml_per_day: perfusion_rate_sp: 2500 mL/day is outside the limits "
        "[0, 2000] mL/day of profile bioreactor.opcua (signal perfusion_rate_sp)"
    )
    assert second.where.line == line + 2
    assert "3000 mL/day is outside" in second.message
    assert "(parameter r)" in second.message
    # a batch value replaces the default
    assert [str(p) for p in check_procedure(path, params=["r=1000"]).problems] == [str(first)]


def test_a_batch_parameter_value_is_checked_where_it_is_used(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        proc(
            "      - {id: sp, set: bioreactor.temperature_sp, value: '=temp'}\n",
            parameters="  temp: {type: float, unit: degC, default: 37, limits: [0, 50]}\n",
        )
    )
    assert check_procedure(path).ok
    (problem,) = check_procedure(path, params=["temp=45"]).problems
    assert "45 degC is outside the limits [30, 39] degC" in problem.message
    assert "(parameter temp)" in problem.message


def test_commands_are_the_public_async_driver_methods_without_the_plumbing() -> None:
    commands = driver_commands(Bioreactor)
    assert {"seed", "sample", "set_temperature", "perfuse", "harvest", "status"} <= set(commands)
    assert not {"set", "get", "read", "command", "connect", "safe_state", "describe"} & set(
        commands
    )
    assert not any(name.startswith("_") for name in commands)


def test_another_line_can_be_given(tmp_path: Path) -> None:
    line = tmp_path / "lab.yaml"
    line.write_text(
        "line: lab\ndevices:\n"
        "  thaw: {driver: thaw, profile: thaw.opcua, transport: opcua, twin: true}\n"
    )
    path = tmp_path / "p.yaml"
    path.write_text(
        proc("      - {id: a, command: thaw.start}\n      - {id: b, record: bioreactor.ph}\n")
    )
    check = check_procedure(path, line=str(line))
    (problem,) = check.problems
    assert "unknown name 'bioreactor.ph': 'bioreactor' is neither a device of line lab" in (
        problem.message
    )
    # the procedure's own line: is relative to the procedure file
    path.write_text(path.read_text().replace("line: sim", "line: lab.yaml"))
    assert len(check_procedure(path).problems) == 1
    # without line: the sim line
    path.write_text(path.read_text().replace("line: lab.yaml\n", ""))
    assert check_procedure(path).ok


def test_a_broken_line_is_a_problem_too(tmp_path: Path) -> None:
    line = tmp_path / "lab.yaml"
    line.write_text("line: lab\ndevices:\n  thaw: {driver: thaw}\n")
    path = tmp_path / "p.yaml"
    path.write_text(proc(WAIT))
    (problem,) = check_procedure(path, line=str(line)).problems
    assert problem.where == Where(str(line), 3, 9)
    assert check_procedure(path, line="nope").problems[0].where == Where("--line")


# -- interlocks and suggestions -------------------------------------------------------------------

VALID_INTERLOCKS = proc(
    "      - {id: seed_count, command: bioreactor.sample, args: {volume_ml: 1}}\n"
    "      - id: volume\n        prompt: Add the volume\n        role: operator\n"
    "        entry: {type: float, unit: mL, limits: [0.1, 200],"
    " suggest: '=seed_count.vcd_per_ml * bioreactor.volume / vol / 1e6'}\n"
    "      - {id: lot, prompt: Scan, role: qa, entry: {pattern: '^[A-Z]+$', suggest: LOT}}\n"
    "      - {id: n, prompt: Count, role: qa, entry: {type: int, limits: [1, 4], suggest: 2}}\n"
    "      - {id: v, prompt: Vol, role: qa, entry: {type: float, limits: [20, 300],"
    " suggest: '=vol'}}\n",
    parameters=P_FLOAT,
    head=HEAD
    + "interlocks:\n"
    + "  - {name: culture_temperature, band: bioreactor.temperature, low: 35.5, high: 38.5,"
    + " delay: 30 min}\n"
    + "  - {name: do_floor, band: bioreactor.do, low: 10, delay: 1 h}\n"
    + "  - {name: level, band: processor.bags_filled, high: 8}\n"
    + "  - {name: bioreactor_alarms, alarm: bioreactor, codes: [DO_CRITICAL, OVERFILL]}\n"
    + "  - {name: freezer_alarms, alarm: freezer}\n",
).replace(
    "    steps:\n",
    "    interlocks:\n      - {name: thaw_alarms, alarm: thaw, codes: [OVERSHOOT]}\n    steps:\n",
)


def test_interlocks_and_suggestions_that_fit_the_line_are_valid(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(VALID_INTERLOCKS)
    check = check_procedure(path)
    assert check.problems == (), "\n".join(str(p) for p in check.problems)
    assert check.procedure is not None
    assert len(check.procedure.interlocks) == 5
    assert len(check.procedure.unit_procedures[0].interlocks) == 1


def test_without_a_line_interlock_names_are_still_checked() -> None:
    loaded = parse_procedure(
        proc(
            "      - {id: a, wait: 1 min}\n",
            head=HEAD + "interlocks:\n  - {name: a, alarm: nope}\n  - {name: a, alarm: nope}\n",
        ),
        "p.yaml",
    )
    assert loaded.procedure is not None
    problems = validate_procedure(loaded.procedure, None)
    assert [(p.where.line, p.where.column, p.message) for p in problems] == [
        (6, 12, "duplicate interlock name 'a' (first at line 5)"),
        (10, 14, "duplicate id 'a' (first at line 5)"),
    ]


def test_an_alarm_interlock_needs_an_alarm_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every shipped driver needs the alarm signal; one that did not could have a
    # profile without it, whose alarms no interlock can watch.
    profile = Path(__file__).resolve().parent.parent / "config" / "profiles" / "thaw.opcua.yaml"
    lines = profile.read_text().splitlines(keepends=True)
    (tmp_path / "thaw-quiet.yaml").write_text(
        "".join(line for line in lines if not line.startswith("  alarm:"))
    )
    monkeypatch.setattr(
        ThawDevice,
        "required_signals",
        tuple(s for s in ThawDevice.required_signals if s != "alarm"),
    )
    line = tmp_path / "lab.yaml"
    line.write_text(
        "line: lab\ndevices:\n"
        "  thaw: {driver: thaw, profile: thaw-quiet.yaml, transport: opcua, twin: true}\n"
    )
    text, row, column = marked(
        proc(WAIT, head=HEAD + "interlocks:\n  - {name: a, alarm: @@thaw}\n")
    )
    path = tmp_path / "p.yaml"
    path.write_text(text)
    (problem,) = check_procedure(path, line=str(line)).problems
    assert problem.where == Where(str(path), row, column)
    assert problem.message == (
        "interlock a: device thaw has no 'alarm' signal in profile thaw-quiet, "
        "so its alarms cannot be watched"
    )


def test_a_suggested_parameter_is_checked_with_this_batch_value(tmp_path: Path) -> None:
    text, row, column = marked(
        proc(
            "      - {id: a, prompt: Add, role: qa,"
            " entry: {type: float, unit: mL, limits: [0.1, 50], suggest: @@'=vol'}}\n",
            parameters=P_FLOAT,
        )
    )
    path = tmp_path / "p.yaml"
    path.write_text(text)
    assert check_procedure(path, params=["vol=30"]).ok
    (problem,) = check_procedure(path, params=["vol=60"]).problems
    assert problem.where == Where(str(path), row, column)
    assert problem.message == (
        "step a: entry: suggest: 60 mL is outside the limits [0.1, 50] mL (parameter vol)"
    )


# -- batch parameters ---------------------------------------------------------------------------

PARAMS = (
    "  vol: {type: float, unit: mL, default: 100, limits: [20, 300]}\n"
    "  cycles: {type: int, default: 2, limits: [1, 4]}\n"
    "  irradiated: {type: bool, default: false}\n"
    "  hold: {type: duration, default: 1 h, limits: [10 min, 2 h]}\n"
    "  lot: {type: text, pattern: '[A-Z0-9-]+'}\n"
)


@functools.cache
def _procedure_with_parameters() -> object:
    loaded = parse_procedure(proc(WAIT, parameters=PARAMS), "p.yaml")
    assert loaded.problems == ()
    return loaded.procedure


def test_parameter_values_are_converted_and_defaults_fill_the_rest() -> None:
    procedure = _procedure_with_parameters()
    values = parse_parameter_values(
        procedure,  # type: ignore[arg-type]
        ["lot=LV-0042", "vol=250 mL", "cycles=3", "irradiated=yes", "hold=90 min"],
    )
    assert values == {
        "vol": 250.0,
        "cycles": 3,
        "irradiated": True,
        "hold": 5400.0,
        "lot": "LV-0042",
    }
    defaults = parse_parameter_values(procedure, ["lot=A1"])  # type: ignore[arg-type]
    assert defaults == {"vol": 100.0, "cycles": 2, "irradiated": False, "hold": 3600.0, "lot": "A1"}


@pytest.mark.parametrize(
    ("items", "where", "fragment"),
    [
        (["lot=A", "vol"], "--param vol", "expected name=value"),
        (
            ["lot=A", "volume=3"],
            "--param volume=3",
            "unknown parameter 'volume', did you mean 'vol'?",
        ),
        (["lot=A", "vol=lots"], "--param vol=lots", "parameter vol: expected a number, got 'lots'"),
        (["lot=A", "vol=nan"], "--param vol=nan", "expected a finite number"),
        (["lot=A", "vol=500"], "--param vol=500", "500 mL is outside the limits [20, 300] mL"),
        (["lot=A", "cycles=2.5"], "--param cycles=2.5", "expected a whole number"),
        (["lot=A", "irradiated=maybe"], "--param irradiated=maybe", "expected true or false"),
        (["lot=A", "hold=30"], "--param hold=30", "a bare number is ambiguous"),
        (["lot=A", "hold=3 h"], "--param hold=3 h", "3 h is outside the limits [10 min, 2 h]"),
        (["lot=a-1"], "--param lot=a-1", "'a-1' does not match the pattern '[A-Z0-9-]+'"),
        (["lot=A", "lot=B"], "--param lot=B", "parameter lot is given twice"),
        ([], "p.yaml:9:3", "parameter lot has no default: set it for this batch (--param lot=...)"),
    ],
)
def test_bad_parameter_values_say_what_is_wrong(
    items: list[str], where: str, fragment: str
) -> None:
    with pytest.raises(ProcedureError) as caught:
        parse_parameter_values(_procedure_with_parameters(), items)  # type: ignore[arg-type]
    (problem,) = caught.value.problems
    assert str(problem.where) == where
    assert fragment in problem.message


def test_every_parameter_problem_is_reported_at_once() -> None:
    with pytest.raises(ProcedureError) as caught:
        parse_parameter_values(
            _procedure_with_parameters(),  # type: ignore[arg-type]
            ["vol=1", "cycles=9", "x=1"],
        )
    assert len(caught.value.problems) == 4
    # without require_all a missing required parameter is not a problem
    assert "lot" not in parse_parameter_values(
        _procedure_with_parameters(),  # type: ignore[arg-type]
        [],
        require_all=False,
    )


# -- nothing but problems, whatever the document ---------------------------------------------------


@functools.cache
def _sim() -> Line:
    return shipped_line("sim")


KEYS = [
    "procedure", "version", "description", "line", "parameters", "unit_procedures", "name",
    "steps", "rules", "id", "command", "args", "wait_until", "timeout", "poll", "on_timeout",
    "wait", "prompt", "role", "meaning", "entry", "record", "unit", "set", "value", "every",
    "when", "type", "default", "limits", "pattern", "volume_ml", "program", "celsius",
    "interlocks", "band", "alarm", "low", "high", "delay", "codes", "suggest",
]  # fmt: skip
WORDS = [
    "thaw.start", "thaw.twin_load_bag", "bioreactor.temperature_sp", "bioreactor.perfuse",
    "=vol + 1", "=0 if bioreactor.sample_vcd < 2e6 else 500", "=(", "=a.value", "5 min", "0 s",
    "1 d 12 h", "30", "hold", "abort", "operator", "qa", "performed", "float", "int", "bool",
    "text", "duration", "sim", "thaw", "vol", "a", "b", "a.value", "thaw.thaw_complete",
    "thaw.thaw_complete and a.value > 1", "[A-Z", "^[A-Z]+$", "8.0e9", "", " ", "=", "é\u2028",
    "bioreactor.do", "bioreactor.status", "freezer", "OVERSHOOT", "DO_CRITICAL", "=a.value * 2",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), children, max_size=6
        ),
    ),
    max_leaves=40,
)
steps = st.lists(
    st.dictionaries(st.sampled_from(KEYS), st.one_of(scalars, documents), max_size=6), max_size=5
)
procedures = st.fixed_dictionaries(
    {"procedure": scalars, "version": scalars},
    optional={
        "line": st.sampled_from(["sim", "nope", "lines/x.yaml"]),
        "parameters": st.dictionaries(
            st.sampled_from(["vol", "a", "thaw", "bad-name"]),
            st.dictionaries(st.sampled_from(KEYS), scalars | documents, max_size=5),
            max_size=3,
        ),
        "unit_procedures": st.lists(
            st.fixed_dictionaries(
                {"name": scalars, "steps": steps}, optional={"rules": steps, "x": documents}
            ),
            max_size=3,
        ),
        "extra": documents,
    },
)


def _only_problems(text: str) -> None:
    loaded = parse_procedure(text, "p.yaml")
    assert all(isinstance(p, ConfigurationError) for p in loaded.problems)
    if loaded.procedure is not None:
        problems = validate_procedure(loaded.procedure, _sim(), skipped=loaded.skipped)
        assert all(isinstance(p, ConfigurationError) for p in problems)
        try:
            parse_parameter_values(loaded.procedure, ["vol=1", "a=x", "=", "b"])
        except ProcedureError as exc:
            assert exc.problems


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(procedures)
def test_random_procedure_shaped_documents_give_problems_not_exceptions(doc: object) -> None:
    _only_problems(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(documents)
def test_random_yaml_documents_give_problems_not_exceptions(doc: object) -> None:
    _only_problems(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_mangled_good_procedure_gives_problems_not_exceptions(data: st.DataObject) -> None:
    text = GOOD.read_text()
    for _ in range(data.draw(st.integers(1, 4))):
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, min(len(text), start + 12)))
        text = (
            text[:start]
            + data.draw(st.sampled_from(["", " ", "x", ":", "\n", '"', "="]))
            + text[end:]
        )
    _only_problems(text)


def test_the_example_in_the_language_documentation_is_valid(tmp_path: Path) -> None:
    from flexctl.procedure import model

    assert model.__doc__ is not None
    block = model.__doc__.split("Example::\n", 1)[1].split("\nTop-level keys", 1)[0]
    path = tmp_path / "example.yaml"
    path.write_text(textwrap.dedent(block))
    check = check_procedure(path)
    assert check.problems == ()
    assert check.procedure is not None
    assert {type(s).__name__ for s in check.procedure.steps()} == {
        "CommandStep",
        "WaitUntilStep",
        "PromptStep",
        "WaitStep",
        "RecordStep",
        "SetStep",
    }
