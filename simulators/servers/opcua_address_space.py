"""The OPC UA standard address space, built once per process and shared by every twin.

asyncua fills a new server with the ~6,000 standard nodes in about a second
(measured: 0.97 s of 1.1 s in ``Server.init()``), and the test suite starts a
twin per test. So the nodes are built once, in a worker thread that ends when
done (the event loop keeps running meanwhile), and each server gets a
copy-on-read view: a node is deep-copied the first time that server touches
it, so a server never sees another's changes. A server touches a few dozen.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Iterator, Mapping, MutableMapping

from asyncua import ua
from asyncua.server.address_space import AddressSpace, NodeData, NodeManagementService

_lock = threading.Lock()
# The shared nodes, once built (a holder, so the builder thread needs no global).
_built: dict[str, dict[ua.NodeId, NodeData]] = {}


class CopyOnReadNodes(MutableMapping[ua.NodeId, NodeData]):
    """One server's nodes: its own, over the shared standard ones copied on first access."""

    def __init__(self, shared: Mapping[ua.NodeId, NodeData]) -> None:
        self._shared = shared
        self._own: dict[ua.NodeId, NodeData] = {}
        self._deleted: set[ua.NodeId] = set()

    def __getitem__(self, key: ua.NodeId) -> NodeData:
        node = self._own.get(key)
        if node is not None:
            return node
        if key in self._deleted:
            raise KeyError(key)
        node = copy.deepcopy(self._shared[key])
        self._own[key] = node
        return node

    def get(self, key: ua.NodeId, default: NodeData | None = None) -> NodeData | None:  # type: ignore[override]
        # The address space calls get() on every read; own nodes answer without a try.
        node = self._own.get(key)
        if node is not None:
            return node
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: ua.NodeId, value: NodeData) -> None:
        self._own[key] = value
        self._deleted.discard(key)

    def __delitem__(self, key: ua.NodeId) -> None:
        if key not in self:
            raise KeyError(key)
        self._own.pop(key, None)
        if key in self._shared:
            self._deleted.add(key)

    def __contains__(self, key: object) -> bool:
        if key in self._own:
            return True
        return key in self._shared and key not in self._deleted

    def __iter__(self) -> Iterator[ua.NodeId]:
        yield from self._own
        for key in self._shared:
            if key not in self._own and key not in self._deleted:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)


def install(aspace: AddressSpace, shared: Mapping[ua.NodeId, NodeData]) -> None:
    """Give ``aspace`` a copy-on-read view of the shared standard nodes.

    asyncua keeps its nodes in ``AddressSpace._nodes`` and swaps in its own lazy
    mapping there for its shelf cache; this does the same with memory instead of disk.
    """
    aspace._nodes = CopyOnReadNodes(shared)  # type: ignore[assignment]


async def standard_nodes() -> Mapping[ua.NodeId, NodeData]:
    """The shared standard nodes, built on first use without blocking the event loop."""
    shared = _built.get("nodes")
    if shared is not None:
        return shared
    loop = asyncio.get_running_loop()
    done: asyncio.Future[dict[ua.NodeId, NodeData]] = loop.create_future()

    def work() -> None:
        try:
            nodes = _build()
        except BaseException as exc:  # handed to the awaiting task, not swallowed
            _settle(loop, done, exc)
        else:
            _settle(loop, done, nodes)

    # A thread of our own that ends when the build does: the loop's default
    # executor would keep an idle worker thread alive after the build.
    thread = threading.Thread(target=work, name="flexctl-opcua-standard-nodes", daemon=True)
    thread.start()
    nodes = await done
    thread.join()  # it has already handed over its result; this returns at once
    return nodes


def _settle(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[dict[ua.NodeId, NodeData]],
    outcome: dict[ua.NodeId, NodeData] | BaseException,
) -> None:
    def settle() -> None:
        if done.done():
            return
        if isinstance(outcome, BaseException):
            done.set_exception(outcome)
        else:
            done.set_result(outcome)

    if not loop.is_closed():
        loop.call_soon_threadsafe(settle)


def _build() -> dict[ua.NodeId, NodeData]:
    with _lock:  # two loops (threads) may ask at once; build once
        if "nodes" not in _built:
            from asyncua.server.standard_address_space import standard_address_space

            aspace = AddressSpace()
            fill = standard_address_space.fill_address_space
            fill(NodeManagementService(aspace))  # type: ignore[no-untyped-call]
            _built["nodes"] = {key: aspace[key] for key in aspace.keys()}  # noqa: SIM118
        return _built["nodes"]
