"""Who may look and who may act: the host's own access behaviour, applied to the plugin's views.

A host says who may use its console in one of three ways, and the plugin
follows whichever it is given (see :class:`~flask_dynamics_sync.DynamicsSync`):

* ``access=``: the host's secured view class or mixin (its ``is_accessible``,
  ``inaccessible_callback`` and, as Flask-Admin's docs allow, ``_handle_view``),
  or any object with those methods. A class runs its methods on a stand-in
  that shares the plugin view's attributes, so ``self.endpoint`` and
  ``super()`` work as in the host's own views. A refused visitor gets exactly
  what the host's views give (e.g. its login redirect with ``next=``).
* ``can_view=`` / ``can_act=``: functions without arguments.
* nothing: the host's admin index view, when it is protected.

Without any of them, and with Flask-Admin's stock (public) index view, the
console is public: the plugin's pages are as open as the host's, and the
actions that change state stay off until the host says who may act.
"""

from __future__ import annotations

import typing as t

from flask import abort
from flask.typing import ResponseReturnValue
from flask_admin.base import BaseView

if t.TYPE_CHECKING:
    from ..extension import DynamicsSync


def overrides(obj: t.Any, name: str) -> bool:
    """Does ``obj`` (a view or a view class) define ``name`` otherwise than Flask-Admin's ``BaseView``?"""
    cls = obj if isinstance(obj, type) else type(obj)
    return getattr(cls, name, None) not in (None, getattr(BaseView, name))


def is_protected(view: t.Any) -> bool:
    """Does the host restrict ``view`` (its own ``is_accessible`` or ``_handle_view``)?"""
    return view is not None and (overrides(view, "is_accessible") or overrides(view, "_handle_view"))


def gives_policy(sync: DynamicsSync, index_view: t.Any) -> bool:
    """Has the host said who may use the plugin (an argument, or a protected admin index)?"""
    return any(p is not None for p in (sync.access, sync.can_view, sync.can_act)) or is_protected(index_view)


def stand_in(cls: type, view: t.Any) -> t.Any:
    """An instance of the host's class ``cls`` that shares ``view``'s attributes, without running ``__init__``.

    ``cls``'s methods then see the plugin view's ``name``, ``endpoint``,
    ``admin``... and ``super()`` inside them works (the stand-in is a ``cls``).
    """
    guard = object.__new__(cls)
    guard.__dict__ = view.__dict__
    return guard


class HostAccess:
    """The access behaviour of one plugin view, resolved from what the host gave the extension."""

    def __init__(self, sync: DynamicsSync, view: t.Any) -> None:
        self.sync = sync
        self.view = view

    def guard(self) -> t.Any | None:
        """What decides for the host: ``access=``, else a protected admin index view, else nothing."""
        access = self.sync.access
        if access is not None:
            return stand_in(access, self.view) if isinstance(access, type) else access
        if self.sync.can_view is None:
            index_view = getattr(self.view.admin, "index_view", None)
            if index_view is not self.view and is_protected(index_view):
                return index_view
        return None

    def host_allows(self) -> bool:
        guard = self.guard()
        return guard is None or bool(guard.is_accessible())

    def may_view(self) -> bool:
        """The host's rule and ``can_view``, both when both are given."""
        if not self.host_allows():
            return False
        return self.sync.can_view is None or bool(self.sync.can_view())

    def acting_configured(self) -> bool:
        """Has the host said who may change state? Not with a public console and no policy at all."""
        return gives_policy(self.sync, getattr(self.view.admin, "index_view", None))

    def may_act(self) -> bool:
        """May the viewer retry, ignore, resolve? Only someone the host authorised."""
        if not self.acting_configured() or not self.may_view():
            return False
        return self.sync.can_act is None or bool(self.sync.can_act())

    def handle(self, name: str, **kwargs: t.Any) -> ResponseReturnValue | None:
        """Run before every view function: the host's own ``_handle_view`` first, if it has one."""
        guard = self.guard()
        if guard is not None and overrides(guard, "_handle_view"):
            response = guard._handle_view(name, **kwargs)
            if response is not None:
                return t.cast(ResponseReturnValue, response)
        if not self.may_view():
            return self.refuse(name, **kwargs)
        return None

    def refuse(self, name: str, **kwargs: t.Any) -> ResponseReturnValue:
        """What a refused visitor gets: the host's ``inaccessible_callback``, or 403 when the host let them in."""
        guard = self.guard()
        if guard is not None and not guard.is_accessible() and hasattr(guard, "inaccessible_callback"):
            response = guard.inaccessible_callback(name, **kwargs)
            if response is not None:
                return t.cast(ResponseReturnValue, response)
        abort(403)
