"""A small batch in a record store, for the report tests: every kind of entry once or more.

Batch ``B-7`` of ``mini-car-t``: thaw (a signed prompt, a command), expansion
(the ``grow`` step interrupted by an interlock hold, restarted by a person and
run again; an alarm raised and cleared; a deviation; a signed review),
cryopreservation (a command, a recorded measurement; the last step never runs
because a person stops the batch). Historian samples for the bioreactor, the
thaw device, the freezer and a text signal of the processor; two audit records
of the batch and one of another batch.

Signatures carry the SHA-256 the executor computes (``Executor._prompt``),
written out here a second time so the report's own recomputation is checked
against it, not against itself (tests/test_report_model.py also checks it
against a real executor's).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from flexctl.record.journal import EntryKind, JournalEntry, JSONValue
from flexctl.record.sqlite_store import SqliteStore
from flexctl.record.store import AuditRecord, BatchInfo, Sample
from tests.record_factory import T0, batch_info

BATCH = "B-7"
HOUR = 3600.0
DAY = 86_400.0
#: Process times of the batch: its start (the clock does not start at 0), the hold, the restart...
START = 100.0
GROW = START + 2100
TRIP = GROW + 2 * DAY
RESTART = TRIP + 2 * HOUR
COUNT = RESTART + DAY + 60
FREEZE = COUNT + 1000
END = FREEZE + 6000

PROCEDURE = """\
procedure: mini-car-t
version: "2.1"
parameters:
  target_dose: {type: float, unit: cells, default: 1.0e9}
  coi_id: {type: text, pattern: "^[A-Z0-9-]{6,32}$"}
unit_procedures:
  - name: thaw
    steps:
      - id: bag_id
        prompt: Scan the bag's chain-of-identity label
        entry: {type: text}
        role: operator
      - {id: thaw, command: thaw.run_thaw}
  - name: expansion
    steps:
      - {id: seed, command: bioreactor.seed, args: {volume_ml: 500}}
      - id: grow
        wait_until: bioreactor.sample_vcd > 1e6
        timeout: 5 d
        poll: 1 h
      - {id: count, command: bioreactor.take_sample}
      - {id: review, prompt: Review the expansion trends, role: supervisor, meaning: verified}
  - name: cryopreservation
    steps:
      - {id: freeze, command: freezer.run_profile, args: {name: standard_bag}}
      - {id: freeze_end_state, record: freezer.program_state}
      - {id: to_storage, wait: 1 min}
