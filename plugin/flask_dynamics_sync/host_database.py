"""Where the plugin's tables live: the host's engine and session.

A host hands them over either as its Flask-SQLAlchemy object (``db=``) or, in
a console built on plain SQLAlchemy, as an engine and a session factory
(``engine=``, ``session=``), the pair Flask-Admin's ``ModelView(Model, session)``
takes too. Everything else in the plugin reads them through :class:`HostDatabase`.
"""

from __future__ import annotations

import dataclasses
import typing as t
from collections.abc import Callable

from flask import Flask
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm import scoped_session
from sqlalchemy.orm import sessionmaker

if t.TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

SessionSource = t.Union["scoped_session[Session]", "sessionmaker[Session]"]
"""What ``session=`` accepts: the host's ``scoped_session`` or a ``sessionmaker``."""


@dataclasses.dataclass(frozen=True)
class HostDatabase:
    """The host's engine and its request-scoped session, looked up when used."""

    get_engine: Callable[[], Engine]
    get_session: Callable[[], scoped_session[Session]]

    @property
    def engine(self) -> Engine:
        """The engine the plugin's tables are on."""
        return self.get_engine()

    @property
    def session(self) -> scoped_session[Session]:
        """The host's session of the current request or app context (``enqueue`` writes in it)."""
        return self.get_session()


def host_database(
    app: Flask,
    db: SQLAlchemy | None = None,
    engine: Engine | None = None,
    session: SessionSource | None = None,
) -> HostDatabase:
    """The database ``init_app`` was given: a Flask-SQLAlchemy ``db``, or ``engine`` and ``session``.

    A ``sessionmaker`` (or no ``session`` at all) is wrapped in a
    ``scoped_session`` that is removed when each app context ends, as the
    host's own ``scoped_session`` is by its teardown.
    """
    if db is not None:
        if engine is not None or session is not None:
            raise TypeError("init_app() takes db= (Flask-SQLAlchemy) or engine= and session=, not both")
        if "sqlalchemy" not in app.extensions:
            raise RuntimeError("call db.init_app(app) before sync.init_app(app)")
        return HostDatabase(lambda: db.engine, lambda: db.session)
    if engine is None:
        raise TypeError(
            "init_app() needs db=, the host's flask_sqlalchemy.SQLAlchemy object, "
            "or engine= (and session=) for a host on plain SQLAlchemy"
        )
    if not isinstance(engine, Engine):
        raise TypeError(f"engine= must be a sqlalchemy Engine, not {type(engine).__name__}")
    if isinstance(session, scoped_session):
        scoped = session
    else:
        if session is not None and not isinstance(session, sessionmaker):
            raise TypeError(f"session= must be a scoped_session or a sessionmaker, not {type(session).__name__}")
        scoped = scoped_session(session or sessionmaker(bind=engine))
        app.teardown_appcontext(lambda exc: scoped.remove())
    return HostDatabase(lambda: engine, lambda: scoped)
