"""The *Sync Errors* view (placeholder: filled in by the errors view issue)."""

from __future__ import annotations

import typing as t

from flask_admin import BaseView
from flask_admin import expose

from .base import PluginViewMixin

if t.TYPE_CHECKING:
    from ..extension import DynamicsSync


class SyncErrorsView(PluginViewMixin, BaseView):
    """Records that failed to sync."""

    def __init__(self, sync: DynamicsSync, **kwargs: t.Any) -> None:
        self.sync = sync
        super().__init__(**kwargs)

    @expose("/")
    def index(self) -> str:
        return self.render("dynamics_sync/errors.html", **self.plugin_template_args())
