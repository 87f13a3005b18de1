"""The two admin views and how they are attached to a host's ``Admin``."""

from __future__ import annotations

import typing as t

from ..config import Settings
from ..i18n import lazy_gettext
from .errors import SyncErrorsView
from .status import SyncStatusView

if t.TYPE_CHECKING:
    from flask_admin import Admin
    from flask_admin.base import BaseView

    from ..extension import DynamicsSync

__all__ = ["SyncErrorsView", "SyncStatusView", "endpoint_prefix", "make_views", "show_menu_badges"]


def endpoint_prefix(admin: Admin) -> str:
    """``dynamics_sync`` for the default Admin, ``<endpoint>_dynamics_sync`` for others.

    Blueprint names must be unique per app, so views added to a second Admin
    get that Admin's endpoint in front.
    """
    return "dynamics_sync" if admin.endpoint == "admin" else f"{admin.endpoint}_dynamics_sync"


def show_menu_badges(views: list[BaseView]) -> None:
    """After ``Admin.add_views``: the *Sync Errors* menu entries carry the open-error badge."""
    for view in views:
        if isinstance(view, SyncErrorsView):
            view.show_menu_badge()


def make_views(sync: DynamicsSync, admin: Admin, settings: Settings) -> list[BaseView]:
    """Build the *Sync Status* and *Sync Errors* views for ``admin``."""
    prefix = endpoint_prefix(admin)
    category = settings.menu_category
    status = SyncStatusView(
        sync,
        name=lazy_gettext("Sync Status"),
        category=category,
        endpoint=f"{prefix}_status",
        url=f"{settings.url_segment}/status",
    )
    errors = SyncErrorsView(
        sync,
        name=lazy_gettext("Sync Errors"),
        category=category,
        endpoint=f"{prefix}_errors",
        url=f"{settings.url_segment}/errors",
    )
    # Each links to the other (an object's errors, an error's object).
    status.errors_view, errors.status_view = errors, status
    return [status, errors]
