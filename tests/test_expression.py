"""Safe expressions: values, refusals with offsets, strict booleans, bounds, fuzzing."""

from __future__ import annotations

import ast
import builtins
import math
import string
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import flexctl.procedure.expression as expression_module
from flexctl.errors import FlexctlError, NotConnectedError
from flexctl.procedure.expression import (
    DEFAULT_FUNCTIONS,
    EvaluationError,
    Expression,
    ExpressionError,
    Function,
    compile_expression,
)
from flexctl.profile import Value

ENV: dict[str, Value] = {
    "bioreactor.sample_vcd": 1.2e7,
    "bioreactor.culture_day": 6,
    "expansion_days": 9,
    "apheresis_volume": 120.0,
    "isolation.output_cells": 4_000_000_000,
    "target_dose": 8.0e9,
    "freezer.program_state": "complete",
    "thaw.thaw_complete": True,
    "door_open": False,
    "count": 3,
    "label": "B-10",
    "zero": 0,
}


def lookup(name: str) -> Value:
    return ENV[name]


def janas(vcd: Any) -> Value:
    """A rule function: perfusion rate (mL/day) keyed to cell density."""
    if not isinstance(vcd, int | float) or isinstance(vcd, bool):
        raise TypeError("needs a cell density")
    if vcd < 0:
        raise ValueError("negative cell density")
    result: Value = 0 if vcd < 2e6 else 250 if vcd < 8e6 else 500
    return result


JANAS = {"janas": Function("janas", janas, 1, 1, "number")}


def evaluate(text: str, env: Mapping[str, Value] = ENV) -> Value:
    return compile_expression(text, functions=JANAS).evaluate(env.__getitem__)


