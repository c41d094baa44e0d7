"""The historian: batched writes, nothing lost on close or on a failed write."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexctl.record.historian import Historian, HistorianError
from flexctl.record.sqlite_store import SqliteStore
from flexctl.record.store import RecordError, Sample
from tests.record_factory import batch_info, sample


class FlakyStore:
    """The historian's view of a store: write_samples, which fails while ``down`` is set."""

    location = "flaky.db"

    def __init__(self) -> None:
        self.writes: list[list[Sample]] = []
        self.down = False

    def write_samples(self, samples: Sequence[Sample]) -> None:
        if self.down:
            raise RecordError(f"{self.location}: disk I/O error")
        self.writes.append(list(samples))

    @property
    def written(self) -> list[Sample]:
        return [s for write in self.writes for s in write]


def _historian(store: FlakyStore, batch_size: int = 3) -> Historian:
    return Historian(store, batch_size=batch_size, max_age=None)  # counts only: no wall time


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "flexctl.db") as store:
        store.create_batch(batch_info())
        yield store


def test_it_writes_once_the_buffer_holds_batch_size_samples() -> None:
    store = FlakyStore()
    historian = _historian(store, batch_size=3)
    historian.add(sample(0.0))
    historian.add(sample(1.0))
    assert (store.writes, historian.pending) == ([], 2)
    historian.add(sample(2.0))
    assert store.writes == [[sample(0.0), sample(1.0), sample(2.0)]]
    assert (historian.pending, historian.written) == (0, 3)


def test_flush_writes_what_is_buffered_and_says_how_much() -> None:
    store = FlakyStore()
    historian = _historian(store, batch_size=100)
    historian.extend(sample(float(t)) for t in range(5))
    assert historian.flush() == 5
    assert historian.flush() == 0
    assert store.writes == [[sample(float(t)) for t in range(5)]]


def test_close_writes_the_rest_then_refuses_samples_and_is_idempotent() -> None:
    store = FlakyStore()
    historian = _historian(store, batch_size=10)
    historian.extend([sample(0.0), sample(1.0)])
    historian.close()
    assert historian.closed
    assert store.written == [sample(0.0), sample(1.0)]
    historian.close()
    assert len(store.writes) == 1
    with pytest.raises(HistorianError, match="closed"):
        historian.add(sample(2.0))


def test_a_failed_write_keeps_every_sample_and_raises_a_typed_error() -> None:
    store = FlakyStore()
    historian = _historian(store, batch_size=2)
    historian.add(sample(0.0))
    store.down = True
    with pytest.raises(HistorianError, match=r"flaky.db: could not write 2 samples") as caught:
        historian.add(sample(1.0))
    assert isinstance(caught.value, RecordError)
    assert isinstance(caught.value.__cause__, RecordError)
    assert historian.pending == 2
    with pytest.raises(HistorianError):
        historian.add(sample(2.0))  # still down: this one is kept too
    store.down = False
    assert historian.flush() == 3
    assert store.written == [sample(0.0), sample(1.0), sample(2.0)]


def test_close_that_cannot_write_stays_open_and_can_be_retried() -> None:
    store = FlakyStore()
    historian = _historian(store, batch_size=10)
    historian.add(sample(0.0))
    store.down = True
    with pytest.raises(HistorianError):
        historian.close()
    assert not historian.closed and historian.pending == 1
    store.down = False
    historian.close()
    assert historian.closed and store.written == [sample(0.0)]


def test_the_context_manager_closes_and_flushes() -> None:
    store = FlakyStore()
    with _historian(store, batch_size=10) as historian:
        historian.add(sample(0.0))
    assert historian.closed and store.written == [sample(0.0)]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        _historian(FlakyStore(), batch_size=0)
    with pytest.raises(TypeError):
        _historian(FlakyStore()).add((0.0, 1.0))  # type: ignore[arg-type]


def test_it_writes_into_a_sqlite_store(sqlite: SqliteStore) -> None:
    samples = [sample(float(t), t * 0.5) for t in range(25)]
    with Historian(sqlite, batch_size=10, max_age=None) as historian:
        historian.extend(samples)
        assert len(sqlite.samples("B-1")) == 25  # past batch_size: all written at once
    assert sqlite.samples("B-1") == samples


def test_a_sqlite_write_refused_whole_keeps_the_samples(sqlite: SqliteStore) -> None:
    historian = Historian(sqlite, batch_size=10)
    historian.add(sample(0.0))
    historian.add(Sample("B-2", "freezer", "temperature", 1.0, sample(0.0).utc, -80.0))
    with pytest.raises(HistorianError, match="no batch 'B-2'"):
        historian.flush()
    assert historian.pending == 2 and sqlite.samples("B-1") == []
    sqlite.create_batch(batch_info("B-2"))
    historian.close()
    assert len(sqlite.samples("B-1")) == 1 and len(sqlite.samples("B-2")) == 1


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 8),
    st.lists(st.sampled_from(["add", "flush", "fail", "heal"]), max_size=60),
)
def test_whatever_happens_every_sample_is_written_once_in_order(
    batch_size: int, operations: list[str]
) -> None:
    store = FlakyStore()
    historian = _historian(store, batch_size=batch_size)
    added: list[Sample] = []
    for operation in operations:
        try:
            if operation == "add":
                added.append(sample(float(len(added))))
                historian.add(added[-1])
            elif operation == "flush":
                historian.flush()
        except HistorianError:
            assert store.down
        store.down = {"fail": True, "heal": False}.get(operation, store.down)
        assert store.written + added[len(store.written) :] == added
        assert historian.pending == len(added) - len(store.written)
    store.down = False
    historian.close()
    assert store.written == added
    assert all(len(write) >= 1 for write in store.writes)


def test_a_sample_waits_no_longer_than_max_age_of_wall_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a killed process loses is bounded in wall time, however slowly samples come."""
    wall = [100.0]
    monkeypatch.setattr("flexctl.record.historian.time.monotonic", lambda: wall[0])
    store = FlakyStore()
    historian = Historian(store, batch_size=1000, max_age=1.0)
    historian.add(sample(0.0))
    wall[0] += 0.5
    historian.add(sample(1.0))
    assert store.written == []  # younger than max_age: kept for a bigger write
    wall[0] += 0.6
    historian.add(sample(2.0))
    assert store.written == [sample(0.0), sample(1.0), sample(2.0)]
    with pytest.raises(ValueError, match="max_age"):
        Historian(store, max_age=0.0)
