"""Links from a record id to the host's own page of that record.

The host may pass ``record_url(object_type, record_id)`` to :class:`~flask_dynamics_sync.DynamicsSync`;
otherwise the plugin looks for the host's Flask-Admin ``ModelView`` of the model
tracked for that object type (``DynamicsSync.track``, keyed by its primary key)
in the same ``Admin`` and links to its details page, or its edit page when it
has no details page, if the viewer may open it. No match: the id stays plain text.
"""

from __future__ import annotations

import typing as t
from collections.abc import Callable

from flask import g
from flask import url_for
from flask_admin.model import BaseModelView
from markupsafe import Markup

if t.TYPE_CHECKING:
    from ..extension import DynamicsSync

RecordUrl = Callable[[str, str], "str | None"]

#: Schemes a host-given URL may use (a ``javascript:`` URL never becomes a link).
_SAFE_PREFIXES = ("/", "http://", "https://")


def _model_view_endpoints(sync: DynamicsSync, admin: t.Any) -> dict[str, str]:
    """Object type → endpoint of the host's page for one record, for the viewer (once per request)."""
    cache: dict[int, dict[str, str]] = g.setdefault("_dynamics_sync_record_endpoints", {})
    found = cache.get(id(admin))
    if found is None:
        found = {}
        views = [v for v in getattr(admin, "_views", ()) if isinstance(v, BaseModelView)]
        for tracking in sync.trackings:
            if tracking.record_id_spec is not None or tracking.object_type in found:
                continue
            for view in views:
                if getattr(view, "model", None) is not tracking.model or not view.is_accessible():
                    continue
                if view.can_view_details:
                    found[tracking.object_type] = f"{view.endpoint}.details_view"
                elif view.can_edit:
                    found[tracking.object_type] = f"{view.endpoint}.edit_view"
                else:
                    continue
                break
        cache[id(admin)] = found
    return found


def record_url(sync: DynamicsSync, admin: t.Any, object_type: str, record_id: str) -> str | None:
    """The host's page of a record, or ``None``."""
    if sync.record_url is not None:
        url = sync.record_url(object_type, record_id)
        return url if isinstance(url, str) and url.startswith(_SAFE_PREFIXES) and not url.startswith("//") else None
    endpoint = _model_view_endpoints(sync, admin).get(object_type)
    return url_for(endpoint, id=record_id) if endpoint is not None else None


def record_html(sync: DynamicsSync, admin: t.Any, object_type: str, record_id: str) -> Markup:
    """The record id, as a link to the host's page of the record when there is one."""
    url = record_url(sync, admin, object_type, record_id)
    if url is None:
        return Markup('<span class="ds-record-id">{}</span>').format(record_id)
    return Markup('<a class="ds-record-id ds-host-record" href="{}">{}</a>').format(url, record_id)
