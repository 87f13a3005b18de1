"""The :class:`DynamicsSync` extension object."""

from __future__ import annotations

import datetime as dt
import os
import typing as t
import warnings
import weakref
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence

from flask import Blueprint
from flask import Flask
from flask import current_app
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from .clock import utcnow
from .config import Settings
from .config import load_settings
from .database import dialect_family
from .dataverse.mapping import BoundMapping
from .dataverse.mapping import DataverseMapping
from .dataverse.mapping import bind_mappings
from .dataverse.settings import load_connector_settings
from .errors import AccessPolicyWarning
from .errors import NotInitializedError
from .export import remove_stale_spool_files
from .export import stale_spool_age
from .export_slots import ExportSlots
from .export_slots import default_viewer_id
from .host_database import SessionSource
from .host_database import host_database
from .i18n import install_babel_fallback
from .models import metadata
from .recorder import Recorder
from .recorder import validate_object_type
from .schema import leave_out_of_host_migrations
from .state import EXTENSION_KEY
from .state import AppState
from .state import get_state
from .tracking import Tracking
from .tracking import track
from .types import Change
from .types import ClaimedRecord
from .types import Direction
from .types import Operation
from .types import SyncOutcome

if t.TYPE_CHECKING:
    from flask_admin import Admin
    from flask_admin.base import BaseView
    from flask_sqlalchemy import SQLAlchemy

    from .error_actions import ActionOutcome
    from .notifications import NotifyResult
    from .pauses import PauseInfo
    from .retention import PruneResult
    from .rollup import RollupResult

BLUEPRINT_NAME = "dynamics_sync"
PACKAGE_DIR = os.path.dirname(__file__)

Policy = Callable[[], bool]


