"""Crash-safe resume: the whole car-t batch, its supervisor SIGKILLed at 20 random moments.

The twins run in their own process (``flexctl sim serve``, scaled time), so they
outlive the supervisor as hardware would. The supervisor is a real
``flexctl run`` subprocess writing to a SQLite store; it is killed with SIGKILL
at a random moment after its batch is recorded, then started again (by turns
``flexctl run``, which finds the unfinished batch, and ``flexctl resume``).
After every kill the audit chains verify; at the end the batch is Complete,
every journal entry written before each kill is still there, unchanged, and
no finished step ran twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flexctl.record.batch_record import audit_record
from flexctl.record.journal import EntryKind
from flexctl.record.sqlite_store import SqliteStore

ROOT = Path(__file__).resolve().parent.parent
CAR_T = ROOT / "procedures" / "car-t.yaml"
SPEED = 20_000  # process seconds per wall second: the ~8.3 d batch in ~40 s of wall time
KILLS = 20
SEED = int(os.environ.get("FLEXCTL_KILL_SEED", "20261125"))  # to try other kill moments
FLEXCTL = [sys.executable, "-m", "flexctl.cli.main"]

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[Path]:
    """``flexctl sim serve`` in its own process; its endpoints file."""
    endpoints = tmp_path / "endpoints.json"
    serve = subprocess.Popen(
        [
            *FLEXCTL,
            "sim",
            "serve",
            "--line",
            "sim",
            "--speed",
            str(SPEED),
            "--endpoints",
            str(endpoints),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not endpoints.exists():
            assert serve.poll() is None, serve.stderr.read() if serve.stderr else ""
            assert time.monotonic() < deadline, "flexctl sim serve did not come up"
            time.sleep(0.05)
        json.loads(endpoints.read_text())
        yield endpoints
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=20)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        if serve.stderr is not None:
            serve.stderr.close()


def _supervisor(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)


def _wait_recorded(process: subprocess.Popen[bytes], log: Path, since: int) -> None:
    """Until the supervisor has said its batch is in the store (or it ended)."""
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if b"record: batch" in log.read_bytes()[since:]:
            return
        time.sleep(0.01)


def _journal(db: Path) -> list[tuple[int, str]]:
    with SqliteStore(db, create=False) as store:
        (batch,) = store.batches()
        return [(e.seq, e.hash) for e in store.journal_entries(batch.batch_id)]


def test_a_batch_killed_20_times_resumes_and_completes(twins: Path, tmp_path: Path) -> None:
    db = tmp_path / "flexctl.db"
    log = tmp_path / "supervisor.log"
    run = [*FLEXCTL, "run", str(CAR_T), "--twins", "external", "--endpoints", str(twins)]
    run += ["--db", str(db), "--monitor-period", "10 min"]
    rng = random.Random(SEED)
    before_kills: list[list[tuple[int, str]]] = []
    batch_id = ""
    for kill in range(KILLS + 1):
        if kill == 0 or kill % 2 == 1:
            args = run
        else:
            args = [*FLEXCTL, "resume", batch_id, "--db", str(db), "--endpoints", str(twins)]
            args += ["--twins", "external", "--monitor-period", "10 min"]
        since = log.stat().st_size if log.exists() else 0
        process = _supervisor(args, log)
        if kill == KILLS:
            assert process.wait(timeout=240) == 0, log.read_text()[-3000:]
            break
        _wait_recorded(process, log, since)
        time.sleep(rng.uniform(0.2, 1.6))
        assert process.poll() is None, (
            f"the batch ended before kill {kill + 1}: {log.read_text()[-3000:]}"
        )
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        with SqliteStore(db, create=False) as store:
            assert store.verify().ok, store.verify()
            (batch,) = store.batches()  # one batch, resumed each time
            batch_id = batch.batch_id
        before_kills.append(_journal(db))

    final = _journal(db)
    for n, kept in enumerate(before_kills):
        assert final[: len(kept)] == kept, f"entries written before kill {n + 1} changed"
    with SqliteStore(db, create=False) as store:
        assert store.verify().ok
        entries = store.journal(batch_id).entries()
        audited = store.audit_entries(batch=batch_id)
        samples = store.samples(batch_id, device="bioreactor", signal="temperature")
    # Every GMP-relevant journal entry has its audit record (written in one transaction).
    expected = [audit_record(e) for e in entries]
    assert [a.record for a in audited[1:]] == [r for r in expected if r is not None]
    # The historian kept the culture's temperature across the restarts.
    assert samples and samples[-1].process_time - samples[0].process_time > 6 * 86400
    states = [e.payload.get("new") for e in entries if e.kind is EntryKind.BATCH_STATE]
    assert states[-1] == "Complete"
    restores = [
        e
        for e in entries
        if e.kind is EntryKind.BATCH_STATE and e.payload.get("command") == "restore"
    ]
    assert len(restores) == KILLS
    times = [e.process_time for e in entries]
    assert times == sorted(times), "process time went backwards across a restart"
    # No step finished twice, and every step of the procedure finished.
    done = [
        e.step for e in entries if e.kind is EntryKind.STEP_END and e.payload["result"] == "done"
    ]
    assert len(done) == len(set(done))
    assert done[-1] == "ln2_storage"
