"""Search over sync errors: record id, record label, error code and message.

The search box takes whitespace-separated terms (``"a phrase"`` in double
quotes stays one term); every term must match. A term matches an error when
one of the four columns contains it, case-insensitively. ``%``, ``_`` and the
escape character itself are literal: a term can never become a wildcard.

A term shorter than :data:`MIN_SUBSTRING_LENGTH` characters would be contained
in almost every row, turning the search into a scan of the whole table: next to
longer terms it is ignored (``out of range`` looks for ``out`` and ``range``);
in a search of short terms only, each must *equal* a record id or an error
code (``42`` finds record 42; both columns are indexed). Longer terms use ``ILIKE '%term%'`` on PostgreSQL, which a trigram index
(``pg_trgm``, see the README) answers without scanning; MariaDB compares
``lower(column) LIKE lower(pattern)``, the same semantics. SQLite's own ``LIKE``
already ignores case as its ``lower()`` does (ASCII letters), so there it is a
plain ``LIKE``: a third of the cost of a scan.

Every search is bounded before it reaches the database: at most
:data:`MAX_SEARCH_LENGTH` characters and :data:`MAX_TERMS` terms
(:func:`search_problem` says which bound a search exceeds, in the viewer's
language). A longer pattern would cost the database time in proportion to its
length on every row it cannot rule out (and SQLite refuses ``LIKE`` patterns
of 50,000 characters).
"""

from __future__ import annotations

import re
import typing as t

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

from .i18n import format_number
from .i18n import gettext
from .models import ERROR_SEARCH_COLUMNS
from .models import SyncError

#: Terms shorter than this match record ids and error codes exactly, never as substrings.
MIN_SUBSTRING_LENGTH = 3
#: Most terms a search may have.
MAX_TERMS = 8
#: Most characters a search may have (quotes and spaces included).
MAX_SEARCH_LENGTH = 200
#: Leading characters of a longer term the trigram index looks up; the whole term is then
#: checked on the rows found. PostgreSQL's estimate of a trigram lookup grows with every
#: trigram: a 200-character term would be planned as a scan of the whole table.
INDEXED_PREFIX_LENGTH = 16
#: The ``LIKE ... ESCAPE`` character: needs no escaping in any SQL dialect's string literal.
LIKE_ESCAPE = "/"

#: Columns a term is looked for in.
SEARCH_COLUMNS = tuple(getattr(SyncError, name) for name in ERROR_SEARCH_COLUMNS)
#: Columns a short term must equal.
EXACT_COLUMNS = (SyncError.record_id, SyncError.error_code)

_TERM = re.compile(r'"([^"]*)"|(\S+)')


class SearchTooBroad(ValueError):
    """A search beyond :data:`MAX_SEARCH_LENGTH` characters or :data:`MAX_TERMS` terms."""


def _split(search: str) -> list[str]:
    terms = []
    # The recorder stores NUL as U+FFFD (PostgreSQL refuses NUL in text): look for what is stored.
    for quoted, bare in _TERM.findall(search.replace("\x00", "\ufffd")):
        term = (quoted if quoted else bare).strip()
        if term:
            terms.append(term)
    return terms


def search_problem(search: str | None) -> str | None:
    """Why ``search`` cannot be run, in the viewer's language, or ``None`` when it can."""
    if not search:
        return None
    if len(search) > MAX_SEARCH_LENGTH:
        return gettext(
            "The search is too long: %(length)s characters, at most %(limit)s are allowed.",
            length=format_number(len(search)),
            limit=format_number(MAX_SEARCH_LENGTH),
        )
    terms = len(_split(search))
    if terms > MAX_TERMS:
        return gettext(
            "The search has too many terms: %(terms)s, at most %(limit)s are allowed.",
            terms=format_number(terms),
            limit=format_number(MAX_TERMS),
        )
    return None


def parse_terms(search: str | None) -> list[str]:
    """Split a search string into its non-empty terms.

    :raises SearchTooBroad: beyond :data:`MAX_SEARCH_LENGTH` characters or :data:`MAX_TERMS` terms.
    """
    if not search:
        return []
    if len(search) > MAX_SEARCH_LENGTH:
        raise SearchTooBroad(f"search of {len(search)} characters; at most {MAX_SEARCH_LENGTH} are allowed")
    terms = _split(search)
    if len(terms) > MAX_TERMS:
        raise SearchTooBroad(f"search of {len(terms)} terms; at most {MAX_TERMS} are allowed")
    return terms


def escape_like(term: str) -> str:
    """Make ``%``, ``_`` and :data:`LIKE_ESCAPE` literal in a ``LIKE`` pattern."""
    return (
        term.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )


class ContainsIgnoringCase(sa.ColumnElement[bool]):
    """``column ILIKE pattern ESCAPE '/'``, compiled as a plain ``LIKE`` on SQLite."""

    inherit_cache = True
    type = sa.Boolean()
    _is_implicitly_boolean = True  # a predicate: no "= 1" on databases without a boolean type
    _traverse_internals = [
        ("ilike", InternalTraversal.dp_clauseelement),
        ("like", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: t.Any, pattern: str) -> None:
        self.ilike = column.ilike(pattern, escape=LIKE_ESCAPE)
        self.like = column.like(pattern, escape=LIKE_ESCAPE)


@compiles(ContainsIgnoringCase)
def _compile_ilike(element: ContainsIgnoringCase, compiler: t.Any, **kw: t.Any) -> str:
    return compiler.process(element.ilike, **kw)


@compiles(ContainsIgnoringCase, "sqlite")
def _compile_sqlite_like(element: ContainsIgnoringCase, compiler: t.Any, **kw: t.Any) -> str:
    return compiler.process(element.like, **kw)


def term_condition(term: str) -> sa.ColumnElement[bool]:
    """The condition one term puts on an error row: contained in one of the searched columns.

    A term longer than :data:`INDEXED_PREFIX_LENGTH` is looked up by its first
    characters, then compared whole through ``column || ''``, which no index answers
    (so the planner never prices the whole term as an index lookup).
    """
    pattern = f"%{escape_like(term)}%"
    if len(term) <= INDEXED_PREFIX_LENGTH:
        return sa.or_(*(ContainsIgnoringCase(column, pattern) for column in SEARCH_COLUMNS))
    prefix = f"%{escape_like(term[:INDEXED_PREFIX_LENGTH])}%"
    return sa.or_(
        *(
            sa.and_(
                ContainsIgnoringCase(column, prefix),
                ContainsIgnoringCase(sa.type_coerce(column + sa.literal_column("''", sa.String), sa.String), pattern),
            )
            for column in SEARCH_COLUMNS
        )
    )


def exact_condition(term: str) -> sa.ColumnElement[bool]:
    """The condition a short term puts on an error row: equal to its record id or error code."""
    return sa.or_(*(column == term for column in EXACT_COLUMNS))


def search_condition(search: str | None) -> sa.ColumnElement[bool] | None:
    """The ``WHERE`` condition of a search string, or ``None`` when it holds no term.

    :raises SearchTooBroad: see :func:`parse_terms`; :func:`search_problem` tells the viewer why.
    """
    terms = parse_terms(search)
    if not terms:
        return None
    long_terms = [term for term in terms if len(term) >= MIN_SUBSTRING_LENGTH]
    if long_terms:
        return sa.and_(*(term_condition(term) for term in long_terms))
    return sa.and_(*(exact_condition(term) for term in terms))
