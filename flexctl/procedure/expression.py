"""Safe expressions for procedure conditions and arguments.

A hand-written tokenizer and recursive-descent parser turn the text into a tree
of small closures once; evaluation walks that tree. Nothing ever passes user
text to Python's ``eval``, ``exec`` or ``compile``.

Grammar (Python-like; lowest precedence first)::

    expression := or_expr ["if" or_expr "else" expression]
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)*  # chains: a < b <= c
    sum        := term (("+" | "-") term)*
    term       := factor (("*" | "/" | "//" | "%") factor)*
    factor     := ("-" | "+") factor | power
    power      := primary ["**" factor]                             # -2 ** 2 == -4
    primary    := number | text | "true" | "false" | name
                | function "(" [expression ("," expression)* [","]] ")" | "(" expression ")"
    name       := identifier ("." identifier)*                       # no spaces: device.signal

Numbers are ``12``, ``1_000``, ``0.5``, ``.5``, ``1e7``; text is single- or
double-quoted with the escapes ``\\\\ \\' \\" \\n \\t``; ``true``/``false`` may
also be written ``True``/``False``. Functions are called by plain name only:
``min``, ``max`` (two or more arguments), ``abs``, ``round(x[, digits])``
(halves away from zero, on the decimal number as written: ``round(2.675, 2)``
is 2.68) and ``clamp(x, low, high)``, plus any the caller adds.

Values are numbers, text and booleans, with strict rules (a GMP condition says
what it means):

- ``and``, ``or``, ``not`` and the condition of ``if`` take booleans only:
  ``x and 3`` or ``not count`` is an error, never "truthy". ``and``/``or``
  short-circuit: ``false and (1 / 0 > 1)`` is false.
- Arithmetic takes numbers (``+`` also joins two texts); booleans are not
  numbers. ``/`` always gives a float; ``//`` and ``%`` follow Python (floor).
- ``<  <= > >=`` compare numbers; ``==`` and ``!=`` compare two values of the
  same kind (number, text or boolean). Comparing text with a number is an error.
- Results stay finite and integers within ±(2**64 - 1); an exponent beyond
  ±1000 is refused, so ``9 ** 9 ** 9`` fails at once instead of hanging.

Mistakes visible in the text (``"a" + 1``, ``x and 3``) are refused at compile
time with :class:`ExpressionError`; the rest raise :class:`EvaluationError`
when evaluated.
"""

from __future__ import annotations

import keyword
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Context, Decimal
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeAlias

from flexctl.errors import FlexctlError
from flexctl.profile import Value

__all__ = [
    "ANY",
    "BOOLEAN",
    "DEFAULT_FUNCTIONS",
    "NUMBER",
    "TEXT",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "Function",
    "Lookup",
    "compile_expression",
]

Lookup: TypeAlias = Callable[[str], Value]
"""Gives the value of a name; raises a LookupError (KeyError) for an unknown one."""

_Run: TypeAlias = Callable[[Lookup], Value]
_Op: TypeAlias = Callable[[Any, Any, int], Value]

MAX_LENGTH: Final = 10_000
MAX_DEPTH: Final = 50
MAX_EXPONENT: Final = 1_000
INT_LIMIT: Final = 2**64

# Kinds of value, known at compile time where the text shows them.
NUMBER: Final = "number"
TEXT: Final = "text"
BOOLEAN: Final = "boolean"
ANY: Final = "any"
_KINDS: Final = frozenset({NUMBER, TEXT, BOOLEAN, ANY})
_PHRASE: Final = {NUMBER: "a number", TEXT: "text", BOOLEAN: "a boolean", ANY: "a value"}

_NUM: Final = frozenset({int, float})
_KEYWORDS: Final = frozenset(keyword.kwlist) | {"true", "false"}
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ExpressionError(ValueError):
    """The text is not a valid expression; ``offset`` is the 0-based character at fault."""

    def __init__(self, message: str, offset: int, text: str = "") -> None:
        self.message = message
        self.offset = offset
        self.text = text
        where = f"at offset {offset} of {text!r}" if text else f"at offset {offset}"
        super().__init__(f"{message} ({where})")


class EvaluationError(FlexctlError):
    """Evaluating a valid expression failed (division by zero, kinds that do not mix ...)."""

    def __init__(self, text: str, message: str, offset: int = 0) -> None:
        self.text = text
        self.message = message
        self.offset = offset
        super().__init__(f"{message} in {text!r}")


