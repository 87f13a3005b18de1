"""OData pieces of the local Dataverse: resource paths, key segments and row representations.

Key segments follow powerapps-docs use-alternate-key-reference-record.md:
``contacts(<guid>)``, ``contacts(contactid=<guid>)``, ``contacts(acme_hostid='H-1')`` and
several columns ``accounts(a='x',b=2)``; a quote inside a string is doubled.
"""

from __future__ import annotations

import dataclasses
import re
import typing as t

from . import errors
from .store import SYSTEM_COLUMNS
from .store import Row
from .store import etag
from .tables import Table

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclasses.dataclass(frozen=True)
class Resource:
    """A parsed resource path: ``contacts``, ``contacts(<id>)``, ``contacts(k='v')/column`` or a bound action."""

    entity_set: str
    key: dict[str, t.Any] | str | None = None  # column -> value, or a bare id
    tail: str | None = None

    @property
    def key_strings(self) -> set[str]:
        if self.key is None:
            return set()
        if isinstance(self.key, str):
            return {self.key}
        return {str(value) for value in self.key.values()}


def parse_resource(path: str) -> Resource:
    """Parse ``set``, ``set(key)``, ``set(key)/column`` or ``set/Action``."""
    match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(.*)$", path)
    if not match:
        raise errors.DataverseError(404, errors.RESOURCE_NOT_FOUND, f"Resource not found for the segment '{path}'.")
    entity_set, rest = match.groups()
    key: dict[str, t.Any] | str | None = None
    if rest.startswith("("):
        inside, rest = _parenthesised(rest)
        key = parse_key(inside)
    tail = None
    if rest:
        if not rest.startswith("/") or len(rest) == 1:
            raise errors.bad_request(f"Bad Request - Error in query syntax: '{path}'.")
        tail = rest[1:]
    return Resource(entity_set, key, tail)


def _parenthesised(text: str) -> tuple[str, str]:
    """Split ``(k='a)b')/x`` into ``k='a)b'`` and ``/x``, minding quoted strings."""
    quoted = False
    for index, char in enumerate(text[1:], start=1):
        if char == "'":
            quoted = not quoted
        elif char == ")" and not quoted:
            return text[1:index], text[index + 1 :]
    raise errors.bad_request(f"Bad Request - Error in query syntax: unbalanced key in '{text}'.")


def parse_key(text: str) -> dict[str, t.Any] | str:
    """``<guid>`` → the id; ``a='x',b=2`` → ``{"a": "x", "b": 2}`` (``''`` escapes a quote)."""
    text = text.strip()
    if "=" not in text or GUID.match(text):
        return guid(text)
    key: dict[str, t.Any] = {}
    position = 0
    while position < len(text):
        match = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*").match(text, position)
        if not match:
            raise errors.bad_request(f"Bad Request - Error in query syntax: key '{text}'.")
        name, position = match.group(1), match.end()
        if text.startswith("'", position):
            value, position = _quoted(text, position)
        else:
            end = text.find(",", position)
            end = len(text) if end < 0 else end
            value, position = _literal(text[position:end].strip()), end
        key[name] = value
        rest = text[position:].lstrip()
        if rest and not rest.startswith(","):
            raise errors.bad_request(f"Bad Request - Error in query syntax: key '{text}'.")
        position = len(text) - len(rest) + (1 if rest else 0)
    return key


def _quoted(text: str, position: int) -> tuple[str, int]:
    value = []
    index = position + 1
    while index < len(text):
        if text[index] == "'":
            if text.startswith("''", index):
                value.append("'")
                index += 2
                continue
            return "".join(value), index + 1
        value.append(text[index])
        index += 1
    raise errors.bad_request(f"Bad Request - Error in query syntax: unterminated string in '{text}'.")


def _literal(token: str) -> t.Any:
    if GUID.match(token):
        return token.lower()
    if token in ("true", "false"):
        return token == "true"
    if token == "null":
        return None
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        raise errors.bad_request(f"Bad Request - Error in query syntax: '{token}'.") from None


def guid(text: str) -> str:
    if not GUID.match(text):
        raise errors.bad_request(f"Bad Request - Error in query syntax: '{text}' is not a GUID.")
    return text.lower()


def selected_columns(table: Table, select: str | None) -> list[str] | None:
    """The ``$select`` list; with ``Table.columns`` an unknown name is the documented 400
    (webapi/web-api-client-errors.md: "Could not find a property named …")."""
    if not select:
        return None
    names = [name.strip() for name in select.split(",") if name.strip()]
    if table.columns is not None:
        known = table.columns | {table.primary_key, *SYSTEM_COLUMNS} | table.key_columns
        for name in names:
            if name not in known:
                raise errors.bad_request(
                    f"Could not find a property named '{name}' on type '{table.odata_type}'.", errors.ODATA_INPUT
                )
    return names


def representation(table: Table, row: Row, columns: list[str] | None) -> Row:
    """A row as the Web API returns it: ``@odata.etag`` first, only the selected columns (and the key)."""
    shown = {
        name: value for name, value in row.items() if columns is None or name in columns or name == table.primary_key
    }
    return {"@odata.etag": etag(row), **shown}
