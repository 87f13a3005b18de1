"""Where a tracked host model goes in Dataverse, and how a host record becomes a request.

A :class:`DataverseMapping` is declared next to :meth:`DynamicsSync.track`::

    sync.track(Customer, "Contact", dataverse=DataverseMapping(
        entity_set="contacts",
        alternate_key={"acme_hostid": "id"},           # Dataverse column -> host attribute
        fields={"fullname": "name", "telephone1": "phone"},
        lookups={"parentcustomerid_account": Lookup("Account", "company")},
    ))

Every send is an upsert by key, so sending a record again never creates a
second one: either an **alternate key** (Dataverse columns filled from the host
record) or an **id column** of the host that stores the Dataverse row id. With
an id column the id is chosen by the worker (a new GUID) and written to the
host *before* the first send; the first send then creates the row with that id
and any later send updates it.

Structural mistakes raise :class:`MappingError` when ``track()`` is called;
those that need the configuration or the other mappings (object types,
lookups) when ``init_app`` runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import re
import typing as t
import uuid
from collections.abc import Callable
from collections.abc import Mapping
from urllib.parse import quote

import sqlalchemy as sa

if t.TYPE_CHECKING:
    from ..tracking import Tracking

ValueSpec = str | Callable[[t.Any], t.Any]
"""A host attribute name, or a callable taking the host object."""

SEND_MODES = ("bulk", "batch", "single")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class MappingError(ValueError):
    """A Dataverse mapping that cannot work; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Lookup:
    """A lookup column, set with ``@odata.bind`` to the Dataverse row of a related host record.

    :param object_type: the related record's object type; it must be tracked with a mapping too.
    :param related: the host attribute (usually a relationship) or callable giving the
        related host object; ``None`` clears the lookup.
    """

    object_type: str
    related: ValueSpec


@dataclasses.dataclass(frozen=True)
class DataverseMapping:
    """Where a tracked model's records go and how, for the connector's worker.

    :param entity_set: the Dataverse table's entity set name, e.g. ``contacts``.
    :param alternate_key: ``{dataverse_column: host attribute or callable}`` of an alternate key
        defined on the table; the worker upserts ``contacts(acme_hostid='42')``.
    :param id_column: instead of ``alternate_key``: the host attribute that stores the Dataverse
        row id (a GUID, as text or UUID); empty until the worker assigns one.
    :param fields: ``{dataverse_column: host attribute or callable}``: the payload.
    :param payload: instead of ``fields``: a callable taking the host object and returning the
        JSON object to send (without the key and the lookups).
    :param lookups: ``{navigation property: Lookup(...)}``, e.g. ``parentcustomerid_account``.
    :param table: the table's logical name (``contact``), for the bulk messages' ``@odata.type``;
        default: the entity set made singular (``opportunities`` gives ``opportunity``).
    :param primary_key: the table's primary key column, for ``id_column`` mappings on the bulk
        path; default ``<table>id``.
    :param send: ``"bulk"`` (``UpsertMultiple``, falling back to ``$batch`` where the table has
        no bulk messages), ``"batch"`` (``$batch``) or ``"single"`` (one request per record).
    :param load: ``load(session, record_ids) -> {record_id: host object}``; needed only when
        ``track()`` got a callable ``record_id``. Default: by the attribute the record id comes from.
    :param receive: ``receive(session, change)``: applies a :class:`~.changes.DataverseChange` read
        from Dataverse by change tracking to the host's own model (insert, update or delete in
        ``session``, the host's transaction; the plugin commits). Raise to refuse the change: it
        becomes a Sync Error with the exception's message. None: nothing is read from Dataverse.
    :param receive_columns: the columns to read (``$select``); default: the ``fields`` columns,
        or every column with ``payload=``.
    """

    entity_set: str
    alternate_key: Mapping[str, ValueSpec] | None = None
    id_column: str | None = None
    fields: Mapping[str, ValueSpec] | None = None
    payload: Callable[[t.Any], Mapping[str, t.Any]] | None = None
    lookups: Mapping[str, Lookup] = dataclasses.field(default_factory=dict)
    table: str | None = None
    primary_key: str | None = None
    send: str = "bulk"
    load: Callable[[t.Any, list[str]], Mapping[str, t.Any]] | None = None
    receive: Callable[[t.Any, t.Any], None] | None = None
    receive_columns: tuple[str, ...] | None = None

    @property
    def logical_name(self) -> str:
        """The table's logical name (``table``, or the entity set made singular)."""
        if self.table:
            return self.table
        name = self.entity_set
        for plural, singular in (("ies", "y"), ("sses", "ss"), ("xes", "x"), ("s", "")):
            if name.endswith(plural):
                return name[: -len(plural)] + singular
        return name

    @property
    def primary_key_column(self) -> str:
        return self.primary_key or f"{self.logical_name}id"

    @property
    def selected_columns(self) -> tuple[str, ...] | None:
        """The columns a change-tracking read asks for (None: every column)."""
        if self.receive_columns is not None:
            return tuple(self.receive_columns)
        return tuple(self.fields) if self.fields is not None else None


