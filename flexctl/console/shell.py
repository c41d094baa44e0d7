"""The console's command loop: one line, one command, the server's answer printed.

Lines come from a person at a terminal (readline: completion and history) or
from a pipe (``flexctl console < script``); secrets (an e-signature's
password) come from getpass on a terminal, or from the next line of a pipe,
and never reach the history. A refused or failed command prints why and the
loop goes on; from a pipe, any failed line makes the console end with exit 1.
"""

from __future__ import annotations

import contextlib
import getpass
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, TextIO

from flexctl.console.client import Connection, ConsoleError, Reply, Snapshot, variant
from flexctl.supervisor.batch_state import FINAL, BatchState

PROMPT: Final = "flexctl> "
HISTORY: Final = Path("~/.flexctl_history")
HISTORY_LENGTH: Final = 1000
STATES: Final = tuple(state.value for state in BatchState)
FINAL_STATES: Final = frozenset(state.value for state in FINAL)
POLL: Final = 0.2  # wall seconds between two reads of a wait: a display pace
DEFAULT_WAIT: Final = 60.0
#: How many values of a device the status shows.
KEY_VALUES: Final = 6

HELP: Final = """\
status                      the batch, where it is, devices and their key values, alarms
prompts                     the prompts waiting for an answer
answer STEP [VALUE]         answer a prompt and sign it (asks your password again)
ack ALARM REASON...         acknowledge an alarm
shelve ALARM MINUTES REASON...  shelve an alarm for MINUTES of process time
start | pause | resume      start the batch, pause it, resume it
hold [REASON...]            hold the batch
restart [resend|done] [REASON...]  restart a held batch (resend/done: a command of unknown outcome)
stop [REASON...]            stop the batch
abort REASON...             abort the batch (asks you to type ABORT)
reset [REASON...]           reset a stopped or aborted batch
watch SECONDS               show the status every second, until the state changes
wait STATE [SECONDS]        wait until the batch is in STATE (default 60 s)
wait prompt STEP [SECONDS]  wait until the prompt of STEP waits for an answer
help                        this text
quit                        log out"""


class Lines(Protocol):
    """Where commands and secrets come from."""

    interactive: bool

    def command(self) -> str | None:
        """The next command line; None at the end of input."""

    def secret(self, prompt: str) -> str | None:
        """A password (not echoed, not kept); None at the end of input."""


class PipeLines:
    """Lines from a pipe or file, one command (or secret) per line."""

    interactive = False

    def __init__(self, stream: TextIO, out: TextIO) -> None:
        self.stream = stream
        self.out = out

    def command(self) -> str | None:
        line = self.stream.readline()
        if not line:
            return None
        text = line.rstrip("\n")
        print(f"{PROMPT}{text}", file=self.out, flush=True)  # a transcript of the script
        return text

    def secret(self, prompt: str) -> str | None:
        line = self.stream.readline()
        if not line:
            return None
        print(f"{prompt}(read from stdin)", file=self.out, flush=True)
        return line.rstrip("\n")


class TerminalLines:
    """A person at a terminal: readline editing, completion and history; getpass for secrets."""

    interactive = True

    def __init__(self, complete: Callable[[str, int], str | None], history: Path) -> None:
        self.history = history
        self._readline = None
        try:
            import readline
        except ImportError:  # no GNU readline here: plain input() still works
            return
        self._readline = readline
        readline.set_completer(complete)
        readline.set_completer_delims(" \t")
        if "libedit" in (readline.__doc__ or ""):
            readline.parse_and_bind("bind ^I rl_complete")
        else:
            readline.parse_and_bind("tab: complete")
        # Only command lines go to the history, added one by one (see remember).
        readline.set_auto_history(False)
        readline.set_history_length(HISTORY_LENGTH)
        with contextlib.suppress(OSError):  # none yet
            readline.read_history_file(str(history))

    def command(self) -> str | None:
        try:
            return input(PROMPT)
        except EOFError:
            print()
            return None
        except KeyboardInterrupt:  # Ctrl-C drops the line typed, as a shell does
            print("^C")
            return ""

    def secret(self, prompt: str) -> str | None:
        try:
            return getpass.getpass(prompt)
        except EOFError:
            print()
            return None

    def remember(self, line: str) -> None:
        """Keep a command line in the history (never a password: those are read apart)."""
        if self._readline is not None and line.strip():
            self._readline.add_history(line)

    def save(self) -> None:
        if self._readline is None:
            return
        try:
            self._readline.write_history_file(str(self.history))
        except OSError as exc:
            print(f"console: history not saved ({exc})", file=sys.stderr)


@dataclass
class Outcome:
    """A command's outcome: ``ok`` False marks the script failed; ``quit`` ends the loop."""

    ok: bool = True
    quit: bool = False


