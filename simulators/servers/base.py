"""What every twin server offers: start, stop, an endpoint, faults."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

from flexctl.profile import Profile
from simulators.models.base import TwinModel, UnknownTagError
from simulators.servers.faults import Faults


class TwinServer(ABC):
    """A model behind one wire protocol, addressed as the profile says.

    ``endpoint`` is what a transport connects to (``opc.tcp://...``,
    ``modbus-tcp://...``, ``modbus-rtu:///dev/pts/N``, ``serial:///dev/pts/N``).
    ``stop()`` then ``start()`` serves again on the same endpoint.
    """

    def __init__(self, model: TwinModel, profile: Profile) -> None:
        missing = sorted(set(profile.signals) - model.tags())
        missing += sorted(set(profile.commands) - model.methods())
        if missing:
            raise UnknownTagError(
                f"profile {profile.name} names what the model lacks: {', '.join(missing)}"
            )
        self.model = model
        self.profile = profile
        self.faults = Faults()

    @property
    @abstractmethod
    def endpoint(self) -> str: ...

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def drop_connections(self) -> None:
        """Cut every client's connection now; new ones are accepted again."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