# -- values -----------------------------------------------------------------------------------


def getter(spec: ValueSpec) -> Callable[[t.Any], t.Any]:
    """A callable reading ``spec`` (attribute name or callable) from a host object."""
    if isinstance(spec, str):
        return lambda obj: getattr(obj, spec)
    return spec


def json_value(value: t.Any) -> t.Any:
    """A host value as Dataverse's JSON expects it (dates ISO 8601 UTC, decimals as numbers)."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="seconds") + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def key_literal(value: t.Any) -> str:
    """An OData key value for a URL: quoted text (percent-encoded), numbers as they are."""
    value = json_value(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if value is None:
        raise MappingError("a key value is empty")
    return "'" + quote(str(value).replace("'", "''"), safe="'") + "'"


def guid_text(value: t.Any) -> str | None:
    """A stored Dataverse id as canonical GUID text, or None when empty."""
    if value is None or value == "":
        return None
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    except ValueError:
        raise MappingError(f"{value!r} is not a Dataverse row id (a GUID)") from None


# -- a mapping bound to its tracked model -----------------------------------------------------


class BoundMapping:
    """A :class:`DataverseMapping` with its tracked model: builds keys and payloads.

    ``lookups_to`` resolves the related object types' mappings when payloads are built.
    """

    def __init__(self, tracking: Tracking, mapping: DataverseMapping) -> None:
        self.tracking = tracking
        self.mapping = mapping
        self.model = tracking.model
        self.object_type = tracking.object_type
        self._key_getters = {column: getter(spec) for column, spec in (mapping.alternate_key or {}).items()}
        self._field_getters = {column: getter(spec) for column, spec in (mapping.fields or {}).items()}
        self._lookup_getters = {nav: getter(lookup.related) for nav, lookup in mapping.lookups.items()}

    @property
    def entity_set(self) -> str:
        return self.mapping.entity_set

    @property
    def odata_type(self) -> str:
        """``@odata.type`` of the table's rows in bulk messages."""
        return f"Microsoft.Dynamics.CRM.{self.mapping.logical_name}"

    # -- keys

    def assigned_id(self, obj: t.Any) -> str | None:
        """The Dataverse id stored in the host's id column (``id_column`` mappings)."""
        assert self.mapping.id_column
        return guid_text(getattr(obj, self.mapping.id_column))

    def key_segment(self, obj: t.Any) -> str:
        """The row's address: ``contacts(acme_hostid='42')`` or ``contacts(<guid>)``."""
        return self.key(obj)[0]

    def key(self, obj: t.Any) -> tuple[str, dict[str, t.Any]]:
        """The row's address, and its key as columns of a bulk message's target.

        An alternate key also goes in the target as ``@odata.id``; an id column as
        the table's primary key column.
        """
        if self.mapping.id_column:
            row_id = self.assigned_id(obj)
            if row_id is None:
                raise MappingError(f"{self.object_type} record has no Dataverse id yet")
            return f"{self.entity_set}({row_id})", {self.mapping.primary_key_column: row_id}
        values = {column: read(obj) for column, read in self._key_getters.items()}
        segment = ",".join(f"{column}={key_literal(value)}" for column, value in values.items())
        address = f"{self.entity_set}({segment})"
        return address, {**{column: json_value(value) for column, value in values.items()}, "@odata.id": address}

    # -- payload

    def payload(self, obj: t.Any, lookups_to: Mapping[str, BoundMapping]) -> dict[str, t.Any]:
        """The JSON object to send for ``obj`` (columns and lookups, without the key)."""
        if self.mapping.payload is not None:
            produced = self.mapping.payload(obj)
            if not isinstance(produced, Mapping):
                raise TypeError(f"the payload function returned {type(produced).__name__}, not a dict")
            body = {str(column): json_value(value) for column, value in produced.items()}
        else:
            body = {column: json_value(read(obj)) for column, read in self._field_getters.items()}
        for nav, read in self._lookup_getters.items():
            related = read(obj)
            target = lookups_to[self.mapping.lookups[nav].object_type]
            body[f"{nav}@odata.bind"] = None if related is None else "/" + target.key_segment(related)
        return body

    def related(self, obj: t.Any) -> list[tuple[str, t.Any]]:
        """``(object_type, host object)`` of every record this one's lookups point at."""
        pairs = [(self.mapping.lookups[nav].object_type, read(obj)) for nav, read in self._lookup_getters.items()]
        return [(object_type, other) for object_type, other in pairs if other is not None]

    # -- loading

    def load(self, session: t.Any, record_ids: list[str]) -> dict[str, t.Any]:
        """The host objects of these record ids (missing ones left out), with their lookups loaded."""
        if self.mapping.load is not None:
            return dict(self.mapping.load(session, record_ids))
        attribute = self.record_id_attribute()
        column = getattr(self.model, attribute)
        wanted = {}
        for record_id in record_ids:
            value = _convert(column, record_id)
            if value is not None:
                wanted[value] = record_id
        if not wanted:
            return {}
        statement = sa.select(self.model).where(column.in_(list(wanted)))
        relationships = sa.inspect(self.model).relationships
        for lookup in self.mapping.lookups.values():
            if isinstance(lookup.related, str) and lookup.related in relationships:
                statement = statement.options(sa.orm.selectinload(getattr(self.model, lookup.related)))
        found = {}
        for obj in session.scalars(statement):
            found[str(getattr(obj, attribute))] = obj
        return {record_id: found[record_id] for record_id in record_ids if record_id in found}

    def record_id_attribute(self) -> str:
        """The host attribute record ids come from (the primary key unless ``track(record_id=…)`` said)."""
        spec = self.tracking.record_id_spec
        if isinstance(spec, str):
            return spec
        mapper = sa.inspect(self.model)
        return mapper.get_property_by_column(mapper.primary_key[0]).key


