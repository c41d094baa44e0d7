"""A prompter whose answers people sign (21 CFR 11.200): the supervisor's side of signing.

:class:`SigningPrompter` asks a person through an injected callable (a
console, a test) and signs each answer through
:class:`~flexctl.record.signing.Signatures`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeAlias

from flexctl.procedure.model import Entry, Meaning, Role
from flexctl.profile import Value
from flexctl.record.journal import JSONValue
from flexctl.record.signers import Signer
from flexctl.record.signing import (
    DEFAULT_MAX_FAILURES,
    Answer,
    SessionLocked,
    Signature,
    SignatureRefused,
    Signatures,
    SigningSession,
)
from flexctl.supervisor.prompts import PromptDeclined, PromptRequest

Ask: TypeAlias = Callable[[PromptRequest, Role, Meaning, Entry | None], Awaitable[Answer | None]]


def prompt_object(prompt: PromptRequest) -> str:
    """What a prompt's signature names: ``prompt:<unit procedure>/<step>``."""
    return f"prompt:{prompt.unit_procedure}/{prompt.step}"


def prompt_content(prompt: PromptRequest, value: Value) -> dict[str, JSONValue]:
    """What a prompt's signature binds: where in the batch, the question and the answer."""
    return {
        "batch": prompt.batch,
        "unit_procedure": prompt.unit_procedure,
        "step": prompt.step,
        "text": prompt.text,
        "value": value,
    }


class SigningPrompter:
    """A :class:`~flexctl.supervisor.prompts.Prompter` whose answers people sign.

    Each answer is signed through ``signatures`` in ``session``; a refused
    signing is asked again (``last_refusal`` says why, for the console), at
    most ``attempts`` times. The value itself is the executor's to check: a
    value it rejects stays signed as entered, and the journal shows the
    rejection beside who entered it.

    Args:
        signatures: the signature service.
        session: the console's session.
        ask: asks the person; returns (user id or None, password, value), or
            None to decline.
        attempts: signings tried per prompt before it is declined.
    """

    def __init__(
        self,
        signatures: Signatures,
        session: SigningSession,
        ask: Ask,
        *,
        attempts: int = DEFAULT_MAX_FAILURES,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.signatures = signatures
        self.session = session
        self._ask = ask
        self.attempts = attempts
        self.last_refusal: SignatureRefused | None = None
        #: Every signature made, oldest first (the record hashes for the report).
        self.signed: list[Signature] = []

    async def ask(
        self, prompt: PromptRequest, role: Role, meaning: Meaning, entry: Entry | None
    ) -> tuple[Value, Signer]:
        self.last_refusal = None
        for _ in range(self.attempts):
            answer = await self._ask(prompt, role, meaning, entry)
            if answer is None:
                raise PromptDeclined(f"step {prompt.step}: the person declined to answer")
            user_id, password, value = answer
            try:
                signature = self.signatures.sign(
                    self.session,
                    user_id=user_id,
                    password=password,
                    role=role,
                    meaning=meaning,
                    object=prompt_object(prompt),
                    content=prompt_content(prompt, value),
                    batch=prompt.batch,
                )
            except SessionLocked as exc:
                self.last_refusal = exc
                raise PromptDeclined(f"step {prompt.step}: not signed: {exc}") from exc
            except SignatureRefused as exc:
                self.last_refusal = exc
                continue
            self.signed.append(signature)
            return value, signature.signer
        raise PromptDeclined(
            f"step {prompt.step}: not signed after {self.attempts} attempts: {self.last_refusal}"
        )