GOOD: list[tuple[str, Value]] = [
    ("1", 1),
    ("1_000", 1000),
    ("1e9", 1e9),
    ("0.5", 0.5),
    (".5", 0.5),
    ("2.5E-3", 0.0025),
    ("'single'", "single"),
    ('"double"', "double"),
    ('"it\\"s \\\\ \\n"', 'it"s \\ \n'),
    ("true", True),
    ("False", False),
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("7 / 2", 3.5),
    ("6 / 3", 2.0),
    ("7 // 2", 3),
    ("-7 // 2", -4),
    ("7 % 3", 1),
    ("-7 % 3", 2),
    ("7.5 % 2", 1.5),
    ("2 ** 10", 1024),
    ("2 ** 3 ** 2", 512),
    ("-2 ** 2", -4),
    ("(-2) ** 2", 4),
    ("2 ** -1", 0.5),
    ("4 ** 0.5", 2.0),
    ("- - 3", 3),
    ("+3", 3),
    ("10 - 2 - 3", 5),
    ("100 / 10 / 5", 2.0),
    ("'a' + 'b'", "ab"),
    ("label + '-x'", "B-10-x"),
    ("apheresis_volume * 0.9", 108.0),
    ("janas(bioreactor.sample_vcd)", 500),
    ("janas(1e6)", 0),
    ("isolation.output_cells", 4_000_000_000),
    ("isolation.output_cells / target_dose", 0.5),
    ("bioreactor.sample_vcd >= 1e7 or bioreactor.culture_day >= expansion_days", True),
    ("bioreactor.sample_vcd >= 1e8 or bioreactor.culture_day >= expansion_days", False),
    ("thaw.thaw_complete and not door_open", True),
    ("freezer.program_state == 'complete'", True),
    ('freezer.program_state != "running"', True),
    ("true == false", False),
    ("1 == 1.0", True),
    ("1 < 2 <= 2 < 3", True),
    ("1 < 2 > 3", False),
    ("3 > 2 > 1", True),
    ("1 == 1 == 1", True),
    ("not 1 > 2", True),
    ("not not true", True),
    ("true or false and false", True),
    ("(true or false) and false", False),
    ("0 if bioreactor.sample_vcd < 2e6 else 500", 500),
    ("1 if false else 2 if true else 3", 2),
    ("'yes' if count > 2 else 'no'", "yes"),
    ("min(3, 1, 2)", 1),
    ("max(1, 2.5)", 2.5),
    ("min(1, 2,)", 1),
    ("abs(-4)", 4),
    ("abs(-0.25)", 0.25),
    ("round(2.5)", 3),
    ("round(-2.5)", -3),
    ("round(2.675, 2)", 2.68),
    ("round(1234, -2)", 1200),
    ("round(7, 2)", 7),
    ("round(1.26, 1)", 1.3),
    ("clamp(5, 0, 3)", 3),
    ("clamp(-1, 0, 3)", 0),
    ("clamp(1.5, 0, 3)", 1.5),
    ("min (1, 2)", 1),
    ("  1\n+\t2  ", 3),
    ("2 ** 63 + (2 ** 63 - 1)", 2**64 - 1),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_good_expressions(text: str, expected: Value) -> None:
    value = evaluate(text)
    assert value == expected
    assert type(value) is type(expected)


BAD: list[tuple[str, str, int]] = [
    ("", "empty expression", 0),
    ("   ", "empty expression", 0),
    ("1 +", "unexpected end of expression", 3),
    ("(1 + 2", "missing ')'", 6),
    ("min(1, 2", "missing ')'", 8),
    ("1 2", "expected an operator", 2),
    ("1)", "unmatched ')'", 1),
    ("1, 2", "only one expression", 1),
    ("(1, 2)", "tuples are not allowed", 2),
    ("()", "expected a value, found ')'", 1),
    ("__import__('os')", "unknown function '__import__'", 0),
    ("open('/etc/passwd')", "unknown function 'open'", 0),
    ("x + eval('1')", "unknown function 'eval'", 4),
    ("a.b()", "only plain function names can be called", 0),
    ("os.system('rm')", "only plain function names can be called", 0),
    ("x.__class__", "", -1),  # a dotted name: allowed, looked up as written
    ("round(1).real", "attribute access on a call is not allowed", 8),
    ("'a'.upper()", "attribute access is not allowed", 3),
    ("(a).b", "attribute access is not allowed", 3),
    ("a .b", "a dotted name cannot contain spaces", 2),
    ("a.", "expected a name after '.'", 2),
    ("a..b", "expected a name after '.'", 2),
    ("a.5", "expected a name after '.'", 2),
    ("a.if", "'if' is a reserved word", 2),
    ("x[0]", "subscripts are not allowed", 1),
    ("min(1, 2)[0]", "subscripts are not allowed", 9),
    ("[1, 2]", "lists are not allowed", 0),
    ("{1: 2}", "sets and dicts are not allowed", 0),
    ("lambda: 1", "lambda is not allowed", 0),
    ("[x for x in y]", "lists are not allowed", 0),
    ("(x for x in y)", "comprehensions are not allowed", 3),
    ("min(x for x in y)", "comprehensions are not allowed", 6),
    ("(a := 1)", "assignment expressions (:=) are not allowed", 3),
    ("f'{x}'", "f-strings", 0),
    ("b'x'", "string prefixes", 0),
    ("min(*a)", "starred arguments are not allowed", 4),
    ("max(1, **a)", "starred arguments are not allowed", 7),
    ("*a", "starred expressions are not allowed", 0),
    ("round(x, ndigits=2)", "keyword arguments are not allowed", 9),
    ("f(x)(y)", "unknown function 'f'", 0),
    ("(min)(1, 2)", "only functions can be called", 5),
    ("min(1)", "min() takes at least 2 arguments (1 given)", 0),
    ("abs()", "abs() takes 1 argument (0 given)", 0),
    ("abs(1, 2)", "abs() takes 1 argument (2 given)", 0),
    ("round(1, 2, 3)", "round() takes 1 to 2 arguments (3 given)", 0),
    ("clamp(1, 2)", "clamp() takes 3 arguments (2 given)", 0),
    ("janas()", "janas() takes 1 argument (0 given)", 0),
    ("x = 1", "compare with '=='", 2),
    ("a && b", "use 'and' instead of '&&'", 2),
    ("a || b", "use 'or' instead of '||'", 2),
    ("!a", "use 'not' instead of '!'", 0),
    ("a & b", "bitwise operators are not allowed", 2),
    ("a ^ 2", "a power is '**'", 2),
    ("~a", "bitwise operators are not allowed", 0),
    ("a AND b", "lower case: 'and'", 2),
    ("a is b", "'is' is not supported", 2),
    ("a in b", "'in' is not supported", 2),
    ("a not in b", "'not in' is not supported", 2),
    ("None", "None is not allowed", 0),
    ("import os", "'import' is a reserved word", 0),
    ("a; b", "only one expression is allowed", 1),
    ("a if b", "expected 'else'", 6),
    ("a if b c", "expected 'else', found 'c'", 7),
    ("'abc", "unterminated text", 0),
    ("x == 'abc\ndef'", "unterminated text", 5),
    ("'\\q'", "unknown escape", 1),
    ("$x", "unexpected character '$'", 0),
    ("x # comment", "unexpected character '#'", 2),
    ("µ", "unexpected character", 0),
    ("5.", "invalid number '5.'", 0),
    ("1.2.3", "invalid number '1.2.3'", 0),
    ("10min", "invalid number '10min'", 0),
    ("0x1f", "invalid number '0x1f'", 0),
    ("1e", "invalid number '1e'", 0),
    ("1__0", "invalid number", 0),
    ("007", "leading zeros are not allowed", 0),
    ("1e400", "number too large", 0),
    ("x + 18446744073709551616", "number too large", 4),
    ("'a' + 1", "cannot add text and number", 4),
    ("1 - 'a'", "cannot subtract text from number", 2),
    ("true * 2", "cannot multiply boolean and number", 5),
    ("true + x", "'+' cannot take a boolean", 5),
    ("-'a'", "cannot negate text", 0),
    ("'a' < 'b'", "compares numbers only", 4),
    ("'a' < x", "compares numbers only", 4),
    ("'a' == 1", "cannot compare text with number", 4),
    ("true != 1", "cannot compare boolean with number", 5),
    ("x and 3", "'and' needs true or false, not a number", 2),
    ("'a' or x", "'or' needs true or false, not text", 4),
    ("not 3", "'not' needs true or false, not a number", 0),
    ("1 if 2 else 3", "the condition of 'if' must be true or false", 2),
]


@pytest.mark.parametrize(("text", "fragment", "offset"), BAD)
def test_bad_expressions(text: str, fragment: str, offset: int) -> None:
    if offset < 0:
        compile_expression(text)
        return
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text, functions=JANAS)
    assert fragment in caught.value.message
    assert caught.value.offset == offset, caught.value.message
    assert caught.value.text == text
    assert isinstance(caught.value, ValueError)


