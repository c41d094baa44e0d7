"""The PackML state code (PackTags ``StateCurrent``) a client sees for each ISA-88 batch state.

PackML (ANSI/ISA-TR88.00.02, domain.md 3.2) names the same life cycle with
other words: Running is Execute, Paused is Suspended, Restarting is Unholding.
The codes are the PackTags numbers, not OPC 30060/TMC's enumeration.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from flexctl.supervisor.batch_state import BatchState

S = BatchState

#: PackML state name and PackTags code, per ISA-88 state.
PACKML: Mapping[BatchState, tuple[str, int]] = MappingProxyType(
    {
        S.Idle: ("Idle", 4),
        S.Running: ("Execute", 6),
        S.Pausing: ("Suspending", 13),
        S.Paused: ("Suspended", 5),
        S.Holding: ("Holding", 10),
        S.Held: ("Held", 11),
        S.Restarting: ("Unholding", 12),
        S.Stopping: ("Stopping", 7),
        S.Stopped: ("Stopped", 2),
        S.Aborting: ("Aborting", 8),
        S.Aborted: ("Aborted", 9),
        S.Complete: ("Complete", 17),
    }
)


def packml_code(state: BatchState) -> int:
    """The PackTags StateCurrent code of ``state``."""
    return PACKML[state][1]
