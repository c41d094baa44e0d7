"""YAML loading that remembers where every mapping key and value came from.

Profiles, lines and procedures are plain YAML. Errors about them must name the
file, line and column, so mappings load as :class:`PosDict` (a dict that also
knows the position of each key and value) and sequences as :class:`PosList`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from flexctl.errors import ConfigurationError, Where


class PosDict(dict[str, Any]):
    """A mapping from YAML with the position of itself, its keys and its values."""

    where: Where
    key_where: dict[str, Where]
    value_where: dict[str, Where]

    def at(self, key: str) -> Where:
        """Where the value of ``key`` is (or the mapping itself, when absent)."""
        return self.value_where.get(key, self.where)

    def key_at(self, key: str) -> Where:
        return self.key_where.get(key, self.where)


class PosList(list[Any]):
    """A sequence from YAML with the position of itself and of each item."""

    where: Where
    item_where: list[Where]

    def at(self, index: int) -> Where:
        if 0 <= index < len(self.item_where):
            return self.item_where[index]
        return self.where


def where_of(value: Any, default: Where) -> Where:
    """The position of a loaded mapping or sequence, else ``default``."""
    return getattr(value, "where", default)


def _mark(filename: str, node: yaml.Node) -> Where:
    return Where(filename, node.start_mark.line + 1, node.start_mark.column + 1)


class _Loader(yaml.SafeLoader):
    filename = "<string>"


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> PosDict:
    loader.flatten_mapping(node)
    result = PosDict()
    result.where = _mark(loader.filename, node)
    result.key_where = {}
    result.value_where = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise ConfigurationError(
                _mark(loader.filename, key_node), f"expected a text key, got {key!r}"
            )
        if key in result:
            raise ConfigurationError(
                _mark(loader.filename, key_node),
                f"duplicate key {key!r} (first at line {result.key_where[key].line})",
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_where[key] = _mark(loader.filename, key_node)
        result.value_where[key] = _mark(loader.filename, value_node)
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> PosList:
    result = PosList(loader.construct_object(child, deep=True) for child in node.value)
    result.where = _mark(loader.filename, node)
    result.item_where = [_mark(loader.filename, child) for child in node.value]
    return result


# YAML 1.1 (PyYAML) reads an unquoted 8.0e9 or 1e6 as text; YAML 1.2 and every
# engineer read a number. Quoted, it stays text.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_text(text: str, filename: str) -> Any:
    """Parse YAML text; syntax errors become :class:`ConfigurationError` with the place."""
    loader = _Loader(text)
    loader.filename = filename
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (
            Where(filename, mark.line + 1, mark.column + 1) if mark is not None else Where(filename)
        )
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigurationError(where, f"YAML syntax: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(Where(filename), f"YAML: {exc}") from None
    finally:
        loader.dispose()


def load_file(path: Path) -> Any:
    """Read and parse a YAML file; a missing or unreadable file is a configuration error."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(Where(str(path)), f"cannot read file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(Where(str(path)), f"not UTF-8 text: {exc.reason}") from None
    return load_text(text, str(path))


def require_mapping(value: Any, where: Where, what: str) -> PosDict:
    """``value`` as a mapping, or a configuration error saying what was expected."""
    if isinstance(value, PosDict):
        return value
    raise ConfigurationError(
        where_of(value, where), f"{what}: expected a mapping, got {_kind(value)}"
    )


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
