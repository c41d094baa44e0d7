"""Who signs: a person, or the simulation user (never a person, and marked so everywhere).

Here, at the bottom of the house, so that both the record (users, signatures)
and the supervisor (prompts) name them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: The simulation user's actor name and printed name.
SIM_USER: Final = "sim-auto-signer (simulation)"


@dataclass(frozen=True)
class Signer:
    """Who signed: ``user`` is the actor in the journal, ``printed_name`` as 11.50 shows it."""

    user: str
    printed_name: str
    simulated: bool = False

    def __post_init__(self) -> None:
        if not self.user.strip() or not self.printed_name.strip():
            raise ValueError("a signer needs a user and a printed name")


SIM_SIGNER: Final = Signer(SIM_USER, SIM_USER, simulated=True)
