"""An in-memory stand-in for the user and audit methods of the record store."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from flexctl.record.passwords import ScryptCost
from flexctl.record.store import AuditEntry, AuditRecord, RecordError, UserRecord

#: scrypt at a test-only cost: the format and code path are the real ones, the work is not.
CHEAP = ScryptCost(n=2**4, r=1, p=1)
EPOCH = datetime(2025, 3, 1, 8, 0, 0, tzinfo=UTC)


class FakeStore:
    """``add_user``, ``user``, ``users``, ``set_user_disabled``, ``audit`` and ``audit_entries``."""

    def __init__(self) -> None:
        self._users: dict[str, UserRecord] = {}
        self.audits: list[AuditRecord] = []

    def add_user(self, user: UserRecord) -> None:
        if user.user_id in self._users:
            raise RecordError(f"user {user.user_id!r} exists")
        self._users[user.user_id] = user

    def user(self, user_id: str) -> UserRecord:
        try:
            return self._users[user_id]
        except KeyError:
            raise RecordError(f"no user {user_id!r}") from None

    def users(self) -> list[UserRecord]:
        return list(self._users.values())

    def set_user_disabled(self, user_id: str, disabled: bool) -> None:
        self._users[user_id] = dataclasses.replace(self.user(user_id), disabled=disabled)

    def audit(self, record: AuditRecord) -> AuditEntry:
        self.audits.append(record)
        return AuditEntry(len(self.audits), record, prev_hash="", hash="")

    def audit_entries(self, *, batch: str | None = None) -> list[AuditEntry]:
        return [
            AuditEntry(seq, record, prev_hash="", hash="")
            for seq, record in enumerate(self.audits, start=1)
            if batch is None or record.batch == batch
        ]

    def actions(self) -> list[str]:
        return [record.action for record in self.audits]


class FakeClock:
    """Process time that moves only when a test says so, and the UTC time it stands for."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def utcnow(self) -> datetime:
        return EPOCH + timedelta(seconds=self.t)

    def advance(self, seconds: float) -> None:
        self.t += seconds


def fixed_utc() -> datetime:
    return EPOCH