class _Fail(Exception):
    """Raised inside the evaluation tree; Expression.evaluate adds the text."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# ---------------------------------------------------------------- functions


@dataclass(frozen=True)
class Function:
    """A function expressions may call; arity is checked when an expression is compiled.

    ``func`` gets the evaluated arguments (numbers, text, booleans) and returns
    one. It reports a bad argument by raising ValueError, TypeError or an
    ArithmeticError, which becomes an EvaluationError naming the function;
    errors of flexctl's own tree pass through unchanged. ``max_args`` None means
    any number. ``returns`` is the kind of the result when it is always the same
    (``"number"``, ``"text"``, ``"boolean"``), else ``"any"``.
    """

    name: str
    func: Callable[..., Value]
    min_args: int = 1
    max_args: int | None = 1
    returns: str = ANY

    def __post_init__(self) -> None:
        if not _IDENTIFIER.fullmatch(self.name) or self.name in _KEYWORDS:
            raise ValueError(f"function name {self.name!r} is not a plain identifier")
        if self.min_args < 0 or (self.max_args is not None and self.max_args < self.min_args):
            raise ValueError(f"function {self.name}: bad arity {self.min_args}..{self.max_args}")
        if self.returns not in _KINDS:
            raise ValueError(f"function {self.name}: returns must be one of {sorted(_KINDS)}")

    def arity(self) -> str:
        """How many arguments it takes, in words."""
        low, high = self.min_args, self.max_args
        if high == low:
            return f"{low} argument{'' if low == 1 else 's'}"
        if high is None:
            return f"at least {low} argument{'' if low == 1 else 's'}"
        return f"{low} to {high} arguments"


def _need_numbers(*args: Any) -> None:
    for arg in args:
        if type(arg) not in _NUM:
            raise TypeError(f"needs numbers, not {_describe(arg)}")


def _min(*args: Any) -> Value:
    _need_numbers(*args)
    result: Value = min(args)
    return result


def _max(*args: Any) -> Value:
    _need_numbers(*args)
    result: Value = max(args)
    return result


def _abs(x: Any) -> Value:
    _need_numbers(x)
    result: Value = abs(x)
    return result


_ROUNDING: Final = Context(prec=400, rounding=ROUND_HALF_UP)


def _round(x: Any, digits: Any = None) -> Value:
    _need_numbers(x)
    places = 0
    if digits is not None:
        if type(digits) is not int:
            raise TypeError(f"the number of digits must be a whole number, not {_describe(digits)}")
        if abs(digits) > 15:
            raise ValueError(f"the number of digits must be between -15 and 15, not {digits}")
        places = digits
    if type(x) is int and places >= 0:
        return x
    exact = Decimal(repr(x)) if type(x) is float else Decimal(x)
    rounded = exact.quantize(Decimal(1).scaleb(-places), context=_ROUNDING)
    if digits is None or type(x) is int:
        return int(rounded)
    return float(rounded)


def _clamp(x: Any, low: Any, high: Any) -> Value:
    _need_numbers(x, low, high)
    if low > high:
        raise ValueError(f"the low limit {low!r} is above the high limit {high!r}")
    result: Value = low if x < low else high if x > high else x
    return result


DEFAULT_FUNCTIONS: Final[Mapping[str, Function]] = MappingProxyType(
    {
        fn.name: fn
        for fn in (
            Function("min", _min, 2, None, NUMBER),
            Function("max", _max, 2, None, NUMBER),
            Function("abs", _abs, 1, 1, NUMBER),
            Function("round", _round, 1, 2, NUMBER),
            Function("clamp", _clamp, 3, 3, NUMBER),
        )
    }
)


# ---------------------------------------------------------------- the compiled form


@dataclass(frozen=True)
class Expression:
    """A compiled expression: compile once, evaluate many times.

    ``names`` holds every name the text refers to (dotted as written, also in
    branches that may not run); ``functions`` the functions it calls; ``kind``
    the kind of its result when the text shows it (``"boolean"`` for a
    comparison), else ``"any"``.
    """

    text: str
    names: frozenset[str]
    functions: frozenset[str]
    kind: str
    _run: _Run = field(repr=False, compare=False)

    def evaluate(self, lookup: Lookup) -> Value:
        """The value, with names resolved by ``lookup``.

        A LookupError from ``lookup`` becomes EvaluationError("unknown name ...");
        anything else it raises (a lost device, a timeout) passes through.
        """
        try:
            return self._run(lookup)
        except _Fail as fail:
            raise EvaluationError(self.text, fail.message, fail.offset) from fail.__cause__

    def evaluate_bool(self, lookup: Lookup) -> bool:
        """The value of a condition: an EvaluationError unless it is true or false."""
        value = self.evaluate(lookup)
        if isinstance(value, bool):
            return value
        raise EvaluationError(
            self.text, f"a condition must be true or false, not {_describe(value)}"
        )

    def __str__(self) -> str:
        return self.text


def compile_expression(text: str, *, functions: Mapping[str, Function] | None = None) -> Expression:
    """Parse and check ``text``; raise ExpressionError saying what and where.

    ``functions`` are added to (and may replace) DEFAULT_FUNCTIONS.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be text, not {type(text).__name__}", 0)
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH, "")
    table = dict(DEFAULT_FUNCTIONS)
    for key, function in (functions or {}).items():
        if key != function.name:
            raise ValueError(f"function registered as {key!r} is named {function.name!r}")
        table[key] = function
    parser = _Parser(text, table)
    part = parser.parse_top()
    return Expression(
        text=text,
        names=frozenset(parser.names),
        functions=frozenset(parser.called),
        kind=part.kind,
        _run=part.run,
    )