class DynamicsSync:
    """Adds the **Microsoft Dynamics** menu (*Sync Status*, *Sync Errors*) to a Flask-Admin
    console and gives the host's sync engine its recording API.

    ::

        sync = DynamicsSync(access=SecuredModelView)
        sync.init_app(app, admin=admin, db=db)

    :param app: call :meth:`init_app` on this application now.
    :param admin: the host's :class:`flask_admin.Admin`; the views are added to it.
    :param db: the host's :class:`flask_sqlalchemy.SQLAlchemy`; its engine and session are used.
    :param clock: returns the current time as a naive UTC datetime (tests inject a fixed one).
    :param access: the host's own access behaviour: its secured view class or mixin (whose
        ``is_accessible``, ``inaccessible_callback`` and ``_handle_view`` then guard the
        plugin's views too, so a refused visitor gets the host's login redirect), or any
        object with ``is_accessible()`` and ``inaccessible_callback(name, **kwargs)``.
        Defaults to the host's admin index view when that one is protected.
    :param can_view: who may open the views, their JSON, metrics and exports (checked on top
        of ``access``).
    :param can_act: who may retry, ignore and resolve errors (on top of viewing). Defaults to
        whoever may view, once the host gave any policy; with none (and a public admin
        index) the actions stay off and :meth:`init_app` warns.
    :param record_url: ``record_url(object_type, record_id)`` gives the URL of the host's
        own page of a record (or ``None``); record ids in the views link there. Defaults
        to the host's ``ModelView`` of the model tracked for that object type, if any.
    :param viewer_id: who is asking (any hashable value), for the per-user bound on
        exports (``DYNAMICS_SYNC_EXPORTS_PER_USER``). Defaults to Flask-Login's user
        id when the host uses Flask-Login, else the client's address.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        admin: Admin | None = None,
        db: SQLAlchemy | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        access: t.Any = None,
        can_view: Policy | None = None,
        can_act: Policy | None = None,
        record_url: Callable[[str, str], str | None] | None = None,
        viewer_id: Callable[[], t.Hashable] | None = None,
    ) -> None:
        self.clock: Callable[[], dt.datetime] = clock or utcnow
        self.access = access
        self.can_view = can_view
        self.can_act = can_act
        self.record_url = record_url
        self.viewer_id: Callable[[], t.Hashable] = viewer_id or default_viewer_id
        self._trackings: list[Tracking] = []
        # The views made for each Admin: made and added once, whatever the number of apps.
        self._admin_views: weakref.WeakKeyDictionary[Admin, list[BaseView]] = weakref.WeakKeyDictionary()
        self._warned_open_console = False
        if app is not None:
            self.init_app(app, admin=admin, db=db)

    # -- setup ------------------------------------------------------------------

    def init_app(
        self,
        app: Flask,
        *,
        admin: Admin | None = None,
        db: SQLAlchemy | None = None,
        engine: Engine | None = None,
        session: SessionSource | None = None,
    ) -> None:
        """Register the extension, its blueprint, views, CLI and (if configured) scheduler on ``app``.

        Reads every ``DYNAMICS_SYNC_*`` key once. The database is the host's
        Flask-SQLAlchemy ``db``, or for a host on plain SQLAlchemy its
        ``engine`` and ``session`` (a ``scoped_session`` or ``sessionmaker``;
        default: a session of the plugin's own on ``engine``). Without
        ``admin`` only the recording API and CLI are set up (add the views
        later with :meth:`add_views`). Safe to call for many apps (app
        factories) with one ``DynamicsSync`` and one ``Admin``.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "Flask-Dynamics-Sync is already initialised on this application; "
                "call init_app() once per app (use add_views() for another Admin)."
            )
        database = host_database(app, db, engine, session)
        settings = load_settings(app.config)
        connector = load_connector_settings(app.config)
        bind_mappings(self._trackings, settings.objects)  # mapping mistakes surface now, not at 3 a.m.
        state = AppState(
            extension=self,
            settings=settings,
            database=database,
            recorder=Recorder(
                settings,
                get_engine=database.get_engine,
                get_session=database.get_session,
                clock=lambda: self.clock(),
            ),
            connector=connector,
        )
        app.extensions[EXTENSION_KEY] = state
        app.register_blueprint(
            Blueprint(
                BLUEPRINT_NAME,
                __name__,
                template_folder="templates",
                static_folder="static/dynamics_sync",
                static_url_path=settings.static_url_path,
            )
        )
        install_babel_fallback(app)
        leave_out_of_host_migrations(app)
        state.export_slots = ExportSlots(per_viewer=settings.exports_per_user, total=settings.exports_total)
        # What an export killed mid-way left behind (a live one is younger than its time limit).
        remove_stale_spool_files(older_than=stale_spool_age(settings))
        from .cli import cli_group

        app.cli.add_command(cli_group)
        if admin is not None:
            self.add_views(admin, app=app)
        if settings.scheduler:
            from .scheduler import start_scheduler

            state.scheduler = start_scheduler(app)

    def add_views(self, admin: Admin, *, app: Flask | None = None) -> list[BaseView]:
        """Add *Sync Status* and *Sync Errors* to ``admin`` under the menu category.

        Call it again with another :class:`~flask_admin.Admin` to show the views
        in several consoles: endpoints are prefixed with that admin's endpoint.
        An ``Admin`` gets the views once: for a further app (an app factory),
        they are only registered on that app, as ``Admin.init_app`` does.
        """
        from .views import make_views
        from .views import show_menu_badges

        state = self._state(app)
        views = self._admin_views.get(admin)
        if views is None:
            views = self._admin_views[admin] = make_views(self, admin, state.settings)
            admin.add_views(*views)
            show_menu_badges(views)
            self._warn_if_open(admin)
        else:
            target = app or current_app._get_current_object()  # type: ignore[attr-defined]
            for view in views:
                # Admin.init_app(target) registered them already when it ran after the first add_views.
                if admin.app is target and view.endpoint not in target.blueprints:
                    target.register_blueprint(view.create_blueprint(admin), host=admin.host)
        state.views.extend(views)
        return views

    def _warn_if_open(self, admin: Admin) -> None:
        from .views.access import gives_policy

        if self._warned_open_console or gives_policy(self, admin.index_view):
            return
        self._warned_open_console = True
        warnings.warn(
            f"Flask-Dynamics-Sync: the admin index view of {admin.name!r} is open to everyone and no "
            "access policy was given, so Sync Status and Sync Errors are public and retry, ignore and "
            "resolve are off. Pass DynamicsSync(access=<your secured view class>) to apply your console's "
            "own access rules (or can_view= and can_act=).",
            AccessPolicyWarning,
            stacklevel=3,
        )

    def _state(self, app: Flask | None = None) -> AppState:
        state = get_state(app)
        if state.extension is not self:
            raise NotInitializedError("call init_app(app, db=db) on this DynamicsSync before using it")
        return state

    @property
    def settings(self) -> Settings:
        """The current application's settings."""
        return self._state().settings

    def now(self) -> dt.datetime:
        """The current time (naive UTC) from the extension's clock."""
        return self.clock()

    def create_all(self) -> None:
        """Create the plugin's tables on the host's engine (hosts without migrations)."""
        metadata.create_all(self._state().database.engine)

    def drop_all(self) -> None:
        """Drop the plugin's tables."""
        metadata.drop_all(self._state().database.engine)

    def upgrade_schema(self, revision: str = "head") -> None:
        """Migrate the plugin's tables to ``revision`` with the Alembic scripts it ships.

        The revision is kept in the plugin's own version table,
        ``dynamics_sync_alembic_version``: the host's ``alembic_version`` and
        migrations are never touched. Same as ``flask dynamics-sync db upgrade``.
        """
        from .schema import upgrade

        upgrade(self._state().database.engine, revision)

    # -- jobs -------------------------------------------------------------------

    def rollup(self, start: dt.datetime | None = None, end: dt.datetime | None = None) -> RollupResult:
        """Recompute the hourly throughput (and take a backlog snapshot); see :mod:`.rollup`.

        Without arguments: the sliding window and every hour missed since the
        last run, like the hourly job. With ``start`` and/or ``end`` (UTC;
        naive or aware): backfill exactly those hours, e.g. after importing
        history. Idempotent; safe while the scheduler runs.
        """
        from .scheduler import run_rollup

        return run_rollup(self._app(), start, end)

    def prune(self) -> PruneResult:
        """Apply retention now (old events after their hours are rolled up, old closed errors, old snapshots)."""
        from .scheduler import run_prune

        return run_prune(self._app())

    def notify(self, *, digest: bool = True, alerts: bool = True) -> NotifyResult:
        """Send the daily errors digest and check the error threshold now (signals, and e-mail if configured).

        :raises flask_dynamics_sync.notifications.NotificationError: an e-mail
            could not be sent (the signals were); its ``result`` tells what was sent.
        """
        from .scheduler import run_notify

        return run_notify(self._app(), digest=digest, alerts=alerts)

    def shutdown_scheduler(self, *, wait: bool = True) -> None:
        """Stop the background scheduler of the current app, if it runs (tests, clean shutdowns)."""
        from .scheduler import shutdown_scheduler

        shutdown_scheduler(self._state().scheduler, wait=wait)

    def _app(self) -> Flask:
        self._state()
        return current_app._get_current_object()  # type: ignore[attr-defined]

    # -- sync errors ------------------------------------------------------------

    def retry_errors(self, ids: Iterable[int]) -> ActionOutcome:
        """Queue the records of these sync errors again and mark the errors retried, in one transaction.

        Open and ignored errors of configured objects are retried; others are left as they are.
        The same as *Retry* in the *Sync Errors* view (see :mod:`.error_actions`).
        """
        return self._error_action("retry", ids)

    def ignore_errors(self, ids: Iterable[int]) -> ActionOutcome:
        """Mark these open or retried sync errors ignored."""
        return self._error_action("ignore", ids)

    def resolve_errors(self, ids: Iterable[int]) -> ActionOutcome:
        """Mark these open, retried or ignored sync errors resolved."""
        return self._error_action("resolve", ids)

    def _error_action(self, action: str, ids: Iterable[int]) -> ActionOutcome:
        from .error_actions import run_on_ids

        state = self._state()
        return run_on_ids(state.database.engine, state.recorder, action, ids, now=self.clock())

    # -- pause and resume -------------------------------------------------------

    def pause(self, object_type: str, direction: Direction | str, *, by: str | None = None) -> bool:
        """Pause an object in one direction: no claim hands its records out, no change of it is read.

        The queue keeps growing; :meth:`resume` lets it drain in order. ``by`` is who paused it
        (shown on *Sync Status*). Returns False if it was already paused (the first pause is kept).
        """
        from .pauses import pause

        object_type, direction = self._pause_target(object_type, direction)
        with self._state().database.engine.begin() as conn:
            return pause(conn, object_type, direction, by, self.clock())

    def resume(self, object_type: str, direction: Direction | str) -> bool:
        """Resume a paused object in one direction; False if it was not paused."""
        from .pauses import resume

        object_type, direction = self._pause_target(object_type, direction)
        with self._state().database.engine.begin() as conn:
            return resume(conn, object_type, direction)

    def pauses(self) -> dict[str, list[PauseInfo]]:
        """Every pause in force, by object type."""
        from .pauses import paused

        with self._state().database.engine.connect() as conn:
            return paused(conn)

    def _pause_target(self, object_type: str, direction: Direction | str) -> tuple[str, Direction]:
        from .recorder import validate_direction
        from .recorder import validate_object_type

        return validate_object_type(self.settings, object_type), validate_direction(direction)

    # -- recording API --------------------------------------------------------

    def enqueue(
        self,
        object_type: str,
        record_id: str | int,
        operation: Operation | str,
        *,
        direction: Direction | str | None = None,
        label: str | None = None,
        session: Session | Connection | None = None,
    ) -> None:
        """Put a changed record in the queue, coalescing with a row already waiting.

        Runs in ``session`` (default: the host's session, ``db.session`` or the one given to
        :meth:`init_app`) and does not
        commit: the change and its queue row commit or roll back together.
        An update on a pending insert stays one pending insert; the record
        keeps the time it started waiting.

        :raises ValueError: unknown object type, operation or direction; record id too long.
        :raises TypeError: an argument of the wrong type.
        """
        self.enqueue_many(
            [Change(object_type, record_id, operation, direction, label)],  # type: ignore[arg-type]
            session=session,
        )

    def enqueue_many(self, changes: Iterable[Change], *, session: Session | Connection | None = None) -> int:
        """Enqueue several changes in one round trip; every change is validated first.

        Returns the number of changes written.
        """
        return self._state().recorder.enqueue_many(changes, session)

    def claim(
        self,
        limit: int = 100,
        *,
        object_types: Sequence[str] | None = None,
        direction: Direction | str | None = None,
        lease_seconds: int | None = None,
    ) -> list[ClaimedRecord]:
        """Hand up to ``limit`` waiting records, oldest first, to the calling worker.

        Two workers never get the same record (``FOR UPDATE SKIP LOCKED`` on
        PostgreSQL and MariaDB, one locking ``UPDATE`` on SQLite). A record not
        reported within ``lease_seconds`` (default ``DYNAMICS_SYNC_CLAIM_TIMEOUT``)
        can be claimed again.
        """
        return self._state().recorder.claim(
            limit, object_types=object_types, direction=direction, lease_seconds=lease_seconds
        )

    def mark_synced(self, records: ClaimedRecord | Iterable[ClaimedRecord]) -> SyncOutcome:
        """Record successes: remove the records from the queue and append sync events, in one transaction.

        A record changed while it was in flight stays queued as an update. Open
        errors of a record that failed before are marked resolved.
        """
        return self._state().recorder.mark_synced(records)

    def mark_failed(self, record: ClaimedRecord, code: str, message: str, *, retry: bool = True) -> bool:
        """Record a failed attempt with Dynamics' error ``code`` and ``message``.

        With ``retry=True`` the record stays queued and is retried after a
        backoff, until ``DYNAMICS_SYNC_MAX_ATTEMPTS``; with ``retry=False`` (or
        at the limit) it is parked until it changes again or an admin retries
        it. A record that changed while in flight is never parked: it waits
        again at once for the newer change. A message longer than its column is
        stored truncated. Returns whether the record was parked.

        :raises ClaimLostError: the claim expired and another worker claimed
            the record since; nothing was written.
        """
        return self._state().recorder.mark_failed(record, code, message, retry)

    def track(
        self,
        model: type,
        object_type: str,
        *,
        record_id: str | Callable[[t.Any], t.Any] | None = None,
        label: str | Callable[[t.Any], t.Any] | None = None,
        direction: Direction | str | None = None,
        fields: Iterable[str] | None = None,
        dataverse: DataverseMapping | None = None,
    ) -> Tracking:
        """Enqueue ``model``'s ORM inserts and updates automatically, in the same transaction.

        :param record_id: attribute name or callable giving the record id (default: the primary key).
        :param label: attribute name or callable giving the label shown in the views.
        :param fields: only updates to these columns enqueue (default: any column).
        :param dataverse: where the connector's worker sends the records (see ``docs/connector.md``).
        :raises flask_dynamics_sync.dataverse.MappingError: a mapping that cannot work.
        """
        try:
            settings: Settings | None = self._state().settings
        except NotInitializedError:
            settings = None  # declared before init_app: checked there (and at the first write)
        if settings is not None:
            validate_object_type(settings, object_type)
        tracking = track(
            self,
            model,
            object_type,
            record_id=record_id,
            label=label,
            direction=direction,
            fields=fields,
            dataverse=dataverse,
        )
        if settings is not None and dataverse is not None:
            try:
                bind_mappings([*self._trackings, tracking], settings.objects)
            except Exception:
                tracking.remove()  # a refused mapping leaves no listener behind
                raise
        self._trackings.append(tracking)
        return tracking

    def dataverse_mappings(self) -> dict[str, BoundMapping]:
        """The tracked models' Dataverse mappings by object type (checked against each other)."""
        return bind_mappings(self._trackings, self._state().settings.objects)

    @property
    def trackings(self) -> tuple[Tracking, ...]:
        """The models tracked with :meth:`track`, in order."""
        return tuple(self._trackings)

    def dialect(self) -> str:
        """The database family in use: ``sqlite``, ``postgresql`` or ``mysql``."""
        return dialect_family(self._state().database.engine)

    @property
    def engine(self) -> Engine:
        """The host's engine the plugin's tables live on."""
        return self._state().database.engine
