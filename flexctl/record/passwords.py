"""Password hashes (scrypt) and the policy for new passwords (21 CFR 11.300).

A hash is stored as one self-describing string::

    scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>

so the cost can be raised later: :func:`verify_password` reads the cost from
the string, and :func:`needs_rehash` says when a stored hash is weaker than
today's :data:`DEFAULT_COST`. Passwords are compared in constant time
(:func:`hmac.compare_digest`) and normalised to Unicode NFC first, so the
same password typed on two consoles gives the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Final

from flexctl.errors import FlexctlError

SCHEME: Final = "scrypt"
SALT_BYTES: Final = 16
HASH_BYTES: Final = 32
MIN_LENGTH: Final = 8

# Bounds on a stored cost: below them a hash is not worth trusting as a format,
# above them verifying it would take gigabytes or minutes (a planted string
# must not be able to stall the console).
_MAX_N: Final = 2**20
_MAX_R: Final = 32
_MAX_P: Final = 16
_MAX_MEMORY: Final = 2**30


class PasswordHashError(FlexctlError, ValueError):
    """A stored password hash is not a well-formed ``scrypt$n$r$p$salt$hash`` string."""


class PasswordPolicyError(FlexctlError, ValueError):
    """A new password does not meet the policy; the message says what is expected."""


@dataclass(frozen=True)
class ScryptCost:
    """scrypt's cost parameters: ``n`` (a power of 2 > 1), block size ``r``, parallelism ``p``."""

    n: int
    r: int
    p: int

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1) or self.n > _MAX_N:
            raise ValueError(f"scrypt n must be a power of 2 in [2, 2**20], got {self.n}")
        if not 1 <= self.r <= _MAX_R or not 1 <= self.p <= _MAX_P:
            raise ValueError(f"scrypt r must be in [1, {_MAX_R}], p in [1, {_MAX_P}]")
        if self.memory > _MAX_MEMORY:
            raise ValueError(f"scrypt cost n={self.n} r={self.r} needs more than 1 GiB")

    @property
    def memory(self) -> int:
        """Bytes scrypt needs for this cost (128 * r * n, plus its buffers)."""
        return 128 * self.r * (self.n + self.p + 2)

    def at_least(self, other: ScryptCost) -> bool:
        """True if every parameter is at least ``other``'s."""
        return self.n >= other.n and self.r >= other.r and self.p >= other.p


#: 32 MiB and about 0.1 s per hash: memory-hard, yet quick enough for a signing.
DEFAULT_COST: Final = ScryptCost(n=2**15, r=8, p=1)


def hash_password(password: str, *, cost: ScryptCost = DEFAULT_COST) -> str:
    """A new salted scrypt hash of ``password`` as a self-describing string.

    Args:
        password: the password (the policy is checked by :func:`check_policy`, not here).
        cost: scrypt's parameters; lower them in tests only.
    """
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, cost, HASH_BYTES)
    return "$".join([SCHEME, str(cost.n), str(cost.r), str(cost.p), _b64(salt), _b64(digest)])


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches the stored hash ``encoded``.

    Raises:
        PasswordHashError: ``encoded`` is not a well-formed hash string.
    """
    cost, salt, expected = parse_hash(encoded)
    actual = _scrypt(password, salt, cost, len(expected))
    return hmac.compare_digest(actual, expected)


def dummy_verify(password: str) -> None:
    """Spend the time of a verification at :data:`DEFAULT_COST`, for an unknown user id.

    Without it an unknown id would be refused faster than a wrong password,
    and the time would tell which ids exist.
    """
    verify_password(password, _dummy_hash())


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def needs_rehash(encoded: str, cost: ScryptCost = DEFAULT_COST) -> bool:
    """True if the stored hash is weaker than ``cost`` (hash again at the next change)."""
    stored, _, _ = parse_hash(encoded)
    return not stored.at_least(cost)


def parse_hash(encoded: str) -> tuple[ScryptCost, bytes, bytes]:
    """The cost, salt and digest of a stored hash string.

    Raises:
        PasswordHashError: naming what part of the string is wrong (never the digest).
    """
    parts = encoded.split("$") if isinstance(encoded, str) else []
    if len(parts) != 6 or parts[0] != SCHEME:
        raise PasswordHashError(
            "a password hash must read scrypt$n$r$p$salt$hash "
            f"(6 fields separated by '$', got {len(parts)})"
        )
    # int() alone would also take " 16", "+16", "1_6" and non-ASCII digits.
    if not all(part.isascii() and part.isdigit() for part in parts[1:4]):
        raise PasswordHashError(
            f"a password hash has a bad cost: n, r and p must be decimal digits, "
            f"got {'$'.join(parts[1:4])!r}"
        )
    try:
        n, r, p = (int(part, 10) for part in parts[1:4])
        cost = ScryptCost(n, r, p)
    except ValueError as exc:
        raise PasswordHashError(f"a password hash has a bad cost: {exc}") from None
    salt = _unb64(parts[4], "salt")
    digest = _unb64(parts[5], "hash")
    if len(salt) < SALT_BYTES or not 16 <= len(digest) <= 64:
        raise PasswordHashError(
            f"a password hash needs a salt of at least {SALT_BYTES} bytes "
            "and a digest of 16 to 64 bytes"
        )
    return cost, salt, digest


def check_policy(password: str, user_id: str) -> None:
    """Check a new password against the policy.

    Raises:
        PasswordPolicyError: saying which rule it breaks.
    """
    text = _normalise(password)
    if len(text) < MIN_LENGTH:
        raise PasswordPolicyError(
            f"a password needs at least {MIN_LENGTH} characters, got {len(text)}"
        )
    if text.strip().casefold() == user_id.strip().casefold():
        raise PasswordPolicyError("a password must not be the user id")


def _normalise(password: str) -> str:
    return unicodedata.normalize("NFC", password)


def _scrypt(password: str, salt: bytes, cost: ScryptCost, length: int) -> bytes:
    # surrogatepass: a lone surrogate (pasted garbage) is hashed, not a crash.
    secret = _normalise(password).encode("utf-8", "surrogatepass")
    return hashlib.scrypt(
        secret,
        salt=salt,
        n=cost.n,
        r=cost.r,
        p=cost.p,
        maxmem=cost.memory + 2**20,
        dklen=length,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise PasswordHashError(f"a password hash's {what} is not base64") from None
