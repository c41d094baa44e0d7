"""The historian: device samples buffered in memory and written to the store in batches.

One transaction per sample would cap the rate at what the disk commits per
second; the historian keeps samples until it holds ``batch_size`` of them, or
the oldest has waited ``max_age`` seconds of wall time (or :meth:`Historian.flush`
or :meth:`Historian.close` is called), and writes them in one transaction. The
age bound is wall time on purpose: it bounds what a killed process loses. A
write that fails keeps every sample buffered and raises :class:`HistorianError`;
the next flush tries them again, so nothing taken is lost while the historian
is open.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Protocol

from flexctl.record.store import RecordError, Sample

#: Samples per write when none is given: large enough to amortise a commit.
DEFAULT_BATCH_SIZE = 1000
#: Wall seconds the oldest buffered sample may wait for its write.
DEFAULT_MAX_AGE = 1.0


class HistorianError(RecordError):
    """The historian could not write its samples (they stay buffered), or it is closed."""


class SampleWriter(Protocol):
    """The part of :class:`~flexctl.record.store.Store` the historian needs."""

    @property
    def location(self) -> str: ...

    def write_samples(self, samples: Sequence[Sample]) -> None: ...


class Historian:
    """Buffers :class:`Sample` values and writes them to ``store`` ``batch_size`` at a time.

    Args:
        store: where the samples go; the historian does not close it.
        batch_size: how many samples trigger a write.
    """

    def __init__(
        self,
        store: SampleWriter,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_age: float | None = DEFAULT_MAX_AGE,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"historian batch_size must be at least 1, not {batch_size}")
        if max_age is not None and not max_age > 0:
            raise ValueError(f"historian max_age must be > 0 s, not {max_age}")
        self._store = store
        self._batch_size = batch_size
        self._max_age = max_age
        self._oldest = 0.0  # wall (monotonic) time the oldest buffered sample came
        self._buffer: list[Sample] = []
        self._closed = False
        self.written = 0
        """How many samples this historian has written to the store."""

    @property
    def pending(self) -> int:
        """How many samples are buffered, not yet written."""
        return len(self._buffer)

    @property
    def closed(self) -> bool:
        return self._closed

    def add(self, sample: Sample) -> None:
        """Buffer ``sample``; write the buffer once it holds ``batch_size`` samples.

        Raises:
            HistorianError: the historian is closed, or the write failed (the
                samples, this one included, stay buffered).
        """
        self.extend((sample,))

    def extend(self, samples: Iterable[Sample]) -> None:
        """Buffer every sample of ``samples``, in order, then write if it is time.

        It is time when ``batch_size`` samples are buffered, or the oldest has
        waited ``max_age`` seconds of wall time: what a crash of the process can
        lose is bounded by that, however slowly process time passes.

        Raises:
            HistorianError: the historian is closed, or the write failed (every
                sample given stays buffered).
        """
        self._check_open()
        taken = list(samples)
        for sample in taken:
            if not isinstance(sample, Sample):
                raise TypeError(f"the historian takes Sample, not {type(sample).__name__}")
        if taken and not self._buffer:
            self._oldest = time.monotonic()
        self._buffer.extend(taken)
        due = self._max_age is not None and time.monotonic() - self._oldest >= self._max_age
        if len(self._buffer) >= self._batch_size or (self._buffer and due):
            self.flush()

    def flush(self) -> int:
        """Write every buffered sample now; how many were written.

        Raises:
            HistorianError: the write failed; the samples stay buffered.
        """
        if not self._buffer:
            return 0
        # Written as one snapshot: the buffer is only emptied once the store has them.
        batch = list(self._buffer)
        try:
            self._store.write_samples(batch)
        except RecordError as exc:
            raise HistorianError(
                f"{self._store.location}: could not write {len(batch)} samples "
                f"(kept, to be written again): {exc}"
            ) from exc
        del self._buffer[: len(batch)]
        self._oldest = time.monotonic()
        self.written += len(batch)
        return len(batch)

    def close(self) -> None:
        """Write what is buffered and stop taking samples; closing again does nothing.

        Raises:
            HistorianError: the last write failed; the historian stays open with
                its samples, so ``close`` can be called again.
        """
        if self._closed:
            return
        self.flush()
        self._closed = True

    def __enter__(self) -> Historian:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise HistorianError(f"{self._store.location}: the historian is closed")
