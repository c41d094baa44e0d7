"""The Start method runs the batch: the task of :meth:`Executor.run`, owned here.

``Executor.run`` gives the Start command itself, before its first await, so
:meth:`BatchRunner.start` yields to it until the batch has left Idle (or the
run failed at once) and can answer the client with the new state.
"""

from __future__ import annotations

import asyncio

import structlog

from flexctl.northbound.calls import CallError
from flexctl.supervisor.batch_state import BatchCommand, BatchState, IllegalCommand
from flexctl.supervisor.executor import Executor

log = structlog.get_logger("flexctl.northbound")

# Turns of the loop run() may take to give Start (it takes one).
_START_TURNS = 100


class BatchRunner:
    """Owns the run of the batch started over OPC UA."""

    def __init__(self) -> None:
        self.task: asyncio.Task[BatchState] | None = None
        self._started = asyncio.Event()

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    async def start(self, executor: Executor, actor: str) -> BatchState:
        """Run ``executor``'s batch as ``actor``; returns the state once Start is given.

        Raises:
            IllegalCommand: the batch is not Idle.
            CallError: the batch runs already (BadInvalidState).
        """
        if self.running:
            raise CallError("BadInvalidState", "the batch is already running")
        if executor.state is not BatchState.Idle:
            raise IllegalCommand(executor.state, BatchCommand.Start, executor.machine.allowed())
        task = asyncio.get_running_loop().create_task(
            executor.run(actor=actor), name=f"flexctl-northbound-run-{executor.batch.batch_id}"
        )
        task.add_done_callback(_log_end)
        self.task = task
        self._started.set()
        for _ in range(_START_TURNS):
            if executor.state is not BatchState.Idle or task.done():
                break
            await asyncio.sleep(0)  # a turn of the loop, not a wait in time
        if task.done() and not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            raise CallError("BadInvalidState", f"the batch did not start: {exc}") from exc
        return executor.state

    async def wait(self) -> BatchState:
        """Wait until a batch has been started here and its run has ended; its final state."""
        await self._started.wait()
        assert self.task is not None
        return await asyncio.shield(self.task)

    async def close(self) -> None:
        """Cancel a run still going (the executor stops its workers) and wait for it."""
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _log_end(task: asyncio.Task[BatchState]) -> None:
    if task.cancelled():
        log.info("northbound_run_cancelled", task=task.get_name())
    elif task.exception() is not None:
        log.error("northbound_run_failed", task=task.get_name(), exc_info=task.exception())
    else:
        log.info("northbound_run_ended", task=task.get_name(), state=task.result().value)