"""

DEVICES: dict[str, dict[str, JSONValue]] = {
    "thaw": {
        "driver": "thaw",
        "profile": "thaw.opcua",
        "transport": "opcua",
        "source": "opc.tcp://127.0.0.1:4841",
        "serial": "TH-0001",
    },
    "bioreactor": {
        "driver": "bioreactor",
        "profile": "bioreactor.modbus",
        "transport": "modbus-tcp",
        "source": "modbus://127.0.0.1:5020",
        "serial": "BR-0042",
        "firmware": "3.1.4",
    },
    "freezer": {
        "driver": "freezer",
        "profile": "freezer.serial",
        "transport": "serial",
        "source": "serial:///dev/ttyUSB0",
        "serial": None,
    },
}


def signed_sha256(entry: JournalEntry, text: str) -> str:
    """What ``Executor._prompt`` binds a signature to (a copy of its code, on purpose)."""
    p = entry.payload
    signed = {
        "batch": entry.batch,
        "unit_procedure": entry.unit_procedure,
        "step": entry.step,
        "text": text,
        "value": p["value"],
        "role": p["role"],
        "meaning": p["meaning"],
        "printed_name": p["printed_name"],
        "signed_at": p["signed_at"],
    }
    return hashlib.sha256(
        json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


@dataclass
class Journal:
    """Entries of one batch, stamped with process time ``t`` (seconds) and the UTC it stands for."""

    batch: str = BATCH
    entries: list[JournalEntry] = field(default_factory=list)

    def add(
        self,
        kind: EntryKind,
        t: float,
        *,
        actor: str = "system",
        unit_procedure: str = "",
        step: str = "",
        device: str = "",
        **payload: JSONValue,
    ) -> JournalEntry:
        entry = JournalEntry(
            process_time=t,
            utc=T0 + timedelta(seconds=t),
            kind=kind,
            actor=actor,
            batch=self.batch,
            unit_procedure=unit_procedure,
            step=step,
            device=device,
            payload=payload,
        )
        self.entries.append(entry)
        return entry

    def state(self, t: float, old: str, new: str, command: str, *, by: str, reason: str) -> None:
        self.add(
            EntryKind.BATCH_STATE,
            t,
            actor=by,
            old=old,
            new=new,
            command=command,
            reason=reason,
        )

    def step(
        self,
        unit: str,
        step: str,
        kind: str,
        start: float,
        end: float,
        *,
        attempt: int = 1,
        result: str = "done",
        sent: tuple[str, str, dict[str, JSONValue]] | None = None,
        **end_payload: JSONValue,
    ) -> None:
        """A step's attempt; ``sent``: the (device, method, args) command it sends."""
        self.add(
            EntryKind.STEP_START,
            start,
            unit_procedure=unit,
            step=step,
            step_kind=kind,
            attempt=attempt,
            description="",
        )
        if sent is not None:
            device, method, args = sent
            where = {"unit_procedure": unit, "step": step, "device": device}
            self.add(EntryKind.COMMAND, start, **where, method=method, args=args)
            self.add(EntryKind.COMMAND_RESULT, end, **where, method=method, result=None)
        self.add(
            EntryKind.STEP_END, end, unit_procedure=unit, step=step, result=result, **end_payload
        )

    def signed(
        self,
        unit: str,
        step: str,
        t: float,
        *,
        text: str,
        value: JSONValue,
        user: str,
        printed_name: str,
        role: str,
        meaning: str,
        simulated: bool = False,
    ) -> None:
        """A prompt, its signature (with its binding) and the step's end, all at ``t``."""
        self.add(
            EntryKind.STEP_START, t, unit_procedure=unit, step=step, step_kind="prompt", attempt=1
        )
        self.add(
            EntryKind.PROMPT,
            t,
            unit_procedure=unit,
            step=step,
            text=text,
            role=role,
            meaning=meaning,
            entry=None,
        )
        signed_at = (T0 + timedelta(seconds=t)).isoformat()
        signature = self.add(
            EntryKind.SIGNATURE,
            t,
            actor=user,
            unit_procedure=unit,
            step=step,
            printed_name=printed_name,
            signed_at=signed_at,
            meaning=meaning,
            role=role,
            value=value,
            simulated=simulated,
            sha256="",
        )
        bound = replace(
            signature,
            payload={**signature.payload, "sha256": signed_sha256(signature, text)},
        )
        self.entries[-1] = bound
        self.add(
            EntryKind.STEP_END,
            t,
            unit_procedure=unit,
            step=step,
            result="done",
            fields={"value": value, "signer": user},
        )