class UsageError(Exception):
    """A command line that does not parse: said, and the line counts as failed."""


class Shell:
    """The console's commands over one connection; see the module docstring.

    Args:
        connection: the logged-in session.
        user: who is logged in (their password signs prompt answers).
        out: where answers go.
        sleep: wall-time sleep (tests may pass a faster one).
    """

    def __init__(
        self,
        connection: Connection,
        user: str,
        out: TextIO,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.connection = connection
        self.user = user
        self.out = out
        self.sleep = sleep
        self.lines: Lines | None = None
        self._steps: list[str] = []  # the prompt steps last seen, for completion
        self._alarms: list[str] = []
        self._commands: dict[str, Callable[[list[str]], Outcome]] = {
            "status": self._status,
            "prompts": self._prompts,
            "answer": self._answer,
            "ack": self._ack,
            "shelve": self._shelve,
            "start": self._simple("Start", reason=False),
            "pause": self._simple("Pause"),
            "resume": self._simple("Resume"),
            "hold": self._simple("Hold"),
            "restart": self._restart,
            "stop": self._simple("Stop"),
            "abort": self._abort,
            "reset": self._simple("Reset"),
            "watch": self._watch,
            "wait": self._wait,
            "help": self._help,
            "quit": self._quit,
            "exit": self._quit,
        }

    @property
    def names(self) -> list[str]:
        return sorted(self._commands)

    def loop(self, lines: Lines) -> int:
        """Read and run commands until ``quit`` or the end of input; the exit status."""
        self.lines = lines
        failed = 0
        while True:
            line = lines.command()
            if line is None:
                break
            outcome = self.execute(line)
            if isinstance(lines, TerminalLines) and line.split()[:1] and outcome.ok:
                lines.remember(line)
            if not outcome.ok:
                failed += 1
            if outcome.quit:
                break
        if failed and not lines.interactive:
            self.say(f"console: {failed} command(s) failed")
            return 1
        return 0

    def execute(self, line: str) -> Outcome:
        """Run one command line (blank lines and ``#`` comments do nothing)."""
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            self.say(f"error: {exc}")
            return Outcome(ok=False)
        if not words:
            return Outcome()
        name, args = words[0].lower(), words[1:]
        command = self._commands.get(name)
        if command is None:
            self.say(f"error: unknown command {name!r} (help lists the commands)")
            return Outcome(ok=False)
        try:
            return command(args)
        except UsageError as exc:
            self.say(f"usage: {exc}")
            return Outcome(ok=False)
        except ConsoleError as exc:  # the session is gone or did not answer
            self.say(f"error: {exc}")
            return Outcome(ok=False, quit=not self.connection.alive())

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -- completion ---------------------------------------------------------------------

    def complete(self, text: str, index: int) -> str | None:
        """readline's completer: command names, then prompt steps, alarms, restart choices."""
        try:
            import readline

            before = readline.get_line_buffer()[: readline.get_begidx()]
        except ImportError:
            before = ""
        words = before.split()
        options = self._arguments(words[0].lower(), len(words)) if words else self.names
        matches = [o + " " for o in options if o.startswith(text)]
        return matches[index] if index < len(matches) else None

    def _arguments(self, command: str, position: int) -> list[str]:
        if position != 1:
            return []
        if command == "answer":
            self._refresh_names()
            return self._steps
        if command in ("ack", "shelve"):
            self._refresh_names()
            return self._alarms
        if command == "restart":
            return ["resend", "done"]
        if command == "wait":
            return ["prompt", *STATES]
        return []

    def _refresh_names(self) -> None:
        try:
            prompts = self.connection.read_batch("PendingPrompts")
            alarms = self.connection.read_batch("ActiveAlarms")
        except ConsoleError:  # completion offers what it knew
            return
        self._steps = [str(p).split(":", 1)[0] for p in _list(prompts)]
        self._alarms = [str(a).split()[0].rstrip(":") for a in _list(alarms) if str(a).split()]

    # -- the commands ---------------------------------------------------------------------

    def _help(self, args: list[str]) -> Outcome:
        self.say(HELP)
        return Outcome()

    def _quit(self, args: list[str]) -> Outcome:
        return Outcome(quit=True)

    def _status(self, args: list[str]) -> Outcome:
        _no_arguments("status", args)
        snapshot = self.connection.snapshot()
        self._remember(snapshot)
        for text in status_lines(snapshot):
            self.say(text)
        return Outcome()

    def _prompts(self, args: list[str]) -> Outcome:
        _no_arguments("prompts", args)
        pending = [str(p) for p in _list(self.connection.read_batch("PendingPrompts"))]
        self._steps = [p.split(":", 1)[0] for p in pending]
        if not pending:
            self.say("no prompt is waiting")
        for text in pending:
            self.say(f"  {text}")
        return Outcome()

    def _answer(self, args: list[str]) -> Outcome:
        if not args:
            raise UsageError("answer STEP [VALUE] (a confirmation needs no value)")
        step, words = args[0], args[1:]
        waiting = _list(self.connection.read_batch("PendingPrompts"))
        pending = {p.split(":", 1)[0]: p for p in map(str, waiting)}
        prompt = pending.get(step)
        if prompt is None:
            steps = ", ".join(pending) or "none"
            self.say(f"refused: no prompt of step {step!r} is waiting (waiting: {steps})")
            return Outcome(ok=False)
        value = answer_value(prompt, " ".join(words))
        if isinstance(value, str) and value.startswith("error: "):
            self.say(value)
            return Outcome(ok=False)
        assert self.lines is not None
        password = self.lines.secret(f"password of {self.user} (signs {step}): ")
        if password is None:
            self.say("error: no password given; nothing was signed")
            return Outcome(ok=False)
        reply = self.connection.call(
            "AnswerPrompt", variant(step), variant(value), variant(password)
        )
        return self._reply(reply)

    def _ack(self, args: list[str]) -> Outcome:
        if len(args) < 2:
            raise UsageError("ack ALARM REASON...")
        reply = self.connection.call(
            "AcknowledgeAlarm", variant(args[0]), variant(" ".join(args[1:]))
        )
        return self._reply(reply)

    def _shelve(self, args: list[str]) -> Outcome:
        if len(args) < 3:
            raise UsageError("shelve ALARM MINUTES REASON...")
        minutes = _number(args[1], "MINUTES")
        reply = self.connection.call(
            "ShelveAlarm",
            variant(args[0]),
            variant(" ".join(args[2:])),
            variant(float(minutes) * 60.0),
        )
        return self._reply(reply)

    def _simple(self, method: str, *, reason: bool = True) -> Callable[[list[str]], Outcome]:
        def command(args: list[str]) -> Outcome:
            if not reason:
                _no_arguments(method.lower(), args)
                return self._reply(self.connection.call(method))
            return self._reply(self.connection.call(method, variant(" ".join(args))))

        return command

    def _restart(self, args: list[str]) -> Outcome:
        resolve = ""
        if args and args[0] in ("resend", "done"):
            resolve, args = args[0], args[1:]
        reply = self.connection.call("Restart", variant(resolve), variant(" ".join(args)))
        return self._reply(reply)

    def _abort(self, args: list[str]) -> Outcome:
        if not args:
            raise UsageError("abort REASON... (an abort needs a reason)")
        assert self.lines is not None
        if self.lines.interactive:
            confirm = _ask("type ABORT to confirm: ")
        else:
            self.say("type ABORT to confirm: ")
            confirm = self.lines.command()
        if confirm is None or confirm.strip() != "ABORT":
            self.say("not aborted (not confirmed)")
            return Outcome(ok=False)
        return self._reply(self.connection.call("Abort", variant(" ".join(args))))

    def _watch(self, args: list[str]) -> Outcome:
        if len(args) != 1:
            raise UsageError("watch SECONDS")
        seconds = _number(args[0], "SECONDS")
        end = time.monotonic() + seconds
        first = self.connection.snapshot()
        self._remember(first)
        for text in status_lines(first):
            self.say(text)
        while time.monotonic() < end:
            self.sleep(min(1.0, max(0.0, end - time.monotonic())))
            snapshot = self.connection.snapshot()
            self._remember(snapshot)
            self.say("")
            for text in status_lines(snapshot):
                self.say(text)
            if snapshot.text("State") != first.text("State"):
                break
        return Outcome()

    def _wait(self, args: list[str]) -> Outcome:
        if args[:1] == ["prompt"]:
            return self._wait_prompt(args[1:])
        if not 1 <= len(args) <= 2:
            raise UsageError("wait STATE [SECONDS] | wait prompt STEP [SECONDS]")
        wanted = {s.lower(): s for s in STATES}.get(args[0].lower())
        if wanted is None:
            raise UsageError(f"wait STATE [SECONDS]; STATE is one of {', '.join(STATES)}")
        timeout = _number(args[1], "SECONDS") if len(args) == 2 else DEFAULT_WAIT
        end = time.monotonic() + timeout
        while True:
            state = str(self.connection.read_batch("State") or "")
            if state == wanted:
                self.say(f"batch is {state}")
                return Outcome()
            if state in FINAL_STATES:
                self.say(f"failed: the batch ended {state}, it will not be {wanted}")
                return Outcome(ok=False)
            if time.monotonic() >= end:
                self.say(f"failed: still {state or 'no batch'} after {timeout:g} s, not {wanted}")
                return Outcome(ok=False)
            self.sleep(POLL)

    def _wait_prompt(self, args: list[str]) -> Outcome:
        if not 1 <= len(args) <= 2:
            raise UsageError("wait prompt STEP [SECONDS]")
        step = args[0]
        timeout = _number(args[1], "SECONDS") if len(args) == 2 else DEFAULT_WAIT
        end = time.monotonic() + timeout
        while True:
            snapshot = self.connection.snapshot()
            self._remember(snapshot)
            if step in self._steps:
                self.say(f"prompt {step} is waiting")
                return Outcome()
            state = snapshot.text("State")
            if state in FINAL_STATES:
                self.say(f"failed: the batch ended {state}; no prompt of {step} will come")
                return Outcome(ok=False)
            if time.monotonic() >= end:
                self.say(f"failed: no prompt of {step} after {timeout:g} s (batch {state})")
                return Outcome(ok=False)
            self.sleep(POLL)

    # -- helpers --------------------------------------------------------------------------

    def _reply(self, reply: Reply) -> Outcome:
        if reply.ok:
            self.say(reply.message)
            return Outcome()
        self.say(f"refused ({reply.status}): {reply.message}")
        return Outcome(ok=False)

    def _remember(self, snapshot: Snapshot) -> None:
        self._steps = [p.split(":", 1)[0] for p in snapshot.texts("PendingPrompts")]
        self._alarms = [a.split()[0].rstrip(":") for a in snapshot.texts("ActiveAlarms") if a]


def status_lines(snapshot: Snapshot) -> list[str]:
    """What ``status`` prints: the batch, where it is, the devices, prompts and alarms."""
    state = snapshot.text("State")
    if not state:
        lines = [f"line {snapshot.line}: no batch loaded"]
    else:
        runtime = snapshot.batch.get("Runtime")
        seconds = float(runtime) if isinstance(runtime, int | float) else 0.0
        allowed = ", ".join(snapshot.texts("AllowedCommands")) or "none"
        lines = [
            f"batch {snapshot.text('BatchId')} ({snapshot.text('Procedure')}) on line "
            f"{snapshot.line}: {state}",
            f"  unit procedure: {snapshot.text('UnitProcedure') or '-'}   "
            f"step: {snapshot.text('Step') or '-'}",
            f"  process time: {process_time(seconds)}   commands: {allowed}",
        ]
    lines.append("devices:")
    width = max((len(d.name) for d in snapshot.devices), default=0)
    for device in snapshot.devices:
        shown = [f"{k}={_short(v)}" for k, v in device.values.items() if v is not None]
        text = f"  {device.name:<{width}}  {device.status or '?'}  link {device.link or '?'}"
        if device.alarms:
            text += f"  alarms: {', '.join(device.alarms)}"
        if shown:
            text += "  " + " ".join(shown[:KEY_VALUES])
        lines.append(text)
    prompts = snapshot.texts("PendingPrompts")
    lines.append(f"prompts waiting: {len(prompts)}" + (" (prompts lists them)" if prompts else ""))
    alarms = snapshot.texts("ActiveAlarms")
    lines.append("alarms: " + ("none" if not alarms else ""))
    lines += [f"  {a}" for a in alarms]
    return lines


def process_time(seconds: float) -> str:
    """``day D hh:mm:ss`` of a process time in seconds (day 0 is the first)."""
    whole = int(max(0.0, seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"day {days} {hours:02d}:{minutes:02d}:{secs:02d}"


def answer_value(prompt: str, text: str) -> bool | int | float | str:
    """The value to send for ``text``, typed as the prompt's line says it expects.

    A confirmation is ``true`` (an empty answer, ``yes`` or ``true``); an error
    is a string starting ``error: `` (nothing sent).
    """
    expects = prompt.split(" | ")[2] if prompt.count(" | ") >= 2 else ""
    if expects.startswith("confirm"):
        if text.strip().lower() in ("", "true", "yes", "y", "confirm", "confirmed"):
            return True
        return f"error: this prompt is a confirmation: answer STEP (or STEP yes), not {text!r}"
    if not text:
        return "error: this prompt needs a value: answer STEP VALUE"
    try:
        if expects.startswith("enter a whole number"):
            return int(text)
        if expects.startswith("enter a number"):
            return float(text)
    except ValueError:
        return f"error: {text!r} is not {expects.removeprefix('enter ').split(' in ')[0]}"
    return text


def _ask(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{what} must be a number, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{what} must be a number >= 0, not {text!r}")
    return value


def _no_arguments(command: str, args: Sequence[str]) -> None:
    if args:
        raise UsageError(f"{command} takes no arguments")
