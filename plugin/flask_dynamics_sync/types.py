"""Value types shared by the recording API, the models and the views."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum


class Operation(str, enum.Enum):
    """What happened to a record. Deletes are not synced by this plugin."""

    INSERT = "insert"
    UPDATE = "update"


class Direction(str, enum.Enum):
    """Which way a record travels."""

    TO_DYNAMICS = "to_dynamics"
    FROM_DYNAMICS = "from_dynamics"


class QueueState(str, enum.Enum):
    """State of a queue row: waiting to be synced, or parked after a failure."""

    PENDING = "pending"
    PARKED = "parked"


class ErrorState(str, enum.Enum):
    """Life cycle of a sync error row."""

    OPEN = "open"
    RETRIED = "retried"
    IGNORED = "ignored"
    RESOLVED = "resolved"


@dataclasses.dataclass(frozen=True)
class Change:
    """One change to enqueue, for :meth:`DynamicsSync.enqueue_many`."""

    object_type: str
    record_id: str | int
    operation: Operation | str
    direction: Direction | str | None = None
    """``None``: ``DYNAMICS_SYNC_DEFAULT_DIRECTION``."""
    label: str | None = None


@dataclasses.dataclass(frozen=True)
class ClaimedRecord:
    """A queue row handed to a sync worker by :meth:`DynamicsSync.claim`.

    Pass it back to :meth:`DynamicsSync.mark_synced` or
    :meth:`DynamicsSync.mark_failed`. ``claim_token`` identifies the claim: a
    worker whose lease expired and whose record was claimed again by someone
    else cannot remove it from the queue.
    """

    queue_id: int
    object_type: str
    record_id: str
    operation: Operation
    direction: Direction
    label: str | None
    queued_at: dt.datetime
    attempts: int
    claim_token: str


@dataclasses.dataclass(frozen=True)
class SyncOutcome:
    """What :meth:`DynamicsSync.mark_synced` did with a batch."""

    synced: int
    """Records removed from the queue."""
    requeued: int
    """Records that changed while in flight and wait again as an update."""
    lost_claim: int
    """Records whose claim had expired and been taken over; their events are still recorded."""
