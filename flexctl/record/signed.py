"""What a prompt's e-signature is bound to: one hash, computed in one place (21 CFR 11.70).

The executor stores it with the signature; the batch report computes it again
from the journal to show that the signature still matches what was signed.
"""

from __future__ import annotations

from flexctl.record.canonical import sha256_hex
from flexctl.record.journal import JSONValue


def prompt_signature_hash(
    *,
    batch: str,
    unit_procedure: str,
    step: str,
    text: str,
    value: JSONValue,
    role: str,
    meaning: str,
    printed_name: str,
    signed_at: str,
) -> str:
    """SHA-256 (hex) of the canonical encoding of a signed prompt answer."""
    return sha256_hex(
        {
            "batch": batch,
            "unit_procedure": unit_procedure,
            "step": step,
            "text": text,
            "value": value,
            "role": role,
            "meaning": meaning,
            "printed_name": printed_name,
            "signed_at": signed_at,
        }
    )
