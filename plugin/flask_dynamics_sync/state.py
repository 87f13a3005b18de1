"""What the extension keeps per application, and how every module finds it.

``app.extensions["dynamics_sync"]`` holds one :class:`AppState` per application;
the CLI, the scheduler, the worker and the views read it through
:func:`get_state` instead of importing the extension.
"""

from __future__ import annotations

import dataclasses
import typing as t

from flask import Flask
from flask import current_app

from .config import Settings
from .dataverse.settings import ConnectorSettings
from .errors import NotInitializedError
from .export_slots import ExportSlots
from .host_database import HostDatabase
from .recorder import Recorder

if t.TYPE_CHECKING:
    from flask_admin.base import BaseView

    from .extension import DynamicsSync

EXTENSION_KEY = "dynamics_sync"


@dataclasses.dataclass
class AppState:
    """What the extension keeps per application, in ``app.extensions["dynamics_sync"]``."""

    extension: DynamicsSync
    settings: Settings
    database: HostDatabase
    recorder: Recorder
    connector: ConnectorSettings
    views: list[BaseView] = dataclasses.field(default_factory=list)
    scheduler: t.Any = None
    worker: t.Any = None
    """The sync worker the scheduler runs (``DYNAMICS_SYNC_WORKER_IN_SCHEDULER``)."""
    export_slots: ExportSlots | None = None
    """The exports in flight and reading (:mod:`.export_slots`)."""


def get_state(app: Flask | None = None) -> AppState:
    """The plugin's state of ``app`` (default: the current application).

    :raises NotInitializedError: outside an application context, or before ``init_app``.
    """
    if app is None:
        try:
            app = t.cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
        except RuntimeError:
            raise NotInitializedError(
                "Flask-Dynamics-Sync needs an application context (with app.app_context(): ...)"
            ) from None
    state = app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise NotInitializedError("call init_app(app, db=db) before using Flask-Dynamics-Sync")
    return t.cast(AppState, state)
