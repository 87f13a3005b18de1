"""Tracked host models: their ORM inserts and updates enqueue themselves.

The queue row is written on the flush's own connection, inside the host's
transaction (the outbox pattern): if the host rolls back, the queue row is
gone too.
"""

from __future__ import annotations

import dataclasses
import typing as t
from collections.abc import Callable
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapper
from sqlalchemy.orm import object_session

from .types import Change
from .types import Direction
from .types import Operation

if t.TYPE_CHECKING:
    from .dataverse.mapping import DataverseMapping
    from .extension import DynamicsSync

ValueGetter = Callable[[t.Any], t.Any]

#: ``session.info`` key: the object types whose changes the session is applying from Dynamics.
#: Tracking does not queue those changes back to Dynamics (no echo).
RECEIVING = "dynamics_sync_receiving"


def receiving(target: t.Any, object_type: str) -> bool:
    """Is ``target``'s session applying a change of ``object_type`` that came from Dynamics?"""
    session = object_session(target)
    return session is not None and object_type in session.info.get(RECEIVING, ())


@dataclasses.dataclass(frozen=True)
class Tracking:
    """How one host model maps onto a synced object type."""

    model: type
    object_type: str
    record_id: ValueGetter
    label: ValueGetter | None
    direction: Direction | None
    fields: frozenset[str] | None
    record_id_spec: str | ValueGetter | None = None
    """What ``track(record_id=…)`` got (None: the primary key)."""
    dataverse: DataverseMapping | None = None
    """Where the connector's worker sends the records (None: the host syncs them itself)."""
    listeners: dict[str, Callable[..., None]] = dataclasses.field(default_factory=dict, compare=False)

    def remove(self) -> None:
        """Stop tracking the model."""
        for event_name, listener in self.listeners.items():
            if sa.event.contains(self.model, event_name, listener):
                sa.event.remove(self.model, event_name, listener)

    def change(self, target: t.Any, operation: Operation) -> Change:
        return Change(
            object_type=self.object_type,
            record_id=self.record_id(target),
            operation=operation,
            direction=self.direction,  # type: ignore[arg-type]
            label=None if self.label is None else _label_text(self.label(target)),
        )


def _label_text(value: t.Any) -> str | None:
    return None if value is None else str(value)


def _getter(spec: str | ValueGetter | None, default: ValueGetter | None) -> ValueGetter | None:
    if spec is None:
        return default
    if isinstance(spec, str):
        return lambda obj: getattr(obj, spec)
    if callable(spec):
        return spec
    raise TypeError("expected an attribute name or a callable")


def _primary_key(model: type) -> ValueGetter:
    mapper = sa.inspect(model)
    columns = mapper.primary_key
    if len(columns) != 1:
        raise ValueError(
            f"{model.__name__} has a composite primary key; pass record_id= to track()"
        )
    attribute = mapper.get_property_by_column(columns[0]).key
    return lambda obj: getattr(obj, attribute)


def _has_tracked_changes(target: t.Any, fields: frozenset[str] | None) -> bool:
    state = sa.inspect(target)
    for attr in state.mapper.column_attrs:
        if fields is not None and attr.key not in fields:
            continue
        if state.attrs[attr.key].history.has_changes():
            return True
    return False


def track(
    sync: DynamicsSync,
    model: type,
    object_type: str,
    *,
    record_id: str | ValueGetter | None = None,
    label: str | ValueGetter | None = None,
    direction: Direction | str | None = None,
    fields: Iterable[str] | None = None,
    dataverse: DataverseMapping | None = None,
) -> Tracking:
    """Listen to ``model``'s inserts and updates; see :meth:`DynamicsSync.track`."""
    from .recorder import validate_direction

    if not isinstance(model, type) or sa.inspect(model, raiseerr=False) is None:
        raise TypeError(f"{model!r} is not a mapped model class")
    if not isinstance(object_type, str) or not object_type:
        raise TypeError("object_type must be a non-empty str")
    tracking = Tracking(
        model=model,
        object_type=object_type,
        record_id=_getter(record_id, None) or _primary_key(model),
        label=_getter(label, None),
        direction=validate_direction(direction) if direction is not None else None,
        fields=frozenset(fields) if fields is not None else None,
        record_id_spec=record_id,
        dataverse=dataverse,
    )
    if dataverse is not None:
        from .dataverse.mapping import check_mapping

        check_mapping(tracking, dataverse)

    def after_insert(mapper: Mapper[t.Any], connection: Connection, target: t.Any) -> None:
        if receiving(target, object_type):
            return
        sync.enqueue_many([tracking.change(target, Operation.INSERT)], session=connection)

    def after_update(mapper: Mapper[t.Any], connection: Connection, target: t.Any) -> None:
        # after_update also fires for objects flushed without a net column change.
        if _has_tracked_changes(target, tracking.fields) and not receiving(target, object_type):
            sync.enqueue_many([tracking.change(target, Operation.UPDATE)], session=connection)

    tracking.listeners.update(after_insert=after_insert, after_update=after_update)
    for event_name, listener in tracking.listeners.items():
        sa.event.listen(model, event_name, listener)
    return tracking