def test_the_error_message_names_place_and_text() -> None:
    with pytest.raises(
        ExpressionError, match=r"subscripts are not allowed \(at offset 1 of 'x\[0\]'\)"
    ):
        compile_expression("x[0]")


def test_nesting_is_bounded() -> None:
    for text in (
        "(" * 200 + "1" + ")" * 200,
        "-" * 200 + "1",
        "not " * 200 + "x",
        "1" + " + 1" * 200,
    ):
        with pytest.raises(ExpressionError, match="nested more than"):
            compile_expression(text)
    compile_expression("(" * 20 + "1" + ")" * 20)
    compile_expression("1" + " + 1" * 40)


def test_length_is_bounded() -> None:
    with pytest.raises(ExpressionError, match="longer than"):
        compile_expression("x" * 10_001)


RUNTIME: list[tuple[str, dict[str, Value], str, int]] = [
    ("1 / zero", {"zero": 0}, "division by zero", 2),
    ("1 // zero", {"zero": 0}, "division by zero", 2),
    ("1.5 % zero", {"zero": 0.0}, "division by zero", 4),
    ("zero ** -1", {"zero": 0}, "division by zero", 5),
    ("x + 1", {"x": "a"}, "cannot add text and number ('a' + 1)", 2),
    ("x * 2", {"x": True}, "cannot multiply boolean and number", 2),
    ("x > 1", {"x": "a"}, "cannot compare text with number", 2),
    ("x == 1", {"x": "1"}, "cannot compare text with number", 2),
    ("x < y", {"x": "a", "y": "b"}, "'<' compares numbers only, not text", 2),
    ("x and true", {"x": 1}, "'and' needs true or false on both sides, not a number (1)", 2),
    ("true and x", {"x": "yes"}, "'and' needs true or false on both sides, not text", 5),
    ("x or true", {"x": 0}, "'or' needs true or false", 2),
    ("false or x", {"x": 2.5}, "'or' needs true or false", 6),
    ("not x", {"x": 1}, "'not' needs true or false, not a number", 0),
    ("1 if x else 2", {"x": 1}, "the condition of 'if' must be true or false", 2),
    ("-x", {"x": "a"}, "cannot negate text", 0),
    ("+x", {"x": False}, "unary '+' needs a number", 0),
    ("x ** 0.5", {"x": -4}, "fractional power is not real", 2),
    ("x * x", {"x": 1e200}, "result is too large", 2),
    ("x * x", {"x": 2**40}, "integer result is too large", 2),
    ("x - 1", {"x": -(2**64) + 1}, "integer result is too large", 2),
    ("x / 3", {"x": 10**400}, "result is too large", 2),
    ("missing + 1", {}, "unknown name 'missing'", 0),
    ("x + 1", {"x": math.nan}, "'x' is not a finite number (nan)", 0),
    ("x > 1", {"x": math.inf}, "not a finite number", 0),
    ("min(x, 1)", {"x": "a"}, "min(): needs numbers, not text ('a')", 0),
    ("round(x, 1.5)", {"x": 1}, "the number of digits must be a whole number", 0),
    ("round(x, 99)", {"x": 1.5}, "between -15 and 15", 0),
    ("round(x)", {"x": 1e300}, "integer result is too large", 0),
    ("clamp(x, 3, 1)", {"x": 2}, "the low limit 3 is above the high limit 1", 0),
    ("janas(x)", {"x": -1}, "janas(): negative cell density", 0),
    ("janas(x)", {"x": "a"}, "janas(): needs a cell density", 0),
]


