"""The *Sync Status* view (placeholder: filled in by the status view issue)."""

from __future__ import annotations

import typing as t

from flask_admin import BaseView
from flask_admin import expose

from .base import PluginViewMixin

if t.TYPE_CHECKING:
    from ..extension import DynamicsSync


class SyncStatusView(PluginViewMixin, BaseView):
    """Backlog of inserts and updates per synced object."""

    def __init__(self, sync: DynamicsSync, **kwargs: t.Any) -> None:
        self.sync = sync
        super().__init__(**kwargs)

    @expose("/")
    def index(self) -> str:
        return self.render("dynamics_sync/status.html", **self.plugin_template_args())