def journal(*, hold_reason: str = "batch Holding") -> Journal:
    """The whole journal of B-7 (``hold_reason``: why the first ``grow`` attempt ended)."""
    j = Journal()
    j.add(
        EntryKind.PARAMETER,
        90,
        actor="alice",
        name="target_dose",
        value=1.0e9,
        unit="cells",
        type="float",
        default=True,
    )
    j.add(
        EntryKind.PARAMETER,
        90,
        actor="alice",
        name="coi_id",
        value="COI-123456",
        unit=None,
        type="text",
        default=False,
    )
    for name, spec in DEVICES.items():
        j.add(
            EntryKind.RECORD,
            95,
            device=name,
            record="device origin",
            origin="in-process twin",
            driver=spec["driver"],
        )
    j.state(START, "Idle", "Running", "Start", by="alice", reason="procedure mini-car-t 2.1")
    j.signed(
        "thaw",
        "bag_id",
        START + 60,
        text="Scan the bag's chain-of-identity label",
        value="COI-123456",
        user="jdoe",
        printed_name="Jane Doe",
        role="operator",
        meaning="performed",
    )
    j.step(
        "thaw",
        "thaw",
        "command",
        START + 60,
        START + 1860,
        sent=("thaw", "run_thaw", {}),
        fields={"final_temp_c": 4.1},
    )
    j.step("expansion", "seed", "command", GROW - 100, GROW - 40, fields={"volume_ml": 500.0})
    trip = TRIP
    j.add(
        EntryKind.STEP_START,
        GROW,
        unit_procedure="expansion",
        step="grow",
        step_kind="wait_until",
        attempt=1,
    )
    j.add(
        EntryKind.INTERLOCK,
        trip - 600,
        unit_procedure="expansion",
        device="bioreactor",
        interlock="band:bioreactor_temp",
        event="out of band",
        value=38.4,
        band="[36, 38]",
    )
    j.add(
        EntryKind.INTERLOCK,
        trip,
        unit_procedure="expansion",
        device="bioreactor",
        interlock="band:bioreactor_temp",
        state="Running",
        action="hold",
        value=38.6,
        reason="bioreactor.temperature = 38.6 outside [36, 38] for 600 s (delay 600 s)",
    )
    j.state(
        trip, "Running", "Holding", "Hold", by="system", reason="interlock band:bioreactor_temp"
    )
    j.add(
        EntryKind.STEP_END,
        trip,
        unit_procedure="expansion",
        step="grow",
        result="interrupted",
        reason=hold_reason,
    )
    j.add(
        EntryKind.ALARM,
        trip + 30,
        device="bioreactor",
        active=["HIGH_TEMP"],
        raised=["HIGH_TEMP"],
        cleared=[],
    )
    j.state(trip + 60, "Holding", "Held", "Hold", by="system", reason="devices in their hold state")
    j.add(
        EntryKind.ALARM,
        trip + HOUR,
        device="bioreactor",
        active=[],
        raised=[],
        cleared=["HIGH_TEMP"],
    )
    restart = RESTART
    j.state(restart, "Held", "Restarting", "Restart", by="bob", reason="temperature back in band")
    j.add(
        EntryKind.INTERLOCK,
        restart,
        device="bioreactor",
        event="restart check",
        status="idle",
        alarms=[],
    )
    j.state(restart, "Restarting", "Running", "Restart", by="system", reason="device state re-read")
    j.step(
        "expansion",
        "grow",
        "wait_until",
        restart,
        restart + DAY,
        attempt=2,
        fields={"elapsed_s": DAY, "timed_out": False},
    )
    count = COUNT
    # A rule's command (no step attempt) that failed.
    j.add(
        EntryKind.COMMAND,
        count - 30,
        unit_procedure="expansion",
        step="feed_rule",
        device="bioreactor",
        method="feed",
        args={"volume_ml": 50.0},
    )
    j.add(
        EntryKind.COMMAND_RESULT,
        count - 29,
        unit_procedure="expansion",
        step="feed_rule",
        device="bioreactor",
        method="feed",
        error="DeviceBusyError: bioreactor busy",
    )
    j.add(
        EntryKind.DEVIATION,
        count,
        unit_procedure="expansion",
        step="count",
        device="bioreactor",
        deviation="wait_until timeout",
        message="sample taken 1 h late; continued",
        on_timeout="continue",
    )
    j.step(
        "expansion",
        "count",
        "command",
        count,
        count + 300,
        fields={"vcd_per_ml": 2.1e6, "viability_pct": 91.5, "viable_cells": 1.2e9},
    )
    j.signed(
        "expansion",
        "review",
        count + 400,
        text="Review the expansion trends",
        value=True,
        user="qa1",
        printed_name="Quinn Adams",
        role="supervisor",
        meaning="verified",
    )
    j.step(
        "cryopreservation",
        "freeze",
        "command",
        FREEZE,
        FREEZE + 6000,
        sent=("freezer", "run_profile", {"name": "standard_bag"}),
        fields={"bags_filled": 2},
    )
    end = END
    j.add(
        EntryKind.STEP_START,
        end,
        unit_procedure="cryopreservation",
        step="freeze_end_state",
        step_kind="record",
        attempt=1,
    )
    j.add(
        EntryKind.RECORD,
        end,
        unit_procedure="cryopreservation",
        step="freeze_end_state",
        device="freezer",
        expression="freezer.program_state",
        value="complete",
        unit="",
    )
    j.add(
        EntryKind.STEP_END,
        end,
        unit_procedure="cryopreservation",
        step="freeze_end_state",
        result="done",
        fields={"value": "complete"},
    )
    j.state(end + 10, "Running", "Stopping", "Stop", by="alice", reason="storage by hand")
    j.state(
        end + 20,
        "Stopping",
        "Stopped",
        "Stop",
        by="system",
        reason="stopped after the current step",
    )
    return j