@pytest.mark.parametrize(("text", "env", "fragment", "offset"), RUNTIME)
def test_evaluation_errors(text: str, env: dict[str, Value], fragment: str, offset: int) -> None:
    compiled = compile_expression(text, functions=JANAS)
    with pytest.raises(EvaluationError) as caught:
        compiled.evaluate(env.__getitem__)
    assert fragment in caught.value.message
    assert caught.value.offset == offset
    assert caught.value.text == text
    assert text in str(caught.value)
    assert isinstance(caught.value, FlexctlError)


def test_huge_powers_are_refused_quickly() -> None:
    refusals = {
        "9 ** 9 ** 9": "exponent too large",
        "2 ** 100000": "exponent too large",
        "10 ** 1000": "integer result is too large",
        "2 ** 64": "integer result is too large",
        "(2 ** 32) ** 2": "integer result is too large",
        "10.0 ** 400": "result is too large",
        "1.5 ** 1001": "exponent too large",
        "x ** x": "exponent too large",
    }
    started = time.perf_counter()
    for text, fragment in refusals.items():
        with pytest.raises(EvaluationError, match=fragment):
            compile_expression(text).evaluate({"x": 10**6}.__getitem__)
    print(f"\n{len(refusals)} huge powers refused in {time.perf_counter() - started:.6f} s")
    assert evaluate("2 ** 63 - 1 + 2 ** 63") == 2**64 - 1
    with pytest.raises(EvaluationError, match="beyond 64 bits"):  # every step is bounded
        evaluate("2 ** 63 * 2 - 1")


@given(st.integers(-(10**6), 10**6), st.integers(-(10**9), 10**9))
def test_any_integer_power_ends_fast_with_a_bounded_result(base: int, exponent: int) -> None:
    compiled = compile_expression("b ** e")
    try:
        value = compiled.evaluate({"b": base, "e": exponent}.__getitem__)
    except EvaluationError:
        return
    assert isinstance(value, int | float)
    assert abs(value) < 2**64


