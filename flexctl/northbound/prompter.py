"""A :class:`~flexctl.supervisor.prompts.Prompter` whose prompts wait for a person's signed answer.

:meth:`NorthboundPrompter.ask` (called by the executor) registers the prompt
as pending and waits; :meth:`NorthboundPrompter.answer` (called for the
server's AnswerPrompt method) checks the value, has the person sign it through
:class:`~flexctl.record.signing.Signatures` (user id and password, 21 CFR
11.200; a refusal is audited there) and hands value and signer to the
executor. A refused answer leaves the prompt pending. The signature binds the
same content as :class:`~flexctl.record.signing.SigningPrompter`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from flexctl.errors import FlexctlError
from flexctl.procedure.model import Entry, EntryType, Meaning, Role
from flexctl.profile import Value
from flexctl.record.signing import Signature, Signatures, SigningSession
from flexctl.supervisor.prompts import PromptRequest, Signer, check_answer
from flexctl.supervisor.signing_prompter import prompt_content, prompt_object


class NoSuchPrompt(FlexctlError, LookupError):
    """No prompt of that step is waiting for an answer."""


class AnswerRejected(FlexctlError, ValueError):
    """The value does not answer the prompt (wrong type, pattern or limits); nothing was signed."""


@dataclass
class PendingPrompt:
    """A prompt the executor is waiting on."""

    request: PromptRequest
    role: Role
    meaning: Meaning
    entry: Entry | None
    answered: asyncio.Future[tuple[Value, Signer]] = field(repr=False)

    @property
    def step(self) -> str:
        return self.request.step

    def text(self) -> str:
        """One line for a console: ``step: question | role, meaning | what to enter``."""
        parts = [
            f"{self.step}: {self.request.text}",
            f"{self.role.value}, {self.meaning.value}",
            _expected(self.entry),
        ]
        if self.request.suggested is not None:
            parts.append(f"suggested {self.request.suggested!r}")
        return " | ".join(parts)


def _expected(entry: Entry | None) -> str:
    if entry is None:
        return "confirm (true)"
    what = {EntryType.TEXT: "text", EntryType.INT: "a whole number", EntryType.FLOAT: "a number"}
    text = f"enter {what.get(entry.type, entry.type.value)}"
    if entry.pattern is not None:
        text += f" matching {entry.pattern}"
    if entry.limits is not None:
        text += f" in [{entry.limits[0]:g}, {entry.limits[1]:g}]"
    if entry.unit:
        text += f" {entry.unit}"
    return text


class NorthboundPrompter:
    """Prompts that wait for :meth:`answer`; see the module docstring.

    Args:
        signatures: checks and records each signing.
    """

    def __init__(self, signatures: Signatures) -> None:
        self.signatures = signatures
        #: Every signature made, oldest first (the record hashes for the report).
        self.signed: list[Signature] = []
        self._pending: dict[str, PendingPrompt] = {}
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` whenever a prompt is added or leaves; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def pending(self) -> list[PendingPrompt]:
        """The prompts waiting for an answer, oldest first."""
        return [p for p in self._pending.values() if not p.answered.done()]

    def find(self, step: str) -> PendingPrompt:
        """The prompt of ``step`` that waits; NoSuchPrompt if none does."""
        prompt = self._pending.get(step)
        if prompt is None or prompt.answered.done():
            waiting = ", ".join(p.step for p in self.pending()) or "none"
            raise NoSuchPrompt(f"no prompt of step {step!r} is waiting (waiting: {waiting})")
        return prompt

    async def ask(
        self, prompt: PromptRequest, role: Role, meaning: Meaning, entry: Entry | None
    ) -> tuple[Value, Signer]:
        answered: asyncio.Future[tuple[Value, Signer]] = asyncio.get_running_loop().create_future()
        pending = PendingPrompt(prompt, role, meaning, entry, answered)
        self._pending[prompt.step] = pending
        self._changed()
        try:
            return await answered  # a hold cancels this wait; the prompt leaves with it
        finally:
            if self._pending.get(prompt.step) is pending:
                del self._pending[prompt.step]
            self._changed()

    def answer(
        self,
        step: str,
        value: Value,
        *,
        user_id: str,
        password: str,
        session: SigningSession,
    ) -> Signature:
        """Sign ``value`` as the answer to ``step``'s prompt and hand it to the executor.

        Raises:
            NoSuchPrompt: no prompt of ``step`` waits.
            AnswerRejected: ``value`` does not fit the prompt's entry (nothing signed).
            SignatureRefused: the signing was refused (audited by Signatures);
                SessionLocked after too many failures.
        """
        prompt = self.find(step)
        why = check_answer(prompt.entry, value)
        if why is not None:
            raise AnswerRejected(f"step {step}: {why}")
        request = prompt.request
        signature = self.signatures.sign(
            session,
            user_id=user_id,
            password=password,
            role=prompt.role,
            meaning=prompt.meaning,
            object=prompt_object(request),
            content=prompt_content(request, value),
            batch=request.batch,
        )
        self.signed.append(signature)
        prompt.answered.set_result((value, signature.signer))
        del self._pending[step]
        self._changed()
        return signature

    def _changed(self) -> None:
        for listener in tuple(self._listeners):
            listener()
