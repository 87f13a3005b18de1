"""The Web API operations of the local Dataverse: one request in, one answer out.

Used for single HTTP requests and for each part of a ``$batch`` alike. The behaviour
follows MicrosoftDocs/powerapps-docs, developer/data-platform/webapi/:

* compose-http-requests-handle-errors.md — ``OData-Version: 4.0`` on answers, JSON error
  bodies ``{"error": {"code", "message"}}``;
* create-entity-web-api.md — ``POST {set}`` answers 204 with ``OData-EntityId``, or 201 and the
  row with ``Prefer: return=representation``;
* update-delete-entities-using-web-api.md, use-upsert-insert-update-record.md — ``PATCH`` by id or
  alternate key is an upsert (204; with ``return=representation`` 201 when created, 200 when
  updated); ``PUT {set}(id)/column`` sets one column; ``DELETE`` answers 204;
* perform-conditional-operations-using-web-api.md — ``If-Match: *`` stops the create (404),
  ``If-None-Match: *`` stops the update (412), a stale ETag in ``If-Match`` gives 412, a current
  ``If-None-Match`` ETag on GET gives 304;
* bulk-operations.md and reference/upsertmultiple — ``CreateMultiple`` (200, ``Ids``),
  ``UpdateMultiple`` and ``UpsertMultiple`` (204), every target with ``@odata.type``, all or nothing;
* use-change-tracking-synchronize-data-external-systems.md — see :mod:`.queries`.
"""

from __future__ import annotations

import dataclasses
import json
import typing as t
import uuid

from . import errors
from .faults import FaultSet
from .odata import Resource
from .odata import guid
from .odata import parse_resource
from .odata import representation
from .odata import selected_columns
from .queries import CollectionReader
from .store import SYSTEM_COLUMNS
from .store import Row
from .store import Store
from .store import etag
from .store import key_values
from .tables import Table

BULK_ACTIONS = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")
JSON_TYPE = "application/json; odata.metadata=minimal"