def test_short_circuit() -> None:
    assert evaluate("false and (1 / 0 > 1)") is False
    assert evaluate("true or (1 / 0 > 1)") is True
    assert evaluate("1 if true else 1 / 0") == 1
    assert evaluate("1 / 0 if false else 2") == 2
    assert evaluate("3 < 2 < 1 / 0") is False
    seen: list[str] = []

    def recording(name: str) -> Value:
        seen.append(name)
        return ENV[name]

    compile_expression("door_open and missing.signal").evaluate(recording)
    assert seen == ["door_open"]
    with pytest.raises(EvaluationError, match="division by zero"):
        evaluate("true and (1 / 0 > 1)")


def test_chained_comparisons_evaluate_each_operand_once() -> None:
    calls: list[str] = []

    def counting(name: str) -> Value:
        calls.append(name)
        return {"a": 1, "b": 2, "c": 3}[name]

    compiled = compile_expression("a < b <= c")
    assert compiled.evaluate(counting) is True
    assert calls == ["a", "b", "c"]
    assert compile_expression("a < b > c").evaluate(counting) is False
    assert compile_expression("c > b > a == 1").evaluate(counting) is True


def test_names_functions_and_kind() -> None:
    compiled = compile_expression(
        "janas(bioreactor.sample_vcd) if isolation.output_cells > min(target_dose, 1e9)"
        " else abs(x) + x",
        functions=JANAS,
    )
    assert compiled.names == {
        "bioreactor.sample_vcd",
        "isolation.output_cells",
        "target_dose",
        "x",
    }
    assert compiled.functions == {"janas", "min", "abs"}
    assert compiled.kind == "number"
    assert compile_expression("a > 1 and b").kind == "boolean"
    assert compile_expression("a").kind == "any"
    assert compile_expression("'a' + b").kind == "text"
    assert compile_expression("1 if c else 'a'").kind == "any"
    assert compile_expression("true").names == frozenset()
    assert str(compile_expression("a+1")) == "a+1"


def test_expressions_compare_by_text() -> None:
    assert compile_expression("a + 1") == compile_expression("a + 1")
    assert compile_expression("a + 1") != compile_expression("a+1")
    assert isinstance(compile_expression("1"), Expression)


def test_evaluate_bool() -> None:
    assert compile_expression("count > 2").evaluate_bool(lookup) is True
    with pytest.raises(EvaluationError, match="a condition must be true or false, not a number"):
        compile_expression("count").evaluate_bool(lookup)


def test_lookup_failures() -> None:
    compiled = compile_expression("bioreactor.sample_vcd > 1")
    empty: dict[str, Value] = {}
    with pytest.raises(EvaluationError, match=r"unknown name 'bioreactor\.sample_vcd'") as caught:
        compiled.evaluate(empty.__getitem__)
    assert isinstance(caught.value.__cause__, KeyError)

    def lost(name: str) -> Value:
        raise NotConnectedError("bioreactor", "link down")

    with pytest.raises(NotConnectedError):  # a lost device is not an expression problem
        compiled.evaluate(lost)

    def odd(name: str) -> Any:
        return [1]

    with pytest.raises(EvaluationError, match="gave no usable value"):
        compiled.evaluate(odd)


def test_values_from_subclasses_are_normalised() -> None:
    class Reading(float):
        pass

    class Flag(int):
        pass

    assert compile_expression("x * 2").evaluate({"x": Reading(1.5)}.__getitem__) == 3.0
    value = compile_expression("x + 1").evaluate({"x": Flag(1)}.__getitem__)
    assert value == 2
    assert type(value) is int


