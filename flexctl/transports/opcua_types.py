"""OPC UA names for flexctl's value types, node ids and status codes.

Shared by the OPC UA transport and the OPC UA twin server, so both sides of
the wire agree on how a profile's ``type:`` and ``node:`` look in OPC UA.
"""

from __future__ import annotations

from typing import Any

from asyncua import ua
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError

from flexctl.errors import ConfigurationError, OutOfRangeError, Where
from flexctl.profile import Value

#: A profile's value type (flexctl.profile.VALUE_TYPES) as an OPC UA built-in type.
VARIANT_TYPES: dict[str, ua.VariantType] = {
    "bool": ua.VariantType.Boolean,
    "int16": ua.VariantType.Int16,
    "uint16": ua.VariantType.UInt16,
    "int32": ua.VariantType.Int32,
    "uint32": ua.VariantType.UInt32,
    "int64": ua.VariantType.Int64,
    "uint64": ua.VariantType.UInt64,
    "float32": ua.VariantType.Float,
    "float64": ua.VariantType.Double,
    "string": ua.VariantType.String,
}

#: Status codes that mean the session or channel is gone, not that a request was refused.
LINK_LOST_CODES = frozenset(
    {
        StatusCodes.BadSessionIdInvalid,
        StatusCodes.BadSessionClosed,
        StatusCodes.BadSessionNotActivated,
        StatusCodes.BadSecureChannelIdInvalid,
        StatusCodes.BadSecureChannelClosed,
        StatusCodes.BadSecureChannelTokenUnknown,
        StatusCodes.BadTcpSecureChannelUnknown,
        StatusCodes.BadConnectionClosed,
        StatusCodes.BadNotConnected,
        StatusCodes.BadServerNotConnected,
        StatusCodes.BadCommunicationError,
        StatusCodes.BadDisconnect,
        StatusCodes.BadShutdown,
        StatusCodes.BadServerHalted,
    }
)


def variant_type(type_name: str) -> ua.VariantType:
    """The OPC UA type of a canonical profile type (an enum travels as its integer type)."""
    return VARIANT_TYPES[type_name]


def variant_type_of(value: Value) -> ua.VariantType:
    """The OPC UA type for an untyped value (method arguments and results).

    OutOfRangeError for an integer no OPC UA Int64 can carry (give ``arg_types``).
    """
    if isinstance(value, bool):
        return ua.VariantType.Boolean
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise OutOfRangeError(f"{value} does not fit an OPC UA Int64")
        return ua.VariantType.Int64
    if isinstance(value, float):
        return ua.VariantType.Double
    return ua.VariantType.String


def status_name(code: int) -> str:
    """The symbolic name of a status code (``BadOutOfRange``), or its hex value."""
    name: str = ua.StatusCode(ua.UInt32(code)).name
    return name or f"{code:#010x}"


def parse_node_id(text: Any, where: Where, what: str) -> ua.NodeId:
    """A profile's NodeId string (``ns=2;s=Demo.Temperature.PV``) or a configuration error."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(where, f"{what}: expected a NodeId such as 'ns=2;s=Name'")
    try:
        node = ua.NodeId.from_string(text)
    except UaError:
        raise ConfigurationError(
            where, f"{what}: {text!r} is not a NodeId (expected e.g. 'ns=2;s=Name' or 'ns=2;i=7')"
        ) from None
    if isinstance(node, ua.ExpandedNodeId):
        raise ConfigurationError(
            where, f"{what}: {text!r}: namespace URIs (nsu=) are not supported, use ns=<index>"
        )
    if node.Identifier in ("", None):
        raise ConfigurationError(where, f"{what}: {text!r} has an empty identifier")
    return node


def plain(value: Any) -> Value:
    """A Variant's value as a plain flexctl value; TypeError for anything else."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, ua.LocalizedText) and value.Text is not None:
        text: str = value.Text
        return text
    raise TypeError(f"unsupported OPC UA value {value!r}")
