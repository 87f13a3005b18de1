"""Reading a table's changes from Dataverse by change tracking (``use-change-tracking-synchronize-data-external-systems.md``).

The first read of a table is a full one: ``GET {set}?$select=…`` with
``Prefer: odata.track-changes``, page after page (``@odata.nextLink``); its last
page carries an ``@odata.deltaLink``. Reading that link later returns the rows
changed since, then one ``$deletedEntity`` entry per deleted row, and a new
delta link. A delta token older than the environment's retention answers 400
``0x80044352``: :class:`DeltaExpired`, the table is read in full again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t
from collections.abc import Sequence
from urllib.parse import urlencode

from .batch import ApiRequest
from .client import DataverseClient
from .mapping import BoundMapping
from .mapping import guid_text

#: ExpiredVersionStamp: "Version stamp associated with the client has expired. Please perform a full sync."
EXPIRED_VERSION_STAMP = "0x80044352"


class DeltaExpired(Exception):
    """The stored delta token is older than the change-tracking retention: read everything again."""


class ReadFailed(Exception):
    """Dataverse refused a change-tracking read; the message is Dataverse's code and message."""


@dataclasses.dataclass(frozen=True)
class DataverseChange:
    """One row changed (or deleted) in Dataverse, as handed to the mapping's ``receive``.

    ``values`` holds the read columns as Dataverse returns them (lookups as
    ``_<name>_value``); empty for a deleted row.
    """

    entity_set: str
    row_id: str
    deleted: bool
    values: dict[str, t.Any]
    modified_on: dt.datetime | None
    """Dataverse's ``modifiedon`` (naive UTC); None for a deleted row."""


@dataclasses.dataclass(frozen=True)
class ChangePage:
    """One page of a change-tracking read: its changes, and the link to read next."""

    changes: list[DataverseChange]
    next_link: str | None
    """``@odata.nextLink``: more pages of this read follow."""
    delta_link: str | None
    """``@odata.deltaLink``: the read is complete; changes after it come from this link."""


def parse_modified_on(value: t.Any) -> dt.datetime | None:
    """``modifiedon`` (ISO 8601, ``Z``) as naive UTC."""
    if not isinstance(value, str) or not value:
        return None
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment


def parse_change(mapping: BoundMapping, entry: dict[str, t.Any]) -> DataverseChange:
    """One entry of a change-tracking page as a :class:`DataverseChange`."""
    if entry.get("reason") == "deleted" or str(entry.get("@odata.context", "")).endswith("/$deletedEntity"):
        return DataverseChange(mapping.entity_set, str(entry["id"]), True, {}, None)
    values = {name: value for name, value in entry.items() if not name.startswith("@")}
    row_id = str(values[mapping.mapping.primary_key_column])
    return DataverseChange(mapping.entity_set, row_id, False, values, parse_modified_on(values.get("modifiedon")))


def first_request(mapping: BoundMapping) -> str:
    """The path of a table's full read: ``leads?$select=subject,…`` (with its key and ``modifiedon``)."""
    columns: Sequence[str] | None = mapping.mapping.selected_columns
    if columns is None:
        return mapping.entity_set
    wanted = dict.fromkeys([mapping.mapping.primary_key_column, *columns, "modifiedon"])
    return f"{mapping.entity_set}?{urlencode({'$select': ','.join(wanted)}, safe=',$')}"


def row_request(mapping: BoundMapping, row_id: str) -> str:
    """The path reading one row by id, with the same columns as the change-tracking reads."""
    entity_set, _, query = first_request(mapping).partition("?")
    return f"{entity_set}({guid_text(row_id)})" + (f"?{query}" if query else "")


def read_page(client: DataverseClient, mapping: BoundMapping, link: str | None, page_size: int) -> ChangePage:
    """Read one page: the first of a full read (``link`` None), a next page or a delta.

    :raises DeltaExpired: the delta token is too old.
    :raises ReadFailed: any other refusal.
    :raises .client.TransientError: no answer after the client's retries.
    """
    path = first_request(mapping) if link is None else relative(client, link)
    answer = client.send(
        ApiRequest("GET", path, headers={"Prefer": f"odata.track-changes,odata.maxpagesize={page_size}"})
    )
    if not answer.ok:
        code, message = answer.error
        if code.lower() == EXPIRED_VERSION_STAMP:
            raise DeltaExpired(message)
        raise ReadFailed(f"{code}: {message}")
    body = answer.json()
    return ChangePage(
        [parse_change(mapping, entry) for entry in body.get("value", [])],
        body.get("@odata.nextLink"),
        body.get("@odata.deltaLink"),
    )


def relative(client: DataverseClient, link: str) -> str:
    """A link Dataverse gave (absolute) as a path under the client's API root."""
    if link.startswith(client.api_root):
        return link[len(client.api_root) :]
    if link.startswith(client.api_path):
        return link[len(client.api_path) :]
    return link
