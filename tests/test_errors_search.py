"""Sync Errors search: literal terms over record id, label, error code and message."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.search import MAX_TERMS
from flask_dynamics_sync.search import search_condition
from flask_dynamics_sync.search import escape_like
from flask_dynamics_sync.search import parse_terms

from .conftest import listed_error_ids


# -- parsing (no database) ----------------------------------------------------------


def test_terms_are_split_on_whitespace():
    assert parse_terms("  Ada   0x80040237 ") == ["Ada", "0x80040237"]


def test_a_quoted_phrase_is_one_term():
    assert parse_terms('"quota is" used') == ["quota is", "used"]


@pytest.mark.parametrize("search", [None, "", "   ", '""'])
def test_a_search_without_terms_selects_nothing_extra(search):
    assert parse_terms(search) == []


def test_terms_beyond_the_limit_are_ignored():
    assert parse_terms(" ".join(f"t{i}" for i in range(20))) == [f"t{i}" for i in range(MAX_TERMS)]


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


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_on_postgresql_a_trigram_index_answers_the_search(db):
    query = sa.select(SyncError.id).where(search_condition('0x8004 "quota is" 100%'))
    with db.engine.connect() as conn, conn.begin() as transaction:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.execute(sa.text("EXPLAIN " + str(query.compile(conn, compile_kwargs={"literal_binds": True}))))
                         .scalars())
        transaction.rollback()
    assert "ix_dynamics_sync_error_search" in plan