def batch(*, simulated: bool = True) -> BatchInfo:
    text = PROCEDURE
    return replace(
        batch_info(BATCH, simulated=simulated),
        procedure_name="mini-car-t",
        procedure_version="2.1",
        procedure_path="procedures/mini-car-t.yaml",
        procedure_sha256=hashlib.sha256(text.encode()).hexdigest(),
        procedure_text=text,
        parameters={"target_dose": 1.0e9, "coi_id": "COI-123456"},
        devices=DEVICES,
    )


def samples() -> list[Sample]:
    """Bioreactor (hourly for 3 days, counts daily), a thaw, a freeze and a text signal."""
    out: list[Sample] = []

    def add(device: str, signal: str, t: float, value: float | str) -> None:
        out.append(Sample(BATCH, device, signal, t, T0 + timedelta(seconds=t), value))

    for minute in range(0, 31):
        t = START + 60 + minute * 60.0
        add("thaw", "plate_temperature", t, 37.0)
        add("thaw", "sample_temperature", t, min(4.0, -80.0 + 3.0 * minute))
    for half_day in range(6):  # idle: sampled now and then for the rest of the batch
        t = GROW + half_day * DAY / 2
        add("thaw", "plate_temperature", t, 21.0)
        add("thaw", "sample_temperature", t, 21.0)
    for hour in range(0, 3 * 24):
        t = GROW + hour * HOUR
        add("bioreactor", "temperature", t, 37.0 + (0.5 if 47 <= hour <= 49 else 0.0))
        add("bioreactor", "do", t, 60.0 - hour * 0.2)
        add("bioreactor", "ph", t, 7.2 - hour * 0.002)
        add("bioreactor", "volume", t, 500.0 + hour * 5.0)
    for day in range(0, 4):
        t = GROW + day * DAY
        add("bioreactor", "sample_vcd", t, 0.5e6 * 1.8**day)
        add("bioreactor", "sample_viability", t, 95.0 - day)
    for minute in range(0, 101):
        t = FREEZE + minute * 60.0
        add("freezer", "chamber_temperature", t, 4.0 - 1.1 * minute)
        add("freezer", "sample_temperature", t, 4.0 - 1.0 * minute)
    add("processor", "step_name", GROW, "idle")
    return out


def audit_records() -> list[AuditRecord]:
    return [
        AuditRecord(
            utc=T0 + timedelta(seconds=80),
            actor="alice",
            action="batch created",
            object=f"batch:{BATCH}",
            new_value={"procedure": "mini-car-t 2.1"},
            reason="planned batch",
            batch=BATCH,
        ),
        AuditRecord(
            utc=T0 + timedelta(seconds=START + 5),
            actor="alice",
            action="parameter changed",
            object="parameter:target_dose",
            old_value=2.0e9,
            new_value=1.0e9,
            reason="dose per <prescription>",
            batch=BATCH,
            process_time=START + 5,
        ),
    ]


def report_store(
    path: Path, *, simulated: bool = True, hold_reason: str = "batch Holding"
) -> SqliteStore:
    """A store at ``path`` holding B-7 (and a second batch, which the report must leave out)."""
    store = SqliteStore(path)
    store.create_batch(batch(simulated=simulated))
    store.create_batch(batch_info("OTHER"))
    other = Journal(batch="OTHER")
    other.state(0.0, "Idle", "Running", "Start", by="carol", reason="")
    for entry in journal(hold_reason=hold_reason).entries:
        store.append_entry(entry)
    for entry in other.entries:
        store.append_entry(entry)
    for record in audit_records():
        store.audit(record)
    store.audit(replace(audit_records()[0], batch="OTHER", object="batch:OTHER"))
    store.write_samples(samples())
    return store