def test_functions_extend_and_override_defaults() -> None:
    assert set(DEFAULT_FUNCTIONS) == {"min", "max", "abs", "round", "clamp"}
    with pytest.raises(TypeError):
        DEFAULT_FUNCTIONS["x"] = DEFAULT_FUNCTIONS["min"]  # type: ignore[index]
    with pytest.raises(ExpressionError, match="unknown function 'janas'"):
        compile_expression("janas(1)")

    def twice_min(*xs: Any) -> Value:
        result: Value = 2 * min(xs)
        return result

    doubled = Function("min", twice_min, 1, None)
    assert compile_expression("min(3)", functions={"min": doubled}).evaluate(lookup) == 6
    assert (
        compile_expression("min(3, 4) + abs(-1)", functions={"min": doubled}).evaluate(lookup) == 7
    )
    with pytest.raises(ValueError, match="registered as"):
        compile_expression("1", functions={"other": doubled})
    bad_definitions: list[dict[str, Any]] = [
        {"name": "a.b"},
        {"name": "if"},
        {"min_args": 2, "max_args": 1},
        {"min_args": -1},
        {"returns": "list"},
    ]
    for bad in bad_definitions:
        with pytest.raises(ValueError):
            Function(**{"name": "f", "func": janas, **bad})


def test_function_results_are_checked() -> None:
    def gives(value: Any) -> Function:
        return Function("f", lambda: value, 0, 0)

    for value, fragment in (
        (None, "gave no usable value"),
        (math.inf, "not a finite number"),
        (2**70, "integer result is too large"),
    ):
        with pytest.raises(EvaluationError, match=fragment):
            compile_expression("f()", functions={"f": gives(value)}).evaluate(lookup)
    assert compile_expression("f()", functions={"f": gives("ok")}).evaluate(lookup) == "ok"

    def raises_flexctl() -> Value:
        raise NotConnectedError("thaw", "gone")

    with pytest.raises(NotConnectedError):
        compile_expression("f()", functions={"f": Function("f", raises_flexctl, 0, 0)}).evaluate(
            lookup
        )


def test_no_eval_exec_or_compile_in_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    source = Path(expression_module.__file__).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"eval", "exec", "compile", "__import__"}

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval, exec or compile called")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    assert evaluate("min(count, 2) ** 2 + (1 if door_open else 0)") == 4


def test_evaluation_is_fast() -> None:
    """Compile once, evaluate many times: prints the cost, asserts nothing about it."""
    cases = {
        "condition": "bioreactor.sample_vcd >= 1e7 or bioreactor.culture_day >= expansion_days",
        "argument": "apheresis_volume * 0.9",
        "rule": "janas(bioreactor.sample_vcd)",
        "ternary": "0 if bioreactor.sample_vcd < 2e6 else 500",
    }
    env = dict(ENV)
    env["bioreactor.sample_vcd"] = 5e6  # the condition evaluates both sides
    get = env.__getitem__
    lines = []
    for label, text in cases.items():
        compiled = compile_expression(text, functions=JANAS)
        rounds = 20_000
        started = time.perf_counter()
        for _ in range(rounds):
            compiled.evaluate(get)
        elapsed = time.perf_counter() - started
        lines.append(f"{label}: {elapsed / rounds * 1e6:.2f} us")
    started = time.perf_counter()
    for _ in range(1000):
        compile_expression(cases["condition"])
    lines.append(f"compile condition: {(time.perf_counter() - started) / 1000 * 1e6:.1f} us")
    print("\nexpression evaluation: " + "; ".join(lines))


# ---------------------------------------------------------------- generated expressions
#
# Each strategy draws the text and its value together; the value comes from
# Python's integer arithmetic in the strategy, not from the evaluator. None
# means the evaluation must fail (division by zero, a result beyond 64 bits).

TERNARY, OR, AND, NOT, CMP, SUM, TERM, UNARY, POWER, ATOM = range(10)
LIMIT = 2**64


class Gen(NamedTuple):
    text: str
    value: int | bool | None
    prec: int
    depth: int


def paren(gen: Gen, needed: bool) -> str:
    return f"({gen.text})" if needed else gen.text


def bounded(value: int) -> int | None:
    return value if abs(value) < LIMIT else None