@dataclasses.dataclass
class Operation:
    """One Web API request: ``path`` is relative to the service root (``/api/data/v9.2/``)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    client: str

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "").strip()

    @property
    def preferences(self) -> dict[str, str]:
        """``Prefer`` as a mapping (``odata.maxpagesize=10`` → ``{"odata.maxpagesize": "10"}``)."""
        found = {}
        for item in self.header("Prefer").split(","):
            name, _, value = item.strip().partition("=")
            if name:
                found[name.strip().lower()] = value.strip().strip('"')
        return found


@dataclasses.dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    entity_path: str | None = None  # "contacts(<id>)", what a Content-ID reference stands for
    error_code: str | None = None


class WebApi:
    """Executes :class:`Operation` objects against a :class:`~.store.Store`."""

    def __init__(self, store: Store, faults: FaultSet, reader: CollectionReader, service_root: str) -> None:
        self.store = store
        self.faults = faults
        self.reader = reader
        self.service_root = service_root  # "https://127.0.0.1:PORT/api/data/v9.2/"

    def execute(self, op: Operation) -> Reply:
        """Run one operation; every Dataverse error becomes its JSON error answer."""
        try:
            return self._dispatch(op)
        except errors.DataverseError as error:
            return error_reply(error, op.preferences.get("odata.include-annotations", ""))

    # -- routing ---------------------------------------------------------------------------

    def _dispatch(self, op: Operation) -> Reply:
        if op.path == "WhoAmI":
            if op.method != "GET":  # a function: GET only (webapi/web-api-client-errors.md)
                raise errors.DataverseError(
                    404, "", f"No HTTP resource was found that matches the request URI '{self.service_root}WhoAmI'."
                )
            return self._who_am_i(op)
        resource = parse_resource(op.path)
        table = self.store.table(resource.entity_set)
        if resource.tail and resource.tail.startswith("Microsoft.Dynamics.CRM."):
            action = resource.tail.removeprefix("Microsoft.Dynamics.CRM.")
            if resource.key is not None or action not in BULK_ACTIONS or not table.bulk_messages:
                raise errors.DataverseError(
                    404, errors.RESOURCE_NOT_FOUND, f"Resource not found for the segment '{resource.tail}'."
                )
            if op.method != "POST":
                raise method_not_allowed(op.method)
            return self._bulk(op, table, action)
        if resource.key is None:
            if resource.tail:
                raise errors.DataverseError(
                    404, errors.RESOURCE_NOT_FOUND, f"Resource not found for the segment '{resource.tail}'."
                )
            if op.method == "POST":
                return self._create(op, table)
            if op.method == "GET":
                with self.store.lock:
                    return json_reply(200, *self.reader.read(table, op, self.service_root))
            raise method_not_allowed(op.method)
        if resource.tail:
            if op.method in ("PUT", "DELETE"):
                return self._set_column(op, table, resource)
            raise method_not_allowed(op.method)
        if op.method == "GET":
            return self._retrieve(op, table, resource)
        if op.method == "PATCH":
            return self._upsert(op, table, resource)
        if op.method == "DELETE":
            return self._delete(op, table, resource)
        raise method_not_allowed(op.method)

    # -- operations ------------------------------------------------------------------------

    def _create(self, op: Operation, table: Table) -> Reply:
        values = self._payload(op, table)
        self._fault(op, table, _record_keys(table, values), values.get(table.primary_key, ""))
        with self.store.lock:
            values = self._resolve_binds(table, values)
            self._detect_duplicates(op, table, values, None)
            row = self.store.insert(table.entity_set, values)
            return self._written(op, table, row, created=True)

    def _upsert(self, op: Operation, table: Table, resource: Resource) -> Reply:
        values = self._payload(op, table)
        if_match = _condition(op.header("If-Match"))
        if_none_match = _condition(op.header("If-None-Match"))
        self._fault(op, table, resource.key_strings | _record_keys(table, values), _describe(resource))
        with self.store.lock:
            row_id, key_columns = self._locate(table, resource)
            current = self.store.get(table.entity_set, row_id) if row_id else None
            if current is None and if_match is not None:
                raise not_found(table, resource)
            if current is not None and if_none_match == ["*"]:
                raise errors.DataverseError(
                    412, errors.DUPLICATE_KEY, "A record with matching key values already exists."
                )
            if current is not None and if_match not in (None, ["*"]) and etag(current) not in if_match:
                raise version_mismatch()
            values = self._resolve_binds(table, values)
            self._detect_duplicates(op, table, {**(current or {}), **values, **key_columns}, current)
            if current is None:
                row = self.store.insert(table.entity_set, {**values, **key_columns}, row_id)
                return self._written(op, table, row, created=True, upsert=True)
            row = self.store.update(table.entity_set, current[table.primary_key], values)
            return self._written(op, table, row, created=False, upsert=True)

    def _set_column(self, op: Operation, table: Table, resource: Resource) -> Reply:
        column = resource.tail or ""
        value = None
        if op.method == "PUT":
            body = _json_object(op.body, table)
            if "value" not in body:
                raise payload_error(table)
            value = body["value"]
        self._check_columns(table, [column])
        self._fault(op, table, resource.key_strings, _describe(resource))
        with self.store.lock:
            row = self._existing(table, resource)
            self.store.update(table.entity_set, row[table.primary_key], {column: value})
        return Reply(204, odata_headers())

    def _retrieve(self, op: Operation, table: Table, resource: Resource) -> Reply:
        self._fault(op, table, resource.key_strings, _describe(resource))
        with self.store.lock:
            row = self._existing(table, resource)
            if etag(row) in (_condition(op.header("If-None-Match")) or []):
                return Reply(304, odata_headers())
            body = {
                "@odata.context": f"{self.service_root}$metadata#{table.entity_set}/$entity",
                **representation(table, row, selected_columns(table, op.query.get("$select"))),
            }
            return json_reply(200, body, [("ETag", etag(row))])

    def _delete(self, op: Operation, table: Table, resource: Resource) -> Reply:
        if_match = _condition(op.header("If-Match"))
        self._fault(op, table, resource.key_strings, _describe(resource))
        with self.store.lock:
            row = self._existing(table, resource)
            if if_match not in (None, ["*"]) and etag(row) not in if_match:
                raise version_mismatch()
            self.store.delete(table.entity_set, row[table.primary_key])
        return Reply(204, odata_headers())

    def _bulk(self, op: Operation, table: Table, action: str) -> Reply:
        body = _json_object(op.body, table)
        targets = body.get("Targets")
        if not isinstance(targets, list) or not all(isinstance(item, dict) for item in targets):
            raise errors.bad_request("The 'Targets' parameter is required: a list of records.", errors.PAYLOAD_ERROR)
        for item in targets:
            if item.get("@odata.type") != table.odata_type:
                raise errors.bad_request(
                    f"Each item of Targets must have '@odata.type': '{table.odata_type}'.", errors.PAYLOAD_ERROR
                )
        located = [self._bulk_target(table, action, item) for item in targets]
        keys = set().union(*(keys for _, keys, _ in located)) if located else set()
        self._fault(op, table, keys, next(iter(sorted(keys)), ""))
        ids = []
        with self.store.transaction():
            for resource, _, values in located:
                values = self._resolve_binds(table, values)
                row_id, key_columns = self._locate(table, resource) if resource else (None, {})
                current = self.store.get(table.entity_set, row_id) if row_id else None
                if action == "CreateMultiple":
                    row = self.store.insert(table.entity_set, values)
                elif current is not None:
                    row = self.store.update(table.entity_set, current[table.primary_key], values)
                elif action == "UpdateMultiple":
                    raise not_found(table, resource or Resource(table.entity_set, ""))
                else:
                    row = self.store.insert(table.entity_set, {**values, **key_columns}, row_id)
                ids.append(row[table.primary_key])
        if action == "CreateMultiple":
            return json_reply(
                200,
                {
                    "@odata.context": f"{self.service_root}$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse",
                    "Ids": ids,
                },
            )
        return Reply(204, odata_headers())

    def _bulk_target(self, table: Table, action: str, item: Row) -> tuple[Resource | None, set[str], Row]:
        """Where a bulk target goes: its ``@odata.id`` reference, its primary key or its alternate key columns."""
        reference = item.get("@odata.id")
        values = self._clean(table, item)
        if isinstance(reference, str):
            resource = self._reference(reference)
            if resource.entity_set != table.entity_set:
                raise errors.bad_request(f"'@odata.id' {reference!r} is not a row of {table.entity_set}.")
        elif table.primary_key in values:
            resource = Resource(table.entity_set, str(values[table.primary_key]))
        else:
            resource = None
            for columns in table.alternate_keys.values():
                found = key_values(values, columns)
                if found is not None:
                    resource = Resource(table.entity_set, dict(zip(columns, found, strict=True)))
                    break
        if action == "CreateMultiple":
            resource = None
        elif resource is None:
            raise errors.bad_request(
                f"{action}: a target of {table.entity_set} names neither its id nor an alternate key."
            )
        keys = (resource.key_strings if resource else set()) | _record_keys(table, values)
        return resource, keys, values

    def _who_am_i(self, op: Operation) -> Reply:
        def stable(kind: str) -> str:
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"local-dataverse/{kind}/{op.client}"))

        return json_reply(
            200,
            {
                "@odata.context": f"{self.service_root}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": stable("businessunit"),
                "UserId": stable("user"),
                "OrganizationId": stable("organization"),
            },
        )

    # -- helpers ---------------------------------------------------------------------------

    def _fault(self, op: Operation, table: Table, keys: set[str], record: str) -> None:
        fault = self.faults.take("operation", op.method, table.entity_set, keys)
        if fault is not None:
            raise fault.error(table.logical_name, record)

    def _written(self, op: Operation, table: Table, row: Row, *, created: bool, upsert: bool = False) -> Reply:
        path = f"{table.entity_set}({row[table.primary_key]})"
        headers = [("OData-EntityId", self.service_root + path)]
        if not upsert:
            headers.append(("Location", self.service_root + path))
        if op.preferences.get("return") == "representation":
            body = {
                "@odata.context": f"{self.service_root}$metadata#{table.entity_set}/$entity",
                **representation(table, row, selected_columns(table, op.query.get("$select"))),
            }
            headers += [("Preference-Applied", "return=representation"), ("ETag", etag(row))]
            reply = json_reply(201 if created else 200, body, headers)
        else:
            reply = Reply(204, odata_headers() + headers)
        reply.entity_path = path
        return reply

    def _locate(self, table: Table, resource: Resource) -> tuple[str | None, Row]:
        """The id a key names (None if no such row yet) and the key columns to store on create."""
        key = resource.key
        if isinstance(key, str):
            return key, {}
        assert key is not None
        if set(key) == {table.primary_key}:
            return guid(str(key[table.primary_key])), {}
        name = table.key_for_columns(set(key))
        if name is None:
            raise errors.bad_request(
                f"The key {', '.join(sorted(key))} is not an alternate key of entity '{table.logical_name}'."
            )
        columns = table.alternate_keys[name]
        return self.store.find(table.entity_set, name, tuple(key[column] for column in columns)), dict(key)

    def _detect_duplicates(self, op: Operation, table: Table, values: Row, current: Row | None) -> None:
        """500 ``0x80040333`` when a rule finds another row with the same values and the request asked
        for detection (``MSCRM.SuppressDuplicateDetection: false``)."""
        if op.header("MSCRM.SuppressDuplicateDetection").lower() != "false":
            return
        for rule in table.duplicate_rules:
            wanted = key_values(values, rule)
            if wanted is not None and any(
                row is not current and key_values(row, rule) == wanted for row in self.store.live_rows(table.entity_set)
            ):
                raise errors.DataverseError(500, errors.DUPLICATE_DETECTED, errors.DUPLICATE_MESSAGE)

    def _existing(self, table: Table, resource: Resource) -> Row:
        """The row a key names; 404 ``0x80040217`` when there is none."""
        row_id, _ = self._locate(table, resource)
        row = self.store.get(table.entity_set, row_id) if row_id else None
        if row is None:
            raise not_found(table, resource)
        return row

    def _payload(self, op: Operation, table: Table) -> Row:
        return self._clean(table, _json_object(op.body, table))

    def _clean(self, table: Table, body: Row) -> Row:
        """The columns to write: annotations and system columns dropped, unknown columns refused."""
        values = {
            name: value
            for name, value in body.items()
            if name not in SYSTEM_COLUMNS and ("@" not in name or name.endswith("@odata.bind"))
        }
        self._check_columns(table, values)
        if table.primary_key in values:
            values[table.primary_key] = guid(str(values[table.primary_key]))
        return values

    def _check_columns(self, table: Table, names: t.Iterable[str]) -> None:
        """With ``Table.columns``, unknown columns and navigation properties are refused as Dataverse
        refuses them (webapi/web-api-client-errors.md)."""
        if table.columns is None:
            return
        allowed = table.columns | {table.primary_key} | table.key_columns
        for name in names:
            navigation = name.removesuffix("@odata.bind")
            if navigation != name and navigation not in allowed:
                raise errors.bad_request(
                    f"Error identified in Payload provided by the user for Entity :'{table.entity_set}'  ---->  "
                    f"InnerException : Microsoft.OData.ODataException: An undeclared property '{navigation}' which "
                    "only has property annotations in the payload but no property value was found in the payload. "
                    "In OData, only declared navigation properties and declared named streams can be represented "
                    "as properties without values.",
                    errors.PAYLOAD_ERROR,
                )
            if navigation == name and name not in allowed:
                raise errors.bad_request(
                    "An error occurred while validating input parameters: Microsoft.Crm.CrmException: Invalid "
                    f"property '{name}' was found in entity '{table.odata_type}'. ---> "
                    "Microsoft.OData.ODataException: Does not support untyped value in non-open type.",
                    errors.ODATA_INPUT,
                )

    def _resolve_binds(self, table: Table, values: Row) -> Row:
        """``nav@odata.bind: "accounts(<id>)"`` becomes ``_nav_value: <id>`` once the row is found."""
        resolved = {}
        for name, value in values.items():
            if not name.endswith("@odata.bind"):
                resolved[name] = value
                continue
            navigation = name.removesuffix("@odata.bind")
            if value is None:
                resolved[f"_{navigation}_value"] = None
                continue
            if not isinstance(value, str):
                raise payload_error(table)
            target = self._reference(value)
            target_table = self.store.table(target.entity_set)
            resolved[f"_{navigation}_value"] = self._existing(target_table, target)[target_table.primary_key]
        return resolved

    def _reference(self, url: str) -> Resource:
        """A row reference: absolute, ``/api/data/v9.2/…`` or relative to the service root."""
        path = url
        for prefix in (self.service_root, "/api/data/v9.2/", "/"):
            if path.startswith(prefix):
                path = path[len(prefix) :]
                break
        resource = parse_resource(path)
        if resource.key is None or resource.tail:
            raise errors.bad_request(f"'{url}' is not a reference to a row.")
        return resource


# -- helpers of the operations ----


def _condition(header: str) -> list[str] | None:
    """``If-Match``/``If-None-Match`` values; absent or the ``null`` the docs send → None."""
    if not header or header.lower() == "null":
        return None
    return [item.strip() for item in header.split(",") if item.strip()]


def _json_object(body: bytes, table: Table) -> Row:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise payload_error(table) from None
    if not isinstance(value, dict):
        raise payload_error(table)
    return value


def _record_keys(table: Table, values: Row) -> set[str]:
    """Key values named in a payload: the primary key and alternate key columns."""
    keys = {str(values[table.primary_key])} if values.get(table.primary_key) else set()
    for columns in table.alternate_keys.values():
        keys |= {str(values[column]) for column in columns if values.get(column) is not None}
    return keys


def _describe(resource: Resource) -> str:
    key = resource.key
    if isinstance(key, dict):
        return ",".join(f"{name}={value}" for name, value in key.items())
    return key or ""


# -- answers ---------------------------------------------------------------------------------


def odata_headers() -> list[tuple[str, str]]:
    return [("OData-Version", "4.0")]


def json_reply(status: int, body: t.Any, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(
        status,
        odata_headers() + [("Content-Type", JSON_TYPE)] + (headers or []),
        json.dumps(body).encode(),
    )


def error_reply(error: errors.DataverseError, annotations: str = "") -> Reply:
    reply = json_reply(error.status, error.body(annotations), list(error.headers.items()))
    reply.error_code = error.code
    return reply


def not_found(table: Table, resource: Resource) -> errors.DataverseError:
    """404: ``0x80040217`` for an id, ``0x80060891`` for alternate key values."""
    if isinstance(resource.key, dict) and set(resource.key) != {table.primary_key}:
        return errors.DataverseError(
            404,
            errors.KEY_NOT_FOUND,
            f"A record with the specified key values does not exist in {table.logical_name} entity",
        )
    record = resource.key if isinstance(resource.key, str) else (resource.key or {}).get(table.primary_key, "")
    return errors.DataverseError(404, errors.NOT_FOUND, f"{table.logical_name} With Id = {record} Does Not Exist")


def version_mismatch() -> errors.DataverseError:
    return errors.DataverseError(
        412,
        errors.VERSION_MISMATCH,
        "The version of the existing record doesn't match the RowVersion property provided.",
    )


def payload_error(table: Table) -> errors.DataverseError:
    return errors.bad_request(
        f"Error identified in Payload provided by the user for Entity :'{table.entity_set}'.", errors.PAYLOAD_ERROR
    )


def method_not_allowed(method: str) -> errors.DataverseError:
    return errors.DataverseError(405, errors.INVALID_ARGUMENT, f"The HTTP method '{method}' is not allowed here.")
