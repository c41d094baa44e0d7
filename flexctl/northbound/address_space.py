"""The server's nodes, shaped after LADS and PackML, and how shown values reach them.

::

    Objects
      Line                          (LADS: the device; its functional units are the devices)
        Name
        Devices                     (folder)
          <device>                  Driver, Profile, Transport, Origin, Source, Link, Status,
                                    Alarms, Values/<signal> ...
        Batch                       (LADS ActiveProgram / PackML unit state)
          BatchId, Procedure, State, PackMLState, AllowedCommands,
          UnitProcedure, Step, Runtime, PendingPrompts, ActiveAlarms
          Start() Pause() Resume() Hold() Restart() Stop() Abort() Reset()
          AcknowledgeAlarm() ShelveAlarm() AnswerPrompt()

Node ids are strings in the server's namespace: ``Line.Batch.State``,
``Line.Devices.tank.Values.level``. Every variable is read-only for clients;
values are written by :meth:`Nodes.publish`, only those that changed, so
subscriptions see each change once. A variable with no value yet reads
BadWaitingForInitialData.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from asyncua import ua
from asyncua.common.node import Node
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from flexctl.northbound.calls import ARGUMENTS, ArgKind, CallError
from flexctl.northbound.roles import Action
from flexctl.northbound.uaserver import Session, UaServer, calling
from flexctl.northbound.view import Kind, Shown

log = structlog.get_logger("flexctl.northbound")

NAMESPACE = "urn:flexctl:northbound"

#: Calls a method for the calling session with the arguments' values; CallError refuses.
Handler = Callable[[Action, Session | None, list[object]], Awaitable[str]]

_VARIANT = {
    Kind.Boolean: ua.VariantType.Boolean,
    Kind.Int64: ua.VariantType.Int64,
    Kind.Double: ua.VariantType.Double,
    Kind.String: ua.VariantType.String,
    Kind.Texts: ua.VariantType.String,
}
_ARG_TYPE = {
    ArgKind.String: ObjectIds.String,
    ArgKind.Double: ObjectIds.Double,
    ArgKind.Any: ObjectIds.BaseDataType,
}
_NO_VALUE = ua.DataValue(StatusCode=ua.StatusCode(ua.UInt32(StatusCodes.BadWaitingForInitialData)))


def variant(kind: Kind, value: Shown) -> ua.Variant:
    """``value`` as the Variant of ``kind`` (a text list as a String array)."""
    if kind is Kind.Texts:
        return ua.Variant(list(value) if isinstance(value, tuple) else [], ua.VariantType.String)
    if value is None:  # only a Null variant may be empty; the node's DataType tells the type
        return ua.Variant(None, ua.VariantType.Null)
    return ua.Variant(value, _VARIANT[kind])


class Nodes:
    """The nodes of one server; :meth:`build` once, then :meth:`publish` shown values."""

    def __init__(self, server: UaServer) -> None:
        self.server = server
        self.ns = 0
        self._objects: dict[str, Node] = {}
        self._variables: dict[str, tuple[ua.NodeId, Kind]] = {}
        self._shown: dict[str, Shown] = {}

    def node_id(self, path: str) -> ua.NodeId:
        """The NodeId of ``path`` under Line (``Batch.State``); ``""`` is Line itself."""
        return ua.NodeId(ua.String("Line" + (f".{path}" if path else "")), ua.Int16(self.ns))

    async def build(self, handler: Handler) -> None:
        """Namespace, Line, its Devices folder and its Batch object with the methods."""
        self.ns = await self.server.register_namespace(NAMESPACE)
        objects = self.server.get_objects_node()
        line = await objects.add_object(self.node_id(""), self._name("Line"))
        self._objects[""] = line
        self._objects["Devices"] = await line.add_folder(
            self.node_id("Devices"), self._name("Devices")
        )
        batch = await line.add_object(self.node_id("Batch"), self._name("Batch"))
        self._objects["Batch"] = batch
        for action in Action:
            await self._add_method(batch, action, handler)

    async def publish(self, shown: Mapping[str, tuple[Kind, Shown]]) -> int:
        """Write every value of ``shown`` (by path) that changed; make missing nodes.

        Returns how many values were written.
        """
        written = 0
        for path, (kind, value) in shown.items():
            known = self._variables.get(path)
            if known is None:
                await self._add_variable(path, kind)
            elif path in self._shown and self._shown[path] == value:
                continue
            node_id, declared = self._variables[path]
            if declared is not kind:  # a kind fixed at creation: never write another type
                log.warning("northbound_kind_changed", path=path, kind=kind.value)
                continue
            data = _NO_VALUE if value is None else ua.DataValue(variant(kind, value))
            await self.server.write_attribute_value(node_id, data)
            self._shown[path] = value
            written += 1
        return written

    # -- making nodes -----------------------------------------------------------------

    def _name(self, text: str) -> ua.QualifiedName:
        return ua.QualifiedName(text, ua.Int16(self.ns))

    async def _object(self, path: str) -> Node:
        """The object at ``path``, made (with its parents) if missing."""
        found = self._objects.get(path)
        if found is not None:
            return found
        parent_path, _, name = path.rpartition(".")
        parent = await self._object(parent_path)
        made: Node = await parent.add_object(self.node_id(path), self._name(name))
        self._objects[path] = made
        return made

    async def _add_variable(self, path: str, kind: Kind) -> None:
        parent_path, _, name = path.rpartition(".")
        parent = await self._object(parent_path)
        node_id = self.node_id(path)
        initial = variant(kind, () if kind is Kind.Texts else None)
        # A null value has no type of its own: declare the one it will hold.
        data_type = ua.NodeId(ua.Int32(_VARIANT[kind].value))
        await parent.add_variable(node_id, self._name(name), initial, datatype=data_type)
        self._variables[path] = (node_id, kind)

    async def _add_method(self, parent: Node, action: Action, handler: Handler) -> None:
        inputs = [
            ua.Argument(
                Name=arg.name,
                DataType=ua.NodeId(ua.Int32(_ARG_TYPE[arg.kind])),
                ValueRank=-1,
                Description=ua.LocalizedText(
                    arg.description + ("" if arg.required else " (optional)")
                ),
            )
            for arg in ARGUMENTS[action]
        ]
        outputs = [
            ua.Argument(
                Name="Status",
                DataType=ua.NodeId(ua.Int32(ObjectIds.String)),
                ValueRank=-1,
                Description=ua.LocalizedText("what was done, or why not"),
            )
        ]
        node_id = self.node_id(f"Batch.{action.value}")
        await parent.add_method(
            node_id, self._name(action.value), _bridge(action, handler), inputs, outputs
        )


def _bridge(action: Action, handler: Handler) -> Callable[..., Awaitable[Any]]:
    """The asyncua method callback of ``action``: Variants in, status text (or a Bad code) out."""

    # async, so asyncua runs it on the loop and not in its thread pool
    async def call(parent: ua.NodeId, *args: ua.Variant) -> list[ua.Variant] | ua.CallMethodResult:
        try:
            text = await handler(action, calling.get(), [arg.Value for arg in args])
        except CallError as exc:
            return _refused(exc.status, str(exc))
        except Exception as exc:  # a bug: answered, logged, never a silent BadUnexpectedError
            log.exception("northbound_method_failed", method=action.value)
            return _refused("BadInternalError", f"{type(exc).__name__}: {exc}")
        return [ua.Variant(text, ua.VariantType.String)]

    return call


def _refused(status: str, message: str) -> ua.CallMethodResult:
    """A Bad result that still carries the message as its Status output.

    OPC UA has no text beside a status code in a Call result; clients that read
    the raw result (not asyncua's ``call_method``, which raises) get the reason.
    """
    code = getattr(StatusCodes, status, StatusCodes.BadInternalError)
    return ua.CallMethodResult(
        StatusCode=ua.StatusCode(ua.UInt32(code)),
        OutputArguments=[ua.Variant(message, ua.VariantType.String)],
    )
