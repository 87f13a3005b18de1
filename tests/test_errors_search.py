"""Sync Errors search: literal terms over record id, label, error code and message."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.models import metadata
from flask_dynamics_sync.search import MAX_SEARCH_LENGTH
from flask_dynamics_sync.search import MAX_TERMS
from flask_dynamics_sync.search import SearchTooBroad
from flask_dynamics_sync.search import escape_like
from flask_dynamics_sync.search import parse_terms
from flask_dynamics_sync.search import search_condition
from flask_dynamics_sync.search import search_problem

from .conftest import ERRORS_URL
from .conftest import UI_LOCALES
from .conftest import listed_error_ids
from .conftest import page_text

# -- parsing (no database) ----------------------------------------------------------


def test_terms_are_split_on_whitespace():
    assert parse_terms("  Ada   0x80040237 ") == ["Ada", "0x80040237"]


def test_a_quoted_phrase_is_one_term():
    assert parse_terms('"quota is" used') == ["quota is", "used"]


@pytest.mark.parametrize("search", [None, "", "   ", '""'])
def test_a_search_without_terms_selects_nothing_extra(search):
    assert parse_terms(search) == []


def test_a_search_of_the_most_terms_and_characters_is_parsed():
    search = " ".join(["t" * 24] * MAX_TERMS)

    assert len(search) == MAX_SEARCH_LENGTH - 8 + 7
    assert parse_terms(search) == ["t" * 24] * MAX_TERMS


def test_a_search_of_too_many_terms_is_refused_with_the_limit():
    search = " ".join(f"t{i}" for i in range(MAX_TERMS + 1))

    assert search_problem(search) == "The search has too many terms: 9, at most 8 are allowed."
    with pytest.raises(SearchTooBroad, match="search of 9 terms; at most 8 are allowed"):
        parse_terms(search)


def test_a_search_of_too_many_characters_is_refused_with_the_limit():
    search = "x" * 60_000

    assert search_problem(search) == "The search is too long: 60,000 characters, at most 200 are allowed."
    with pytest.raises(SearchTooBroad, match="search of 60000 characters; at most 200 are allowed"):
        search_condition(search)


@pytest.mark.parametrize("search", [None, "", "x" * MAX_SEARCH_LENGTH, "a b c d e f g h"])
def test_a_search_within_the_bounds_has_no_problem(search):
    assert search_problem(search) is None


def test_like_wildcards_and_the_escape_character_are_escaped():
    assert escape_like("100%_a/b") == "100/%/_a//b"


# -- on the list ----------------------------------------------------------------------


def test_no_search_lists_every_error_newest_first(client, errors_dataset):
    assert listed_error_ids(client) == [row["id"] for row in errors_dataset]


def test_percent_is_literal(client, errors_dataset):
    # As a wildcard, "00%" would match every row (each error code contains "00").
    assert listed_error_ids(client, {"search": "00%"}) == [700003]


def test_underscore_is_literal(client, errors_dataset):
    # As a wildcard, "me_Co" would also match "Acme Corp".
    assert listed_error_ids(client, {"search": "me_Co"}) == [700004]


def test_backslash_is_literal(client, errors_dataset):
    assert listed_error_ids(client, {"search": "DOMAIN\\svc_sync"}) == [700008]


def test_the_escape_character_is_literal(client, errors_dataset):
    assert listed_error_ids(client, {"search": "//evil"}) == [700002]


def test_a_lone_wildcard_matches_nothing(client, errors_dataset):
    assert listed_error_ids(client, {"search": "%%%"}) == []


def test_search_matches_the_record_label(client, errors_dataset):
    assert listed_error_ids(client, {"search": "Hopper"}) == [700003]


def test_search_matches_part_of_the_error_code(client, errors_dataset):
    assert listed_error_ids(client, {"search": "80040237"}) == [700001, 700004, 700007]


def test_search_matches_the_message(client, errors_dataset):
    assert listed_error_ids(client, {"search": "quota"}) == [700003]


def test_search_matches_part_of_the_record_id(client, errors_dataset):
    assert listed_error_ids(client, {"search": "A-1"}) == [700004]


def test_search_ignores_case(client, errors_dataset):
    assert listed_error_ids(client, {"search": "dUPLICATE"}) == [700001, 700004, 700007]


def test_every_term_must_match(client, errors_dataset):
    assert listed_error_ids(client, {"search": "Duplicate Ada"}) == [700001, 700007]


def test_a_quoted_phrase_must_match_as_a_whole(client, errors_dataset):
    assert listed_error_ids(client, {"search": '"record: a lead"'}) == [700001]


def test_short_terms_next_to_longer_ones_are_ignored(client, errors_dataset):
    assert listed_error_ids(client, {"search": "out of range"}) == [700005]


def test_a_short_term_alone_finds_an_equal_record_id_only(client, errors_dataset):
    # "42" is part of "420" and of several error codes, but only record 42 equals it.
    assert listed_error_ids(client, {"search": "42"}) == [700003]


def test_a_short_term_alone_matching_no_id_or_code_finds_nothing(client, errors_dataset):
    assert listed_error_ids(client, {"search": "a"}) == []


def test_search_and_filters_combine(client, errors_dataset):
    assert listed_error_ids(client, {"search": "Duplicate", "flt0_4": "open"}) == [700001, 700007]


def test_a_long_term_must_match_whole_not_only_its_start(client, errors_dataset):
    assert listed_error_ids(client, {"search": '"Duplicate record: a lead with"'}) == [700001]
    assert listed_error_ids(client, {"search": '"Duplicate record: a contact"'}) == []


# -- bounds: found by an outside probe (minutes of PostgreSQL, a 500 on SQLite) ------------

#: 60,000 random letters and digits, as the probe sent.
HUGE_SEARCH = ("k3Xq9ZpL2mW7" * 5000)[:60_000]


def test_a_huge_search_is_refused_within_a_second_with_a_clear_message(client, errors_dataset, sql_statements):
    assert client.get(ERRORS_URL).status_code == 200  # templates compiled: what is timed is the search
    started = time.monotonic()
    response = client.get(ERRORS_URL, query_string={"search": HUGE_SEARCH})
    elapsed = time.monotonic() - started

    assert response.status_code == 400
    assert "The search is too long: 60,000 characters, at most 200 are allowed." in page_text(response.text)
    assert elapsed < 1
    assert [s for s in sql_statements if "LIKE" in s.upper()] == []


TOO_LONG = {
    "en": "The search is too long: 60,000 characters, at most 200 are allowed.",
    "it": "La ricerca è troppo lunga: 60.000 caratteri, al massimo 200 sono consentiti.",
    "pt_BR": "A pesquisa é longa demais: 60.000 caracteres, no máximo 200 são permitidos.",
    "de": "Die Suche ist zu lang: 60.000 Zeichen, höchstens 200 sind erlaubt.",
    "es": "La búsqueda es demasiado larga: 60.000 caracteres, se permiten como máximo 200.",
    "fr": "La recherche est trop longue : 60 000 caractères, 200 au plus sont autorisés.",
}


@pytest.mark.parametrize("locale", UI_LOCALES)
def test_a_huge_search_is_refused_in_the_viewers_language(make_babel_app, locale):
    client = make_babel_app().test_client()

    response = client.get(ERRORS_URL, query_string={"search": HUGE_SEARCH}, headers={"Accept-Language": locale})

    assert TOO_LONG[locale] in page_text(response.text)


def test_a_huge_search_lists_nothing(client, errors_dataset):
    response = client.get(ERRORS_URL, query_string={"search": HUGE_SEARCH})

    assert "/details/?id=" not in response.text


@pytest.mark.parametrize("export_format", ["csv", "xlsx", "json"])
def test_a_huge_search_is_refused_by_every_export(client, errors_dataset, sql_statements, export_format):
    response = client.get(ERRORS_URL + f"export/{export_format}/", query_string={"search": HUGE_SEARCH})

    assert response.status_code == 400
    assert "The search is too long: 60,000 characters, at most 200 are allowed." in page_text(response.text)
    assert [s for s in sql_statements if "LIKE" in s.upper()] == []


def test_a_search_of_too_many_terms_shows_the_limit_on_the_list(client, errors_dataset):
    response = client.get(ERRORS_URL, query_string={"search": "Duplicate " * 9})

    assert response.status_code == 400
    assert "The search has too many terms: 9, at most 8 are allowed." in page_text(response.text)


#: Rows the query-plan test loads: enough for PostgreSQL to prefer an index to a scan.
PLANNED_ROWS = 10_000


@pytest.fixture
def planned_errors(empty_db_url, make_app):
    """A PostgreSQL app over :data:`PLANNED_ROWS` errors with fresh statistics (its database dropped last)."""
    app = make_app(empty_db_url)
    with app.app_context():
        engine = app.extensions["test_db"].engine
        metadata.create_all(engine)
        [search_index] = [ix for ix in SyncError.__table__.indexes if ix.name == "ix_dynamics_sync_error_search"]
        with engine.begin() as conn:
            search_index.drop(conn)  # built once after the rows: much faster than row by row
            conn.execute(sa.text(
                "INSERT INTO dynamics_sync_error (object_type, record_id, record_label, operation, direction,"
                " error_code, error_message, occurred_at, attempt, state)"
                " SELECT 'Lead', 'L-' || g, 'Label ' || md5(g::text), 'insert', 'to_dynamics',"
                " '0x8004' || mod(g, 97), 'Duplicate record ' || md5((g * 7)::text),"
                " timestamp '2026-03-10 14:00' - make_interval(secs => g), 1, 'open'"
                " FROM generate_series(1, :rows) AS g"
            ), {"rows": PLANNED_ROWS})
            search_index.create(conn)
            conn.execute(sa.text("ANALYZE dynamics_sync_error"))
        yield app


#: Selective searches: a short term, a phrase, the longest search, the most terms (one selective).
PLANNED_SEARCHES = ["L-1234", '"record 1f0e"', "x" * MAX_SEARCH_LENGTH, "L-1234 " + "Duplicate " * (MAX_TERMS - 1)]


@pytest.mark.parametrize("empty_db_url", ["postgresql"], indirect=True)
def test_on_postgresql_list_searches_are_planned_on_the_trigram_index(planned_errors):
    engine = planned_errors.extensions["test_db"].engine
    client = planned_errors.test_client()
    searches: list[tuple[str, object]] = []

    def listener(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ANN202
        if "ILIKE" in statement:
            searches.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        assert [client.get(ERRORS_URL, query_string={"search": s}).status_code for s in PLANNED_SEARCHES] == [200] * 4
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    with engine.connect() as conn:
        plans = ["\n".join(conn.exec_driver_sql("EXPLAIN " + s, p).scalars()) for s, p in searches]

    assert len(plans) == len(PLANNED_SEARCHES)
    assert [plan for plan in plans if "ix_dynamics_sync_error_search" not in plan or "Seq Scan" in plan] == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_on_postgresql_a_trigram_index_answers_the_search(db):
    query = sa.select(SyncError.id).where(search_condition('0x8004 "quota is" 100%'))
    with db.engine.connect() as conn, conn.begin() as transaction:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.execute(sa.text("EXPLAIN " + str(query.compile(conn, compile_kwargs={"literal_binds": True}))))
                         .scalars())
        transaction.rollback()
    assert "ix_dynamics_sync_error_search" in plan