def _convert(column: t.Any, record_id: str) -> t.Any:
    """A record id (text in the queue) as the host column's Python type; None if it cannot be one."""
    try:
        python_type = column.type.python_type
    except (NotImplementedError, AttributeError):
        return record_id
    try:
        return python_type(record_id) if python_type is not str else record_id
    except (TypeError, ValueError):
        return None


# -- validation -------------------------------------------------------------------------------


def _check_name(value: object, what: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise MappingError(f"{what} must be a Dataverse name (letters, digits, _), got {value!r}")


def _check_specs(model: type, specs: Mapping[str, ValueSpec], what: str) -> None:
    if not isinstance(specs, Mapping) or not specs:
        raise MappingError(f"{what} must be a non-empty {{dataverse_column: host attribute or callable}} dict")
    for column, spec in specs.items():
        _check_name(column, f"{what} column")
        if isinstance(spec, str):
            if not hasattr(model, spec):
                raise MappingError(f"{what}: {model.__name__} has no attribute {spec!r} (for {column!r})")
        elif not callable(spec):
            raise MappingError(f"{what}: {column!r} needs a host attribute name or a callable")


def check_mapping(tracking: Tracking, mapping: object) -> None:
    """Check what can be checked with the model alone (called by ``track()``)."""
    model = tracking.model
    where = f"DataverseMapping of {model.__name__} ({tracking.object_type!r})"
    if not isinstance(mapping, DataverseMapping):
        raise TypeError(f"dataverse= must be a DataverseMapping, not {type(mapping).__name__}")
    _check_name(mapping.entity_set, f"{where}: entity_set")
    if (mapping.alternate_key is None) == (mapping.id_column is None):
        raise MappingError(f"{where}: give exactly one of alternate_key= and id_column= (the idempotency key)")
    if mapping.alternate_key is not None:
        _check_specs(model, mapping.alternate_key, f"{where}: alternate_key")
    if mapping.id_column is not None and mapping.id_column not in sa.inspect(model).column_attrs:
        raise MappingError(f"{where}: id_column {mapping.id_column!r} is not a column of {model.__name__}")
    if (mapping.fields is None) == (mapping.payload is None):
        raise MappingError(f"{where}: give exactly one of fields= and payload= (what to send)")
    if mapping.fields is not None:
        _check_specs(model, mapping.fields, f"{where}: fields")
    if mapping.payload is not None and not callable(mapping.payload):
        raise MappingError(f"{where}: payload must be a callable taking the host object")
    if not isinstance(mapping.lookups, Mapping):
        raise MappingError(f"{where}: lookups must be a {{navigation property: Lookup}} dict")
    for nav, lookup in mapping.lookups.items():
        _check_name(nav, f"{where}: lookup")
        if not isinstance(lookup, Lookup):
            raise MappingError(f"{where}: lookup {nav!r} must be a Lookup(object_type, related)")
        if isinstance(lookup.related, str) and not hasattr(model, lookup.related):
            raise MappingError(f"{where}: lookup {nav!r}: {model.__name__} has no attribute {lookup.related!r}")
    if mapping.table is not None:
        _check_name(mapping.table, f"{where}: table")
    if mapping.primary_key is not None:
        _check_name(mapping.primary_key, f"{where}: primary_key")
    if mapping.send not in SEND_MODES:
        raise MappingError(f"{where}: send must be one of {', '.join(SEND_MODES)}, got {mapping.send!r}")
    if mapping.load is None and callable(tracking.record_id_spec):
        raise MappingError(f"{where}: track() got a callable record_id, so pass load=(session, ids) -> {{id: obj}}")
    if mapping.receive is not None and not callable(mapping.receive):
        raise MappingError(f"{where}: receive must be a callable taking (session, change)")
    if mapping.receive_columns is not None:
        if isinstance(mapping.receive_columns, str) or not mapping.receive_columns:
            raise MappingError(f"{where}: receive_columns must be a non-empty tuple of column names")
        for column in mapping.receive_columns:
            _check_name(column, f"{where}: receive_columns")
    if tracking.direction is not None and tracking.direction.value != "to_dynamics":
        raise MappingError(f"{where}: the connector sends records to Dynamics; the tracking's direction is {tracking.direction.value!r}")


def bind_mappings(trackings: t.Iterable[Tracking], object_types: t.Iterable[str]) -> dict[str, BoundMapping]:
    """The mappings of these trackings by object type, checked against the configuration and each other.

    :raises MappingError: an object type not configured or mapped twice, a lookup to an object
        type without a mapping.
    """
    configured = set(object_types)
    bound: dict[str, BoundMapping] = {}
    for tracking in trackings:
        if tracking.dataverse is None:
            continue
        if tracking.object_type not in configured:
            raise MappingError(
                f"{tracking.model.__name__} is mapped to Dataverse as {tracking.object_type!r}, "
                f"which is not in DYNAMICS_SYNC_OBJECTS ({', '.join(sorted(configured))})"
            )
        if tracking.object_type in bound:
            raise MappingError(
                f"{tracking.object_type!r} has two Dataverse mappings ({bound[tracking.object_type].model.__name__} "
                f"and {tracking.model.__name__}); one object type goes to one table"
            )
        bound[tracking.object_type] = BoundMapping(tracking, tracking.dataverse)
    for mapped in bound.values():
        for nav, lookup in mapped.mapping.lookups.items():
            if lookup.object_type not in bound:
                raise MappingError(
                    f"{mapped.object_type!r}: lookup {nav!r} points at {lookup.object_type!r}, which has no "
                    f"Dataverse mapping; track its model with dataverse=DataverseMapping(...)"
                )
    return bound


def send_levels(bound: Mapping[str, BoundMapping]) -> list[list[str]]:
    """Object types in levels: each level's lookups point only at earlier levels.

    The types of one level are sent side by side; a level starts when the one
    before it is done. Cycles (an account's primary contact, a contact's
    account) are broken where they close; such records may need a second send
    once both rows exist.
    """
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def level(object_type: str) -> int:
        if object_type in depth:
            return depth[object_type]
        if object_type in visiting:
            return -1  # the edge that closes a cycle does not count
        visiting.add(object_type)
        targets = [level(lookup.object_type) for lookup in bound[object_type].mapping.lookups.values()]
        visiting.discard(object_type)
        depth[object_type] = 1 + max(targets, default=-1)
        return depth[object_type]

    for object_type in bound:
        level(object_type)
    return [[o for o in bound if depth[o] == n] for n in range(max(depth.values(), default=-1) + 1)]
