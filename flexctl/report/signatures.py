"""E-signatures from the journal, each with its binding re-checked (21 CFR 11.70).

When a person signs a prompt, the executor hashes what was signed (batch, unit
procedure, step, the prompt's text, the value, role, meaning, printed name and
the signing time) and journals the SHA-256 with the signature (see
``Executor._prompt``). Here the hash is recomputed the same way from the
journal as stored: a value, name or time edited in the store since shows as a
broken binding, whatever the hash chain says.
"""

from __future__ import annotations

from collections.abc import Iterable

from flexctl.record.journal import EntryKind, JournalEntry
from flexctl.record.signed import prompt_signature_hash as signed_digest
from flexctl.report.rows import RejectedEntry, Signature, Timebase

INTACT = "intact"
BROKEN = "broken"
UNVERIFIABLE = "unverifiable"

#: What a signature entry must carry for its binding to be recomputed.
_SIGNED_FIELDS = ("printed_name", "signed_at", "meaning", "role")


def _signature(entry: JournalEntry, text: str | None, time: Timebase) -> Signature:
    p = entry.payload
    stored = p.get("sha256")
    missing = [name for name in _SIGNED_FIELDS if not isinstance(p.get(name), str)]
    recomputed, binding, note = "", UNVERIFIABLE, ""
    if not isinstance(stored, str) or not stored:
        note = "no SHA-256 was stored with the signature"
    elif missing:
        note = f"the signature lacks {', '.join(missing)}"
    elif text is None:
        note = "the prompt that was signed is not in the journal"
    else:
        recomputed = signed_digest(
            batch=entry.batch,
            unit_procedure=entry.unit_procedure,
            step=entry.step,
            text=text,
            value=p.get("value"),
            role=str(p["role"]),
            meaning=str(p["meaning"]),
            printed_name=str(p["printed_name"]),
            signed_at=str(p["signed_at"]),
        )
        if recomputed == stored:
            binding = INTACT
        else:
            binding = BROKEN
            note = (
                "the recomputed SHA-256 differs from the one stored at signing: what was "
                "signed (value, name, time, meaning or prompt) has changed since"
            )
    return Signature(
        at=time.at(entry.process_time, entry.utc),
        unit_procedure=entry.unit_procedure,
        step=entry.step,
        user=entry.actor,
        printed_name=str(p.get("printed_name", "")),
        signed_at=str(p.get("signed_at", "")),
        meaning=str(p.get("meaning", "")),
        role=str(p.get("role", "")),
        value=p.get("value"),
        simulated=p.get("simulated") is True,
        text=text or "",
        sha256=stored if isinstance(stored, str) else "",
        recomputed=recomputed,
        binding=binding,
        binding_note=note,
    )


def build_signatures(
    entries: Iterable[JournalEntry], time: Timebase
) -> tuple[tuple[Signature, ...], tuple[RejectedEntry, ...]]:
    """Every signature (binding checked) and every refused prompt answer, in order."""
    prompts: dict[tuple[str, str], str] = {}
    signatures: list[Signature] = []
    rejected: list[RejectedEntry] = []
    for entry in entries:
        where = (entry.unit_procedure, entry.step)
        p = entry.payload
        if entry.kind is EntryKind.PROMPT:
            if isinstance(p.get("text"), str):
                prompts[where] = str(p["text"])
            if "rejected" in p:
                rejected.append(
                    RejectedEntry(
                        time.at(entry.process_time, entry.utc),
                        entry.unit_procedure,
                        entry.step,
                        entry.actor,
                        p.get("rejected"),
                        str(p.get("why", "")),
                    )
                )
        elif entry.kind is EntryKind.SIGNATURE:
            signatures.append(_signature(entry, prompts.get(where), time))
    return tuple(signatures), tuple(rejected)