# ---------------------------------------------------------------- values and messages


def _kind(value: object) -> str:
    if type(value) is bool:
        return BOOLEAN
    if type(value) is str:
        return TEXT
    return NUMBER


def _repr(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _describe(value: object) -> str:
    return f"{_PHRASE[_kind(value)]} ({_repr(value)})"


def _show(left: object, symbol: str, right: object) -> str:
    return f"{_repr(left)} {symbol} {_repr(right)}"


def _arith_message(symbol: str, left: str, right: str) -> str:
    if symbol == "+":
        return f"cannot add {left} and {right}"
    if symbol == "-":
        return f"cannot subtract {right} from {left}"
    if symbol == "*":
        return f"cannot multiply {left} and {right}"
    if symbol in ("/", "//"):
        return f"cannot divide {left} by {right}"
    if symbol == "**":
        return f"cannot raise {left} to the power of {right}"
    return f"cannot apply '{symbol}' to {left} and {right}"


def _compare_message(symbol: str, left: str, right: str) -> str:
    if left != right:
        return f"cannot compare {left} with {right}"
    return f"'{symbol}' compares numbers only, not {left} (use == or !=)"


def _accept(value: object, what: str, offset: int) -> Value:
    """A value from outside (a lookup, a function) as one of the four kinds."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        raise _Fail(f"{what} is not a finite number ({value!r})", offset)
    if isinstance(value, str):
        return str(value)
    raise _Fail(f"{what} gave no usable value ({type(value).__name__})", offset)


def _checked(result: Any, offset: int) -> Value:
    """An arithmetic result, refused when it is not finite or too large."""
    if type(result) is float:
        if math.isfinite(result):
            return result
        if math.isnan(result):
            raise _Fail("result is not a number", offset)
        raise _Fail("result is too large", offset)
    if -INT_LIMIT < result < INT_LIMIT:
        value: Value = result
        return value
    raise _Fail("integer result is too large (beyond 64 bits)", offset)


# ---------------------------------------------------------------- operators


def _numeric(symbol: str, apply: Callable[[Any, Any], Any], divides: bool = False) -> _Op:
    def op(a: Any, b: Any, offset: int) -> Value:
        if type(a) in _NUM and type(b) in _NUM:
            if divides and b == 0:
                raise _Fail("division by zero", offset)
            try:
                result = apply(a, b)
            except OverflowError:
                raise _Fail("result is too large", offset) from None
            return _checked(result, offset)
        raise _Fail(f"{_arith_message(symbol, _kind(a), _kind(b))} ({_show(a, symbol, b)})", offset)

    return op


def _add(a: Any, b: Any, offset: int) -> Value:
    if type(a) in _NUM and type(b) in _NUM:
        try:
            return _checked(a + b, offset)
        except OverflowError:
            raise _Fail("result is too large", offset) from None
    if type(a) is str and type(b) is str:
        text: str = a + b
        return text
    raise _Fail(f"{_arith_message('+', _kind(a), _kind(b))} ({_show(a, '+', b)})", offset)


def _power(a: Any, b: Any, offset: int) -> Value:
    if type(a) not in _NUM or type(b) not in _NUM:
        raise _Fail(f"{_arith_message('**', _kind(a), _kind(b))} ({_show(a, '**', b)})", offset)
    if abs(b) > MAX_EXPONENT:
        raise _Fail(f"exponent too large ({b!r}; at most {MAX_EXPONENT})", offset)
    if type(a) is int and type(b) is int and b >= 0:
        if abs(a) > 1 and (abs(a).bit_length() - 1) * b >= 64:
            raise _Fail("integer result is too large (beyond 64 bits)", offset)
        return _checked(a**b, offset)
    if a == 0 and b < 0:
        raise _Fail("division by zero (0 to a negative power)", offset)
    try:
        result = math.pow(a, b)
    except OverflowError:
        raise _Fail("result is too large", offset) from None
    except ValueError:
        raise _Fail("a negative number to a fractional power is not real", offset) from None
    return _checked(result, offset)


_ARITHMETIC: Final[dict[str, _Op]] = {
    "+": _add,
    "-": _numeric("-", operator.sub),
    "*": _numeric("*", operator.mul),
    "/": _numeric("/", operator.truediv, divides=True),
    "//": _numeric("//", operator.floordiv, divides=True),
    "%": _numeric("%", operator.mod, divides=True),
    "**": _power,
}


def _ordering(symbol: str, compare: Callable[[Any, Any], bool]) -> _Op:
    def op(a: Any, b: Any, offset: int) -> Value:
        if type(a) in _NUM and type(b) in _NUM:
            return compare(a, b)
        raise _Fail(
            f"{_compare_message(symbol, _kind(a), _kind(b))} ({_show(a, symbol, b)})", offset
        )

    return op


def _equality(symbol: str, compare: Callable[[Any, Any], bool]) -> _Op:
    def op(a: Any, b: Any, offset: int) -> Value:
        ta = type(a)
        tb = type(b)
        if ta is tb or (ta in _NUM and tb in _NUM):
            return compare(a, b)
        raise _Fail(f"cannot compare {_kind(a)} with {_kind(b)} ({_show(a, symbol, b)})", offset)

    return op


_COMPARISONS: Final[dict[str, _Op]] = {
    "<": _ordering("<", operator.lt),
    "<=": _ordering("<=", operator.le),
    ">": _ordering(">", operator.gt),
    ">=": _ordering(">=", operator.ge),
    "==": _equality("==", operator.eq),
    "!=": _equality("!=", operator.ne),
}


# ---------------------------------------------------------------- tree builders


def _const(value: Value) -> _Run:
    def run(lookup: Lookup) -> Value:
        return value

    return run


def _name(name: str, offset: int) -> _Run:
    def run(lookup: Lookup) -> Value:
        try:
            value = lookup(name)
        except LookupError as exc:
            raise _Fail(f"unknown name '{name}'", offset) from exc
        if type(value) is float:
            if math.isfinite(value):
                return value
        elif type(value) is int or type(value) is str or type(value) is bool:
            return value
        return _accept(value, f"'{name}'", offset)

    return run


def _binary(op: _Op, left: _Run, right: _Run, offset: int) -> _Run:
    def run(lookup: Lookup) -> Value:
        return op(left(lookup), right(lookup), offset)

    return run


def _chain(first: _Run, rest: list[tuple[_Op, _Run, int]]) -> _Run:
    def run(lookup: Lookup) -> Value:
        left = first(lookup)
        for op, right_run, offset in rest:
            right = right_run(lookup)
            if not op(left, right, offset):
                return False
            left = right
        return True

    return run


def _negate(operand: _Run, offset: int) -> _Run:
    def run(lookup: Lookup) -> Value:
        value: Any = operand(lookup)
        if type(value) in _NUM:
            result: Value = -value
            return result
        raise _Fail(f"cannot negate {_describe(value)}", offset)

    return run


def _plus(operand: _Run, offset: int) -> _Run:
    def run(lookup: Lookup) -> Value:
        value = operand(lookup)
        if type(value) in _NUM:
            return value
        raise _Fail(f"unary '+' needs a number, not {_describe(value)}", offset)

    return run


def _not(operand: _Run, offset: int) -> _Run:
    def run(lookup: Lookup) -> Value:
        value = operand(lookup)
        if value is True:
            return False
        if value is False:
            return True
        raise _Fail(f"'not' needs true or false, not {_describe(value)}", offset)

    return run


def _and(left: _Run, right: _Run, offset: int) -> _Run:
    def run(lookup: Lookup) -> Value:
        a = left(lookup)
        if a is False:
            return False
        if a is not True:
            raise _Fail(f"'and' needs true or false on both sides, not {_describe(a)}", offset)
        b = right(lookup)
        if b is True or b is False:
            return b
        raise _Fail(f"'and' needs true or false on both sides, not {_describe(b)}", offset)

    return run


def _or(left: _Run, right: _Run, offset: int) -> _Run:
    def run(lookup: Lookup) -> Value:
        a = left(lookup)
        if a is True:
            return True
        if a is not False:
            raise _Fail(f"'or' needs true or false on both sides, not {_describe(a)}", offset)
        b = right(lookup)
        if b is True or b is False:
            return b
        raise _Fail(f"'or' needs true or false on both sides, not {_describe(b)}", offset)

    return run


def _conditional(body: _Run, condition: _Run, orelse: _Run, offset: int) -> _Run:
    def run(lookup: Lookup) -> Value:
        test = condition(lookup)
        if test is True:
            return body(lookup)
        if test is False:
            return orelse(lookup)
        raise _Fail(f"the condition of 'if' must be true or false, not {_describe(test)}", offset)

    return run


def _call(function: Function, args: list[_Run], offset: int) -> _Run:
    func = function.func
    what = f"{function.name}()"

    def run(lookup: Lookup) -> Value:
        values = [arg(lookup) for arg in args]
        try:
            result = func(*values)
        except FlexctlError:
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise _Fail(f"{what}: {exc}", offset) from exc
        value = _accept(result, what, offset)
        return _checked(value, offset) if type(value) in _NUM else value

    return run


# ---------------------------------------------------------------- tokenizer


class _Token(NamedTuple):
    kind: str  # number, text, name, keyword, op, end
    text: str
    offset: int
    value: Value = ""


_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_NUMBER_TOKEN: Final = re.compile(
    r"(?:[0-9](?:_?[0-9])*(?:\.[0-9](?:_?[0-9])*)?|\.[0-9](?:_?[0-9])*)(?:[eE][+-]?[0-9](?:_?[0-9])*)?"
)
_STRING_PREFIX: Final = re.compile(r"[bfruBFRU]{1,2}")
_OPERATORS: Final = (
    *("**", "//", "<=", ">=", "==", "!=", ":=", "&&", "||", "<<", ">>"),
    *("+", "-", "*", "/", "%", "<", ">", "(", ")", ",", ".", "[", "]", "{", "}"),
    *("=", ":", "!", "&", "|", "^", "~", ";", "@"),
)
_ESCAPES: Final = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}
_SPACE: Final = " \t\r\n"


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    end = len(text)
    while True:
        while pos < end and text[pos] in _SPACE:
            pos += 1
        if pos >= end:
            tokens.append(_Token("end", "", end))
            return tokens
        char = text[pos]
        if char.isascii() and (char.isalpha() or char == "_"):
            tokens.append(_name_token(text, pos))
        elif "0" <= char <= "9" or (char == "." and "0" <= text[pos + 1 : pos + 2] <= "9"):
            tokens.append(_number_token(text, pos))
        elif char in "'\"":
            tokens.append(_text_token(text, pos))
        else:
            for op in _OPERATORS:
                if text.startswith(op, pos):
                    tokens.append(_Token("op", op, pos))
                    break
            else:
                raise ExpressionError(f"unexpected character {char!r}", pos, text)
        pos = tokens[-1].offset + len(tokens[-1].text)


def _name_token(text: str, pos: int) -> _Token:
    match = _NAME.match(text, pos)
    assert match is not None  # the caller saw an identifier start
    word = match.group()
    stop = match.end()
    following = text[stop : stop + 1]
    if following == ".":
        raise ExpressionError("expected a name after '.'", stop + 1, text)
    if following and following in "'\"" and _STRING_PREFIX.fullmatch(word):
        raise ExpressionError("f-strings and string prefixes are not allowed", pos, text)
    if "." not in word:
        return _Token("keyword" if word in _KEYWORDS else "name", word, pos)
    offset = pos
    for part in word.split("."):
        if part in _KEYWORDS:
            raise ExpressionError(
                f"'{part}' is a reserved word and cannot be part of a name", offset, text
            )
        offset += len(part) + 1
    return _Token("name", word, pos)


def _number_token(text: str, pos: int) -> _Token:
    match = _NUMBER_TOKEN.match(text, pos)
    assert match is not None  # the caller saw a digit
    literal = match.group()
    stop = match.end()
    if stop < len(text) and (_is_word_char(text[stop]) or text[stop] == "."):
        while stop < len(text) and (_is_word_char(text[stop]) or text[stop] == "."):
            stop += 1
        raise ExpressionError(f"invalid number '{text[pos:stop]}'", pos, text)
    if len(literal) > 100:
        raise ExpressionError("number too long", pos, text)
    digits = literal.replace("_", "")
    value: int | float
    if any(c in digits for c in ".eE"):
        value = float(digits)
        if not math.isfinite(value):
            raise ExpressionError(f"number too large: {literal}", pos, text)
    else:
        if len(digits) > 1 and digits[0] == "0" and digits.strip("0"):
            raise ExpressionError(f"leading zeros are not allowed: {literal}", pos, text)
        value = int(digits)
        if value >= INT_LIMIT:
            raise ExpressionError(f"number too large: {literal}", pos, text)
    return _Token("number", literal, pos, value)


def _text_token(text: str, pos: int) -> _Token:
    quote = text[pos]
    chars: list[str] = []
    index = pos + 1
    while True:
        if index >= len(text) or text[index] in "\r\n":
            raise ExpressionError("unterminated text: missing closing quote", pos, text)
        char = text[index]
        if char == quote:
            break
        if char == "\\":
            escaped = text[index + 1 : index + 2]
            if escaped not in _ESCAPES:
                if not escaped or escaped in "\r\n":
                    raise ExpressionError("unterminated text: missing closing quote", pos, text)
                raise ExpressionError(f"unknown escape '\\{escaped}' in text", index, text)
            chars.append(_ESCAPES[escaped])
            index += 2
            continue
        chars.append(char)
        index += 1
    return _Token("text", text[pos : index + 1], pos, "".join(chars))


# ---------------------------------------------------------------- parser

_AFTER_VALUE: Final = {
    "[": "subscripts are not allowed",
    "=": "'=' is not allowed: compare with '=='",
    ":=": "assignment expressions (:=) are not allowed",
    "&&": "use 'and' instead of '&&'",
    "||": "use 'or' instead of '||'",
    "&": "bitwise operators are not allowed: use 'and'",
    "|": "bitwise operators are not allowed: use 'or'",
    "^": "bitwise operators are not allowed (a power is '**')",
    "<<": "bitwise operators are not allowed",
    ">>": "bitwise operators are not allowed",
    "~": "bitwise operators are not allowed",
    "!": "use 'not' to negate and '!=' for not equal",
    ";": "only one expression is allowed",
    ":": "':' is not allowed (no slices, lambdas or annotations)",
    "{": "braces are not allowed",
    "}": "unmatched '}'",
    "]": "unmatched ']'",
}
_KEYWORD_AFTER_VALUE: Final = {
    "for": "comprehensions are not allowed",
    "in": "'in' is not supported",
    "is": "'is' is not supported: compare with '=='",
    "not": "'not' cannot follow a value ('not in' is not supported)",
}
_AT_VALUE: Final = {
    "[": "lists are not allowed",
    "{": "sets and dicts are not allowed",
    "!": "use 'not' instead of '!'",
    "~": "bitwise operators are not allowed",
    "*": "starred expressions are not allowed",
    "**": "starred expressions are not allowed",
}
_LOWER_HINTS: Final = frozenset({"and", "or", "not", "if", "else", "in", "is"})


class _Part(NamedTuple):
    run: _Run
    kind: str
    depth: int


class _Parser:
    def __init__(self, text: str, functions: Mapping[str, Function]) -> None:
        self.text = text
        self.functions = functions
        self.tokens = _tokenize(text)
        self.pos = 0
        self.nesting = 0
        self.names: set[str] = set()
        self.called: set[str] = set()

    # -- helpers

    def error(self, message: str, offset: int) -> ExpressionError:
        return ExpressionError(message, offset, self.text)

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        token = self.tokens[self.pos]
        if token.kind != "end":
            self.pos += 1
        return token

    def at(self, kind: str, *texts: str) -> bool:
        token = self.tokens[self.pos]
        return token.kind == kind and token.text in texts

    def enter(self, token: _Token) -> None:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep", token.offset)

    def leave(self) -> None:
        self.nesting -= 1

    def depth(self, offset: int, *children: _Part) -> int:
        depth = 1 + max(child.depth for child in children)
        if depth > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep", offset)
        return depth

    def unexpected(self, token: _Token, expecting: str) -> ExpressionError:
        """The error for ``token`` where an operator or ``expecting`` should be."""
        if token.kind == "end":
            return self.error(f"unexpected end of expression, expected {expecting}", token.offset)
        if token.kind == "op" and token.text in _AFTER_VALUE:
            return self.error(_AFTER_VALUE[token.text], token.offset)
        if token.kind == "keyword" and token.text in _KEYWORD_AFTER_VALUE:
            return self.error(_KEYWORD_AFTER_VALUE[token.text], token.offset)
        message = f"expected {expecting}, found '{token.text}'"
        lower = token.text.lower()
        if token.kind == "name" and lower in _LOWER_HINTS:
            message += f" (write the keyword in lower case: '{lower}')"
        return self.error(message, token.offset)

    # -- grammar

    def parse_top(self) -> _Part:
        if not self.text.strip(_SPACE):
            raise self.error("empty expression", 0)
        part = self.parse_expression()
        token = self.peek()
        if token.kind != "end":
            if token.kind == "op" and token.text == ",":
                raise self.error("only one expression is allowed", token.offset)
            if token.kind == "op" and token.text == ")":
                raise self.error("unmatched ')'", token.offset)
            raise self.unexpected(token, "an operator or the end")
        return part

    def parse_expression(self) -> _Part:
        self.enter(self.peek())
        body = self.parse_or()
        if self.at("keyword", "if"):
            token = self.advance()
            condition = self.parse_or()
            if not self.at("keyword", "else"):
                raise self.unexpected(self.peek(), "'else'")
            self.advance()
            orelse = self.parse_expression()
            self.need_boolean(condition.kind, "the condition of 'if' must be", token.offset)
            kind = body.kind if body.kind == orelse.kind else ANY
            depth = self.depth(token.offset, body, condition, orelse)
            body = _Part(
                _conditional(body.run, condition.run, orelse.run, token.offset), kind, depth
            )
        self.leave()
        return body

    def need_boolean(self, kind: str, what: str, offset: int) -> None:
        if kind not in (BOOLEAN, ANY):
            raise self.error(f"{what} true or false, not {_PHRASE[kind]}", offset)

    def parse_or(self) -> _Part:
        left = self.parse_and()
        while self.at("keyword", "or"):
            token = self.advance()
            right = self.parse_and()
            for side in (left, right):
                self.need_boolean(side.kind, "'or' needs", token.offset)
            depth = self.depth(token.offset, left, right)
            left = _Part(_or(left.run, right.run, token.offset), BOOLEAN, depth)
        return left

    def parse_and(self) -> _Part:
        left = self.parse_not()
        while self.at("keyword", "and"):
            token = self.advance()
            right = self.parse_not()
            for side in (left, right):
                self.need_boolean(side.kind, "'and' needs", token.offset)
            depth = self.depth(token.offset, left, right)
            left = _Part(_and(left.run, right.run, token.offset), BOOLEAN, depth)
        return left

    def parse_not(self) -> _Part:
        if not self.at("keyword", "not"):
            return self.parse_comparison()
        token = self.advance()
        self.enter(token)
        operand = self.parse_not()
        self.leave()
        self.need_boolean(operand.kind, "'not' needs", token.offset)
        depth = self.depth(token.offset, operand)
        return _Part(_not(operand.run, token.offset), BOOLEAN, depth)

    def parse_comparison(self) -> _Part:
        first = self.parse_sum()
        parts = [first]
        rest: list[tuple[_Op, _Run, int]] = []
        while self.at("op", *_COMPARISONS):
            token = self.advance()
            right = self.parse_sum()
            self.check_comparison(token, parts[-1].kind, right.kind)
            parts.append(right)
            rest.append((_COMPARISONS[token.text], right.run, token.offset))
        if not rest:
            return first
        depth = self.depth(rest[0][2], *parts)
        if len(rest) == 1:
            op, right_run, offset = rest[0]
            return _Part(_binary(op, first.run, right_run, offset), BOOLEAN, depth)
        return _Part(_chain(first.run, rest), BOOLEAN, depth)

    def check_comparison(self, token: _Token, left: str, right: str) -> None:
        if token.text in ("==", "!="):
            if ANY not in (left, right) and left != right:
                raise self.error(f"cannot compare {left} with {right}", token.offset)
            return
        for kind in (left, right):
            if kind not in (NUMBER, ANY):
                if ANY not in (left, right):
                    raise self.error(_compare_message(token.text, left, right), token.offset)
                raise self.error(
                    f"'{token.text}' compares numbers only, not {_PHRASE[kind]}", token.offset
                )

    def parse_sum(self) -> _Part:
        left = self.parse_term()
        while self.at("op", "+", "-"):
            token = self.advance()
            left = self.arithmetic(token, left, self.parse_term())
        return left

    def parse_term(self) -> _Part:
        left = self.parse_factor()
        while self.at("op", "*", "/", "//", "%"):
            token = self.advance()
            left = self.arithmetic(token, left, self.parse_factor())
        return left

    def arithmetic(self, token: _Token, left: _Part, right: _Part) -> _Part:
        symbol = token.text
        kinds = (left.kind, right.kind)
        allowed = (NUMBER, TEXT, ANY) if symbol == "+" else (NUMBER, ANY)
        for kind in kinds:
            if kind not in allowed:
                if ANY in kinds:
                    raise self.error(f"'{symbol}' cannot take {_PHRASE[kind]}", token.offset)
                raise self.error(_arith_message(symbol, *kinds), token.offset)
        if symbol == "+" and {NUMBER, TEXT} <= set(kinds):
            raise self.error(_arith_message(symbol, *kinds), token.offset)
        if symbol == "+" and left.kind == right.kind:
            kind = left.kind
        elif symbol == "+":
            kind = left.kind if right.kind == ANY else right.kind
        else:
            kind = NUMBER
        depth = self.depth(token.offset, left, right)
        return _Part(_binary(_ARITHMETIC[symbol], left.run, right.run, token.offset), kind, depth)

    def parse_factor(self) -> _Part:
        if not self.at("op", "-", "+"):
            return self.parse_power()
        token = self.advance()
        self.enter(token)
        operand = self.parse_factor()
        self.leave()
        if operand.kind not in (NUMBER, ANY):
            what = "cannot negate" if token.text == "-" else "unary '+' needs a number, not"
            raise self.error(f"{what} {_PHRASE[operand.kind]}", token.offset)
        build = _negate if token.text == "-" else _plus
        depth = self.depth(token.offset, operand)
        return _Part(build(operand.run, token.offset), NUMBER, depth)

    def parse_power(self) -> _Part:
        base = self.parse_primary()
        if not self.at("op", "**"):
            return base
        token = self.advance()
        self.enter(token)
        exponent = self.parse_factor()
        self.leave()
        return self.arithmetic(token, base, exponent)

    def parse_primary(self) -> _Part:
        token = self.advance()
        kind = token.kind
        part: _Part
        what = "value"
        if kind in ("number", "text"):
            part = _Part(_const(token.value), NUMBER if kind == "number" else TEXT, 1)
        elif kind == "keyword" and token.text in ("true", "True", "false", "False"):
            part = _Part(_const(token.text in ("true", "True")), BOOLEAN, 1)
        elif kind == "name" and self.at("op", "("):
            if "." in token.text:
                raise self.error(
                    f"only plain function names can be called, not '{token.text}'"
                    " (no method calls)",
                    token.offset,
                )
            part = self.parse_call(token)
            what = "call"
        elif kind == "name":
            self.names.add(token.text)
            part = _Part(_name(token.text, token.offset), ANY, 1)
            what = "name"
        elif kind == "op" and token.text == "(":
            part = self.parse_parenthesized(token)
        else:
            raise self.error(self.not_a_value(token), token.offset)
        self.check_postfix(what)
        return part

    def not_a_value(self, token: _Token) -> str:
        if token.kind == "end":
            return "unexpected end of expression, expected a value"
        if token.kind == "op" and token.text in _AT_VALUE:
            return _AT_VALUE[token.text]
        if token.kind == "keyword":
            if token.text == "lambda":
                return "lambda is not allowed"
            if token.text == "None":
                return "None is not allowed: a value is a number, text, true or false"
            if token.text not in ("and", "or", "not", "if", "else", "in", "is", "for"):
                return f"'{token.text}' is a reserved word"
        return f"expected a value, found '{token.text}'"

    def check_postfix(self, what: str) -> None:
        """Refuse what may follow a value in Python but not here: ``.x``, ``[i]``, ``(...)``."""
        following = self.peek()
        if following.kind != "op":
            return
        if following.text == ".":
            if what == "name":
                message = "a dotted name cannot contain spaces"
            elif what == "call":
                message = "attribute access on a call is not allowed"
            else:
                message = "attribute access is not allowed (only device.signal names have dots)"
            raise self.error(message, following.offset)
        if following.text == "[":
            raise self.error("subscripts are not allowed", following.offset)
        if following.text == "(":
            raise self.error("only functions can be called, by plain name", following.offset)

    def parse_parenthesized(self, opening: _Token) -> _Part:
        part = self.parse_expression()
        closing = self.peek()
        if closing.kind == "op" and closing.text == ")":
            self.advance()
            return part
        if closing.kind == "end":
            raise self.error(
                f"missing ')' to close the '(' at offset {opening.offset}", closing.offset
            )
        if closing.kind == "op" and closing.text == ",":
            raise self.error("tuples are not allowed", closing.offset)
        raise self.unexpected(closing, "')'")

    def parse_call(self, name: _Token) -> _Part:
        function = self.functions.get(name.text)
        if function is None:
            known = ", ".join(sorted(self.functions))
            raise self.error(f"unknown function '{name.text}' (known: {known})", name.offset)
        self.called.add(name.text)
        opening = self.advance()
        self.enter(opening)
        args: list[_Part] = []
        while not self.at("op", ")"):
            token = self.peek()
            if token.kind == "op" and token.text in ("*", "**"):
                raise self.error("starred arguments are not allowed", token.offset)
            following = self.peek(1)
            if token.kind == "name" and following.kind == "op" and following.text == "=":
                raise self.error("keyword arguments are not allowed", token.offset)
            args.append(self.parse_expression())
            if self.at("op", ","):
                self.advance()
                continue
            if self.at("op", ")"):
                break
            closing = self.peek()
            if closing.kind == "end":
                raise self.error(
                    f"missing ')' to close the call of {name.text}() at offset {name.offset}",
                    closing.offset,
                )
            raise self.unexpected(closing, "',' or ')'")
        self.advance()
        self.leave()
        count = len(args)
        if count < function.min_args or (
            function.max_args is not None and count > function.max_args
        ):
            raise self.error(f"{name.text}() takes {function.arity()} ({count} given)", name.offset)
        depth = self.depth(name.offset, *args) if args else 1
        run = _call(function, [arg.run for arg in args], name.offset)
        return _Part(run, function.returns, depth)
