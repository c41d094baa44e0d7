"""``flexctl resume`` and ``flexctl run`` facing an unfinished batch: what they refuse, and why.

The happy path (a real supervisor killed and resumed 20 times) is in
tests/test_resume_kill.py; these are the refusals, each exit 2 with a message.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from record_factory import batch_info

from flexctl.cli.main import main
from flexctl.record.batch_record import create_batch
from flexctl.record.journal import EntryKind, JournalEntry
from flexctl.record.lock import supervisor_lock
from flexctl.record.sqlite_store import SqliteStore

ROOT = Path(__file__).resolve().parent.parent
CAR_T = ROOT / "procedures" / "car-t.yaml"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _unfinished(db: Path, origin: str, *, batch_id: str = "B-OLD") -> None:
    """A car-t batch in the store that started and never ended, its devices of ``origin``."""
    text = CAR_T.read_text()
    info = dataclasses.replace(
        batch_info(batch_id),
        procedure_path=str(CAR_T),
        procedure_text=text,
        procedure_sha256=hashlib.sha256(CAR_T.read_bytes()).hexdigest(),
        parameters={"coi_id": "PAT-000123"},
        devices={name: {"origin": origin} for name in ("bioreactor", "processor", "thaw")},
    )
    with SqliteStore(db) as store:
        record = create_batch(store, info, process_time=0.0)
        record.append(
            JournalEntry(
                process_time=0.0,
                utc=T0,
                kind=EntryKind.BATCH_STATE,
                actor="alice",
                batch=batch_id,
                payload={"old": "Idle", "new": "Running", "command": "Start", "reason": "go"},
            )
        )


def test_a_batch_whose_twins_died_with_its_supervisor_cannot_be_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "flexctl.db"
    _unfinished(db, "twin")
    assert main(["resume", "B-OLD", "--db", str(db)]) == 2
    assert "ended with it" in capsys.readouterr().err


def test_a_second_supervisor_on_the_same_store_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "flexctl.db"
    _unfinished(db, "external twin")
    with supervisor_lock(db):  # a live supervisor holds the store
        assert main(["resume", "B-OLD", "--db", str(db)]) == 2
        err = capsys.readouterr().err
        assert "another supervisor" in err
        assert main(["run", str(CAR_T), "--db", str(db)]) == 2
        assert "another supervisor" in capsys.readouterr().err


def test_run_refuses_a_new_batch_while_the_line_is_busy_with_a_resumable_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "flexctl.db"
    _unfinished(db, "hardware")  # its devices outlived its supervisor
    argv = ["run", str(CAR_T), "--db", str(db)]
    assert main([*argv, "--param", "coi_id=PAT-999999"]) == 2
    err = capsys.readouterr().err
    assert "busy with unfinished batch B-OLD" in err and "coi_id" in err
    assert main([*argv, "--batch-id", "B-NEW"]) == 2
    assert "asks for batch B-NEW" in capsys.readouterr().err
    with SqliteStore(db, create=False) as store:
        assert [b.batch_id for b in store.batches()] == ["B-OLD"]  # nothing new was started


def test_a_finished_or_unknown_batch_is_not_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "flexctl.db"
    assert main(["resume", "B-OLD", "--db", str(db)]) == 2  # no store: never created
    assert not db.exists()
    _unfinished(db, "external twin")
    assert main(["resume", "B-NOPE", "--db", str(db)]) == 2
    assert "B-NOPE" in capsys.readouterr().err


def test_a_batch_resumes_the_procedure_as_it_was_run_not_as_the_file_is_now(
    tmp_path: Path,
) -> None:
    from flexctl.cli.resume import _as_run

    run_as = tmp_path / "p.yaml"
    run_as.write_text("procedure: p  # as run\n")
    copy = tmp_path / "copies" / "procedure.yaml"
    assert _as_run(str(run_as), run_as.read_text(), copy) == run_as  # unchanged: the file
    stored = run_as.read_text()
    run_as.write_text("procedure: p  # edited since\n")
    assert _as_run(str(run_as), stored, copy) == copy
    assert copy.read_text() == stored
