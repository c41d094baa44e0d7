"""Password hashes: scrypt round trips, a self-describing format, typed errors, the policy."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import unicodedata

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from flexctl.record.passwords import (
    DEFAULT_COST,
    SALT_BYTES,
    PasswordHashError,
    PasswordPolicyError,
    ScryptCost,
    check_policy,
    hash_password,
    needs_rehash,
    parse_hash,
    verify_password,
)
from tests.record_fakes import CHEAP

# scrypt is slow on purpose: few examples, and the test-only cost.
FEW = settings(max_examples=15, deadline=None)


@FEW
@given(st.text(max_size=40))
def test_a_password_verifies_against_its_own_hash(password: str) -> None:
    assert verify_password(password, hash_password(password, cost=CHEAP))


@FEW
@given(st.text(max_size=40), st.text(max_size=40))
def test_another_password_does_not_verify(password: str, other: str) -> None:
    assume(unicodedata.normalize("NFC", password) != unicodedata.normalize("NFC", other))
    assert not verify_password(other, hash_password(password, cost=CHEAP))


def test_the_default_cost_is_memory_hard_and_the_salt_random() -> None:
    assert DEFAULT_COST.at_least(ScryptCost(n=2**14, r=8, p=1))
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second  # a fresh salt each time
    cost, salt, digest = parse_hash(first)
    assert cost == DEFAULT_COST and len(salt) == SALT_BYTES and len(digest) == 32
    assert first.startswith(f"scrypt${DEFAULT_COST.n}${DEFAULT_COST.r}${DEFAULT_COST.p}$")
    assert verify_password("correct horse", first)
    assert not verify_password("correct horsE", first)


def test_the_format_is_scrypt_n_r_p_salt_hash() -> None:
    # Built by hand, so a swapped field or another encoding fails here.
    salt = bytes(range(16))
    digest = hashlib.scrypt(b"s3cret-pw", salt=salt, n=16, r=2, p=3, dklen=32)
    encoded = (
        f"scrypt$16$2$3${base64.b64encode(salt).decode()}$" + base64.b64encode(digest).decode()
    )
    assert verify_password("s3cret-pw", encoded)
    assert not verify_password("s3cret-pW", encoded)
    assert parse_hash(encoded) == (ScryptCost(16, 2, 3), salt, digest)


def test_the_cost_comes_from_the_string_so_it_can_be_raised() -> None:
    cheap = hash_password("pass-word", cost=CHEAP)
    assert cheap.startswith("scrypt$16$1$1$")
    assert needs_rehash(cheap)
    assert not needs_rehash(hash_password("pass-word"))
    assert needs_rehash(hash_password("pass-word", cost=CHEAP), ScryptCost(2**5, 1, 1))


def test_passwords_are_compared_after_unicode_normalisation() -> None:
    composed, decomposed = "caf\u00e9-latte", "cafe\u0301-latte"
    assert verify_password(decomposed, hash_password(composed, cost=CHEAP))


def test_a_lone_surrogate_is_hashed_not_a_crash() -> None:
    encoded = hash_password("pass\udc80word", cost=CHEAP)
    assert verify_password("pass\udc80word", encoded)
    assert not verify_password("password", encoded)


GOOD_SALT = base64.b64encode(bytes(16)).decode()
GOOD_HASH = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("", "6 fields"),
        ("plain-text-password", "6 fields"),
        (f"bcrypt$16$1$1${GOOD_SALT}${GOOD_HASH}", "scrypt\\$n\\$r\\$p"),
        (f"scrypt$16$1$1${GOOD_SALT}${GOOD_HASH}$extra", "6 fields"),
        (f"scrypt$x$1$1${GOOD_SALT}${GOOD_HASH}", "bad cost"),
        (f"scrypt$15$1$1${GOOD_SALT}${GOOD_HASH}", "power of 2"),
        (f"scrypt$1$1$1${GOOD_SALT}${GOOD_HASH}", "power of 2"),
        (f"scrypt${2**40}$1$1${GOOD_SALT}${GOOD_HASH}", "power of 2"),
        (f"scrypt$16$0$1${GOOD_SALT}${GOOD_HASH}", "r must be"),
        (f"scrypt$16$1$-1${GOOD_SALT}${GOOD_HASH}", "decimal digits"),
        (f"scrypt$16$1$0${GOOD_SALT}${GOOD_HASH}", "p in"),
        (f"scrypt$1048576$32$1${GOOD_SALT}${GOOD_HASH}", "1 GiB"),
        (f"scrypt$16$1$1$not base64!${GOOD_HASH}", "salt is not base64"),
        (f"scrypt$16$1$1${GOOD_SALT}$\u00e9\u00e9", "hash is not base64"),
        (f"scrypt$16$1$1$AAAA${GOOD_HASH}", "salt of at least 16"),
        (f"scrypt$16$1$1${GOOD_SALT}$", "digest of 16 to 64"),
        (f"scrypt$16$1$1${GOOD_SALT}${base64.b64encode(bytes(65)).decode()}", "16 to 64"),
        (f"scrypt$ 16$1$1${GOOD_SALT}${GOOD_HASH}", "decimal digits"),
        (f"scrypt$1_6$1$1${GOOD_SALT}${GOOD_HASH}", "decimal digits"),
        (f"scrypt$\u0661\u0666$1$1${GOOD_SALT}${GOOD_HASH}", "decimal digits"),
    ],
)
def test_a_malformed_hash_is_a_typed_error(encoded: str, message: str) -> None:
    with pytest.raises(PasswordHashError, match=message):
        verify_password("whatever1", encoded)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=7), st.booleans())
def test_any_string_parses_or_is_a_typed_error(parts: list[str], scrypt: bool) -> None:
    # Parsing only: a string that parses may name a cost far too big to run in a test.
    text = "$".join((["scrypt"] if scrypt else []) + parts)
    with contextlib.suppress(PasswordHashError):
        parse_hash(text)


def test_the_policy_wants_8_characters_and_not_the_user_id() -> None:
    check_policy("longenough", "jdoe")
    check_policy("\u00e9" * 8, "jdoe")
    with pytest.raises(PasswordPolicyError, match="at least 8 characters, got 7"):
        check_policy("short12", "jdoe")
    with pytest.raises(PasswordPolicyError, match="must not be the user id"):
        check_policy("j.doe-2025", "j.doe-2025")
    with pytest.raises(PasswordPolicyError, match="must not be the user id"):
        check_policy("J.Doe-2025", "j.doe-2025")
    # Counted after normalisation: 7 characters typed as 8 code points are still 7.
    with pytest.raises(PasswordPolicyError, match="got 7"):
        check_policy("cafe\u0301123", "jdoe")


def test_a_cost_outside_its_bounds_cannot_be_made() -> None:
    for n, r, p in [(3, 8, 1), (2**21, 1, 1), (2**14, 0, 1), (2**14, 8, 0), (2**20, 32, 1)]:
        with pytest.raises(ValueError):
            ScryptCost(n, r, p)