ARITH: dict[str, tuple[int, Callable[[int, int], int | None]]] = {
    "+": (SUM, lambda a, b: bounded(a + b)),
    "-": (SUM, lambda a, b: bounded(a - b)),
    "*": (TERM, lambda a, b: bounded(a * b)),
    "//": (TERM, lambda a, b: None if b == 0 else bounded(a // b)),
    "%": (TERM, lambda a, b: None if b == 0 else bounded(a % b)),
}
COMPARE: dict[str, Callable[[int, int], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
spaces = st.sampled_from(["", " ", "  "])
int_leaves = st.integers(0, 20).map(lambda n: Gen(str(n), n, ATOM, 1))


@st.composite
def arithmetic(draw: st.DrawFn, children: st.SearchStrategy[Gen]) -> Gen:
    symbol = draw(st.sampled_from(sorted(ARITH)))
    prec, apply = ARITH[symbol]
    left, right = draw(children), draw(children)
    extra = draw(st.booleans())
    value = None if left.value is None or right.value is None else apply(left.value, right.value)
    sp = draw(spaces)
    left_text = paren(left, left.prec < prec or extra)
    text = f"{left_text}{sp}{symbol}{sp}{paren(right, right.prec <= prec)}"
    return Gen(text, value, prec, 1 + max(left.depth, right.depth))


@st.composite
def unary(draw: st.DrawFn, children: st.SearchStrategy[Gen]) -> Gen:
    symbol = draw(st.sampled_from(["-", "+"]))
    child = draw(children)
    value = child.value
    if value is not None and symbol == "-":
        value = -value
    return Gen(f"{symbol}{paren(child, child.prec < UNARY)}", value, UNARY, child.depth + 1)


@st.composite
def power(draw: st.DrawFn, children: st.SearchStrategy[Gen]) -> Gen:
    base = draw(children)
    exponent = draw(st.integers(0, 3))
    value = None if base.value is None else bounded(base.value**exponent)
    return Gen(f"{paren(base, base.prec <= POWER)}**{exponent}", value, POWER, base.depth + 1)


@st.composite
def comparison(draw: st.DrawFn, operands: st.SearchStrategy[Gen]) -> Gen:
    """A comparison or a chain; the reference stops at the first false link, as it must."""
    first = draw(operands)
    links = draw(
        st.lists(st.tuples(st.sampled_from(sorted(COMPARE)), operands), min_size=1, max_size=3)
    )
    text = paren(first, first.prec <= CMP)
    value: bool | None = True
    left = first.value
    if left is None:
        value = None
    for symbol, right in links:
        text += f" {symbol} {paren(right, right.prec <= CMP)}"
        if value is True:
            if right.value is None:
                value = None
            else:
                assert left is not None
                value = COMPARE[symbol](left, right.value)
                left = right.value
    depth = 1 + max(first.depth, *(right.depth for _, right in links))
    return Gen(text, value, CMP, depth)


@st.composite
def ternary(draw: st.DrawFn, children: st.SearchStrategy[Gen]) -> Gen:
    body, orelse = draw(children), draw(children)
    condition = draw(comparison(children))
    value = None if condition.value is None else body.value if condition.value else orelse.value
    test = paren(condition, condition.prec <= TERNARY)
    text = f"{paren(body, body.prec <= TERNARY)} if {test} else {orelse.text}"
    return Gen(text, value, TERNARY, 1 + max(body.depth, condition.depth, orelse.depth))


integer_expressions = st.recursive(
    int_leaves,
    lambda children: st.one_of(
        arithmetic(children), unary(children), power(children), ternary(children)
    ),
    max_leaves=12,
)


@st.composite
def logic(draw: st.DrawFn, children: st.SearchStrategy[Gen]) -> Gen:
    if draw(st.booleans()):
        child = draw(children)
        negated = None if child.value is None else not child.value
        return Gen(f"not {paren(child, child.prec < NOT)}", negated, NOT, child.depth + 1)
    symbol = draw(st.sampled_from(["and", "or"]))
    prec = AND if symbol == "and" else OR
    left, right = draw(children), draw(children)
    value: int | bool | None
    if left.value is None:
        value = None
    elif symbol == "and":
        value = right.value if left.value else False
    else:
        value = True if left.value else right.value
    text = f"{paren(left, left.prec < prec)} {symbol} {paren(right, right.prec <= prec)}"
    return Gen(text, value, prec, 1 + max(left.depth, right.depth))


bool_leaves = st.one_of(
    st.sampled_from([Gen("true", True, ATOM, 1), Gen("false", False, ATOM, 1)]),
    comparison(integer_expressions),
)
boolean_expressions = st.recursive(bool_leaves, logic, max_leaves=6)


def check_generated(gen: Gen) -> None:
    assume(gen.depth <= 40)
    compiled = compile_expression(gen.text)
    if gen.value is None:
        with pytest.raises(EvaluationError):
            compiled.evaluate(lookup)
        return
    value = compiled.evaluate(lookup)
    assert value == gen.value, gen.text
    assert type(value) is type(gen.value), gen.text


@given(integer_expressions)
@example(Gen("2**3**2", 512, POWER, 2))
@example(Gen("-2**2", -4, UNARY, 2))
@example(Gen("7 - 2 - 1", 4, SUM, 2))
@example(Gen("(7) // -2", -4, TERM, 2))
def test_generated_integer_arithmetic(gen: Gen) -> None:
    check_generated(gen)


@given(boolean_expressions)
@example(Gen("false and 1 // 0 > 1", False, AND, 3))
@example(Gen("not 1 < 2 or 2 > 1", True, OR, 3))
def test_generated_conditions(gen: Gen) -> None:
    check_generated(gen)


# ---------------------------------------------------------------- fuzzing

TOKENS = [
    *("a", "b.c", "d.e.f", "unknown", "s", "flag", "1", "0", "2.5", "1e308", "20", "'x'", '"y"'),
    *("true", "false", "+", "-", "*", "/", "//", "%", "**", "<", "<=", "==", "!=", ">", ">="),
    *("and", "or", "not", "if", "else", "(", "(", ")", ")", ",", "min", "max", "abs", "round"),
    *("clamp", "janas", "boom", "[", "]", ".", "=", "lambda", "for", "in", ":", "'", "_", "e"),
]
ATOMS = ["a", "b.c", "s", "flag", "unknown.x", "0", "1", "2.5", "1e308", "'x'", "true", "false"]
OPERATORS = [*ARITH, "/", "**", *COMPARE, "and", "or"]
FUNCTION_NAMES = ["min", "max", "abs", "round", "clamp", "janas", "boom"]


def well_formed_steps(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(OPERATORS), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(st.sampled_from(["-", "+", "not "]), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(FUNCTION_NAMES), st.lists(children, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
    )


# Syntactically valid, with every kind of value mixed: exercises evaluation errors.
well_formed = st.recursive(st.sampled_from(ATOMS), well_formed_steps, max_leaves=10)
texts = st.one_of(
    well_formed,
    st.text(max_size=40),
    st.text(alphabet=string.printable, max_size=40),
    st.lists(st.sampled_from(TOKENS), max_size=25).flatmap(
        lambda parts: st.sampled_from([" ", ""]).map(lambda sep: sep.join(parts))
    ),
)


def fuzz_lookup(name: str) -> Value:
    if name.startswith("u"):
        raise KeyError(name)
    code = sum(map(ord, name))
    choices: tuple[Value, ...] = (code % 7, code / 3, "t" + name, code % 2 == 0, 0, 0.0)
    return choices[code % len(choices)]


def boom(*args: Any) -> Value:
    raise ArithmeticError("boom")


FUZZ_FUNCTIONS = {**JANAS, "boom": Function("boom", boom, 0, None)}


@settings(max_examples=400)
@given(texts)
@example("9**9**9")
@example("(" * 60 + "1" + ")" * 60)
@example("round(1e308, 15)")
@example("round(1e308 * 10)")
@example("clamp(a, b.c, d.e.f)")
@example("s + s if flag else a")
def test_random_text_raises_only_expression_errors(text: str) -> None:
    try:
        compiled = compile_expression(text, functions=FUZZ_FUNCTIONS)
    except ExpressionError as exc:
        assert 0 <= exc.offset <= len(text)
        assert exc.message
        return
    try:
        value = compiled.evaluate(fuzz_lookup)
    except EvaluationError as exc:
        assert exc.message
        return
    assert isinstance(value, bool | int | float | str)
    if isinstance(value, float):
        assert math.isfinite(value)
