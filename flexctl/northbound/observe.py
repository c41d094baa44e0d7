"""Taps on what the executor writes: its journal and its historian's samples.

The executor has no listener for its entries or its monitor's readings, so the
server wraps the two sinks it writes to. Each tap hands everything on first,
unchanged, and tells the observer only once the entry is stored. An observer
that fails is logged and never seen by the executor: a display must not hold a
batch (the executor holds on a journal write that raises).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog

from flexctl.record.journal import Journal, JournalEntry
from flexctl.record.store import Sample
from flexctl.supervisor.executor import SampleSink

log = structlog.get_logger("flexctl.northbound")


class JournalTap:
    """A :class:`~flexctl.record.journal.Journal` that tells ``observer`` of each stored entry."""

    def __init__(self, inner: Journal, observer: Callable[[JournalEntry], None]) -> None:
        self.inner = inner
        self._observer = observer

    def append(self, entry: JournalEntry) -> None:
        self.inner.append(entry)  # raises as the inner journal does: the executor decides
        try:
            self._observer(entry)
        except Exception:  # the display's failure, not the record's
            log.exception("northbound_journal_observer_failed", kind=entry.kind.value)

    def entries(self) -> list[JournalEntry]:
        return self.inner.entries()


class SampleTap:
    """A historian :class:`~flexctl.supervisor.executor.SampleSink` that also tells ``observer``.

    ``inner`` may be None: the samples then only reach the observer.
    """

    def __init__(self, inner: SampleSink | None, observer: Callable[[Sample], None]) -> None:
        self.inner = inner
        self._observer = observer

    def extend(self, samples: Iterable[Sample]) -> None:
        taken = list(samples)  # read once: shown and stored alike
        for sample in taken:
            try:
                self._observer(sample)
            except Exception:  # the display's failure, not the historian's
                log.exception("northbound_sample_observer_failed", device=sample.device)
        if self.inner is not None:
            self.inner.extend(taken)

    def add(self, sample: Sample) -> None:
        """One sample, as :meth:`extend` takes many."""
        self.extend((sample,))
