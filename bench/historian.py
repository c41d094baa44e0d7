"""Write rates of the record store next to bare sqlite3, in one run, on fresh files.

Historian: N samples (default 200,000) through ``Historian`` into a fresh
``SqliteStore``, and the same rows through raw ``sqlite3.executemany`` into an
equivalent bare table (same columns and index, WAL, synchronous=NORMAL, the
same number of rows per transaction). The samples are made before the clock
starts for both, so the figures compare the writing alone.

Journal: M entries (default 20,000) through ``SqliteJournal.append``, each its
own durable transaction with its hash chained, next to raw single-row
INSERT + COMMIT transactions.

Goal: >= 50,000 samples/s through flexctl.

Usage: python bench/historian.py [--samples N] [--batch-size N] [--entries M] [--dir PATH]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flexctl.record.canonical import utc_text
from flexctl.record.historian import Historian
from flexctl.record.journal import EntryKind, JournalEntry
from flexctl.record.sqlite_store import SqliteStore
from flexctl.record.store import BatchInfo, Sample

GOAL_SAMPLES_PER_S = 50_000
T0 = datetime(2025, 1, 1, tzinfo=UTC)
SIGNALS = ("temperature", "ph", "do", "rocking_rate", "weight")


def _batch() -> BatchInfo:
    return BatchInfo(
        batch_id="BENCH-1",
        procedure_name="bench",
        procedure_version="1",
        procedure_path="bench.yaml",
        procedure_sha256="0" * 64,
        procedure_text="",
        line_name="sim",
        line_path="sim.yaml",
        line_text="",
        parameters={},
        seed=1,
        simulated=True,
        devices={},
        created_utc=T0,
        created_by="bench",
    )


def _samples(count: int) -> list[Sample]:
    return [
        Sample(
            batch="BENCH-1",
            device="bioreactor",
            signal=SIGNALS[n % len(SIGNALS)],
            process_time=n * 0.2,
            utc=T0 + timedelta(seconds=n * 0.2),
            value=37.0 + (n % 100) / 1000,
        )
        for n in range(count)
    ]


def _timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def bench_historian(folder: Path, count: int, batch_size: int) -> tuple[float, float]:
    """Seconds to write ``count`` samples through flexctl, and through bare sqlite3."""
    samples = _samples(count)
    with SqliteStore(folder / "flexctl.db") as store:
        store.create_batch(_batch())

        def through_flexctl() -> None:
            with Historian(store, batch_size=batch_size) as historian:
                for sample in samples:
                    historian.add(sample)

        flexctl_s = _timed(through_flexctl)
        assert len(store.samples("BENCH-1", signal="ph")) == len(samples[1::5])

    rows = [
        (s.batch, s.device, s.signal, s.process_time, utc_text(s.utc), s.value) for s in samples
    ]
    conn = sqlite3.connect(folder / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE samples (batch TEXT, device TEXT, signal TEXT, process_time, utc TEXT, value)"
    )
    conn.execute("CREATE INDEX samples_signal ON samples (batch, signal, process_time)")

    def through_sqlite() -> None:
        for start in range(0, len(rows), batch_size):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?)", rows[start : start + batch_size]
            )
            conn.execute("COMMIT")

    raw_s = _timed(through_sqlite)
    conn.close()
    return flexctl_s, raw_s


def bench_journal(folder: Path, count: int) -> tuple[float, float]:
    """Seconds to append ``count`` journal entries one transaction each: flexctl, bare sqlite3."""
    entries = [
        JournalEntry(
            process_time=n * 1.0,
            utc=T0 + timedelta(seconds=n),
            kind=EntryKind.COMMAND,
            actor="system",
            batch="BENCH-1",
            unit_procedure="expand",
            step="feed",
            device="bioreactor",
            payload={"command": "set_setpoint", "signal": "temperature", "value": 37.0},
        )
        for n in range(count)
    ]
    with SqliteStore(folder / "journal.db") as store:
        store.create_batch(_batch())
        journal = store.journal("BENCH-1")

        def through_flexctl() -> None:
            for entry in entries:
                journal.append(entry)

        flexctl_s = _timed(through_flexctl)
        assert store.verify().ok

    conn = sqlite3.connect(folder / "raw_journal.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, batch TEXT, payload TEXT)")
    payload = '{"command":"set_setpoint","signal":"temperature","value":37.0}'

    def through_sqlite() -> None:
        for _ in range(count):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO journal (batch, payload) VALUES (?, ?)", ("BENCH-1", payload))
            conn.execute("COMMIT")

    raw_s = _timed(through_sqlite)
    conn.close()
    return flexctl_s, raw_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1000, help="samples per transaction")
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--dir", type=Path, help="where the files go (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as name:
        folder = Path(name)
        flexctl_s, raw_s = bench_historian(folder, args.samples, args.batch_size)
        journal_s, raw_journal_s = bench_journal(folder, args.entries)
    rate, raw_rate = args.samples / flexctl_s, args.samples / raw_s
    verdict = "ok" if rate >= GOAL_SAMPLES_PER_S else "MISSED"
    entry_rate, raw_entry_rate = args.entries / journal_s, args.entries / raw_journal_s
    for line in (
        f"historian: {args.samples} samples, {args.batch_size} per transaction",
        _row("flexctl Historian", rate, "samples", flexctl_s),
        _row("raw sqlite3 executemany", raw_rate, "samples", raw_s),
        f"  flexctl / raw: {rate / raw_rate:.2f}x   "
        f"(goal >= {GOAL_SAMPLES_PER_S:,} samples/s: {verdict})",
        f"journal: {args.entries} appends, one durable transaction each",
        _row("flexctl journal.append", entry_rate, "entries", journal_s),
        _row("raw sqlite3 INSERT+COMMIT", raw_entry_rate, "entries", raw_journal_s),
        f"  flexctl / raw: {entry_rate / raw_entry_rate:.2f}x",
    ):
        print(line)


def _row(what: str, rate: float, unit: str, seconds: float) -> str:
    return f"  {what:<26} {rate:12,.0f} {unit}/s   {seconds:7.3f} s"


if __name__ == "__main__":
    main()
