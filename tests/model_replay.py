"""Replay random command sequences on a twin model (the models' hypothesis tests share it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from flexctl.clock import VirtualClock
from flexctl.errors import DeviceBusyError, OutOfRangeError
from simulators.models.base import TwinModel


async def replay(
    model: TwinModel,
    clock: VirtualClock,
    actions: Sequence[tuple[object, ...]],
    check: Callable[[], None],
    *,
    writes: Mapping[str, str] | None = None,
) -> None:
    """Apply each action, checking the invariants after every one.

    An action is ``("sleep", seconds)``, a write named in ``writes`` (action name ->
    tag), or a method call with its arguments. Refusals the device would give
    (out of range, busy) are part of the game; any other error fails the test.
    """
    writes = writes or {}
    for action in actions:
        name, *args = action
        try:
            if name == "sleep":
                assert isinstance(args[0], float)
                await clock.sleep(args[0])
            elif name in writes:
                assert isinstance(args[0], float)
                model.write(writes[str(name)], args[0])
            else:
                model.call(str(name), [a for a in args if isinstance(a, int | float | str)])
        except (OutOfRangeError, DeviceBusyError):
            pass
        check()
