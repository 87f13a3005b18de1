"""Random query strings on every page of the plugin: never a server error, never a traceback.

Hypothesis builds query strings from the arguments the views read (search,
filters ``flt<position>_<index>``, sort, desc, page, page size, view selector,
details ids, return addresses) and from arbitrary ones, with values of every
kind: unicode, NUL bytes, bytes that are no UTF-8, huge and negative numbers,
very long text. Misuse gets a clear 4xx answer or is ignored; the page then
still works.
"""

from __future__ import annotations

import re
import typing as t
from urllib.parse import quote
from urllib.parse import quote_from_bytes
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from .conftest import ERRORS_URL
from .conftest import fuzz

STATUS_URL = "/admin/dynamics/status/"
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
FUZZ = fuzz(50)

# -- values --------------------------------------------------------------------------------

#: Numbers, often at the edges of what a database column or an OFFSET takes.
numbers = st.one_of(
    st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 10**30, 700001]),
    st.integers(min_value=-1000, max_value=1000),
    st.integers(min_value=2**62, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-(2**62)),
).map(str)
dates = st.sampled_from([
    "2026-03-10", "2026-03-10T14:05", "2026-03-10T14:05:30+05:30", "2026-02-30", "0000-00-00", "9999-12-31T23:59",
    "10000-01-01", "-1", "2026-03-10T25:00", "now", "",
])
texts = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
    st.sampled_from(["%", "_", "\\", "'", '"', "<script>alert(1)</script>", "' OR 1=1 --", "\x00", "é", "😀",
                     "0x80040237", "Lead", "insert", "to_dynamics", "open", "last_hour", "../../etc/passwd"]),
    st.text(min_size=3000, max_size=5000),
)
#: Raw, already percent-encoded values: any bytes at all, UTF-8 or not.
raw_values = st.one_of(
    texts.map(lambda value: quote(value, safe="")),
    numbers,
    dates.map(lambda value: quote(value, safe="")),
    st.binary(max_size=24).map(lambda value: quote_from_bytes(value, safe="")),
    st.sampled_from(["%00", "%FF%FE", "%C0%AF", "%E2%80%AE", "%25", "%ZZ", "%", "+", "%2B"]),
)

# -- arguments -----------------------------------------------------------------------------

filter_args = st.builds(
    lambda position, index: f"flt{position}_{index}",
    st.one_of(st.integers(-2, 12), st.sampled_from(["", "x", "99999999999999999999"])).map(str),
    st.one_of(st.integers(-2, 12), st.sampled_from(["", "x", "0_0"])).map(str),
)
known_args = st.sampled_from(["search", "sort", "desc", "page", "page_size", "view", "id", "url", "export_type"])
any_args = st.one_of(known_args, known_args, filter_args, filter_args, st.text(min_size=1, max_size=12))
query_strings = st.lists(st.tuples(any_args, raw_values), max_size=8).map(
    lambda pairs: "&".join(f"{quote(name, safe='')}={value}" for name, value in pairs)
)
object_types = st.one_of(
    st.sampled_from(["Lead", "Contact", "Account", "Opportunity", "lead", "Nope"]),
    st.text(min_size=1, max_size=40).map(lambda value: quote(value, safe="")),
)
export_types = st.one_of(st.sampled_from(["csv", "xlsx", "json", "CSV", "pdf", "xls"]),
                         st.text(min_size=1, max_size=10).map(lambda value: quote(value, safe="")))


def status_paths() -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(STATUS_URL),
        st.just(STATUS_URL + "json"),
        st.just(STATUS_URL + "metrics"),
        object_types.map(lambda name: f"{STATUS_URL}details/{name}"),
    )


def errors_paths() -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(ERRORS_URL),
        st.just(ERRORS_URL + "details/"),
        export_types.map(lambda name: f"{ERRORS_URL}export/{name}/"),
    )


# -- checks --------------------------------------------------------------------------------

def check(client: t.Any, path: str, query: str) -> None:
    """The answer to ``path?query``: no server error, no traceback, and a message with every refusal."""
    response = client.get(f"{path}?{query}" if query else path)
    body = response.get_data().decode("utf-8", "replace")  # an XLSX export is binary

    assert response.status_code < 500, (path, query, response.status_code)
    assert not TRACEBACK.search(body), (path, query)
    if response.status_code >= 400:
        assert body.strip(), (path, query, response.status_code)
    if response.status_code in (301, 302, 303, 307, 308):  # e.g. werkzeug merging the slashes of "details//0"
        location = urlsplit(response.headers["Location"])
        assert location.netloc in ("", "localhost") and location.path.startswith("/"), (path, query, location)


@FUZZ
@given(path=status_paths(), query=query_strings)
def test_random_query_strings_on_the_status_pages(client, status_dataset, path, query):
    check(client, path, query)


@FUZZ
@given(path=errors_paths(), query=query_strings)
def test_random_query_strings_on_the_errors_pages(client, errors_dataset, path, query):
    check(client, path, query)


@FUZZ
@given(query=query_strings)
def test_random_query_strings_on_the_errors_details(client, errors_dataset, query):
    check(client, ERRORS_URL + "details/", "id=700002&" + query)


any_value = st.one_of(texts, numbers, dates)


def mostly(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``valid`` three times in four, anything the other time (``one_of`` would weigh by branch count)."""
    return st.integers(0, 3).flatmap(lambda n: any_value if n == 0 else valid)


action_forms = st.fixed_dictionaries(
    {
        "action": mostly(st.sampled_from(["retry", "ignore", "resolve"])),
        "scope": mostly(st.sampled_from(["all", "selected"])),
    },
    optional={
        "up_to_id": mostly(numbers),
        "confirmed": st.sampled_from(["1", "0", ""]),
        "url": any_value,
        "search": any_value,
    },
)
extra_fields = st.lists(st.tuples(st.one_of(st.just("rowid"), filter_args, st.text(min_size=1, max_size=8)), any_value),
                        max_size=6)


@FUZZ
@given(form=action_forms, extra=extra_fields)
def test_random_action_forms_with_a_valid_token(client, errors_dataset, form, extra):
    html = client.get(ERRORS_URL).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    data = MultiDict([("csrf_token", token), *form.items(), *extra])

    response = client.post(ERRORS_URL + "action/", data=data)

    assert response.status_code in (200, 302, 400), response.status_code
    assert not TRACEBACK.search(response.get_data(as_text=True))


# -- misuse gets a clear answer --------------------------------------------------------------


@pytest.mark.parametrize(("query", "shown"), [
    ("flt5_5=yesterday", "yesterday"),
    ("flt6_6=2026-02-30", "2026-02-30"),
    ("flt1_1=delete", "delete"),
])
def test_an_invalid_filter_value_is_named_on_the_page(client, errors_dataset, query, shown):
    response = client.get(f"{ERRORS_URL}?{query}")

    assert response.status_code == 200
    assert shown in response.get_data(as_text=True)


@pytest.mark.parametrize("page", ["-1", "-99999999999999999999", "99999999999999999999", "x"])
def test_an_impossible_page_number_shows_a_page_not_an_error(client, errors_dataset, page):
    assert client.get(ERRORS_URL, query_string={"page": page}).status_code == 200


def test_an_unknown_export_format_is_a_404_that_says_so(client, errors_dataset):
    response = client.get(ERRORS_URL + "export/pdf/")

    assert (response.status_code, "Unknown export format." in response.get_data(as_text=True)) == (404, True)


@pytest.mark.parametrize("name", ["%3Cscript%3E", "Nope", "%00", "Lead%00", "%ED%A0%80"])
def test_an_unknown_object_is_a_404_inside_the_console(client, status_dataset, name):
    # %00 answered 500 on PostgreSQL (text cannot hold NUL) before it was checked ahead of any query.
    response = client.get(STATUS_URL + "details/" + name)

    text = response.get_data(as_text=True)
    assert (response.status_code, "ds-not-found" in text, "Microsoft Dynamics" in text) == (404, True, True)
    assert "is synced with Microsoft Dynamics." in text


def test_a_details_page_without_an_id_goes_back_to_the_list(client, errors_dataset):
    response = client.get(ERRORS_URL + "details/")

    assert (response.status_code, response.headers.get("Location")) == (302, ERRORS_URL)


@pytest.mark.parametrize("error_id", ["", "abc", "-1", "1", "99999999999999999999", "%00"])
def test_an_unknown_error_id_is_a_404_inside_the_console(client, errors_dataset, error_id):
    response = client.get(ERRORS_URL + "details/?id=" + error_id)

    text = response.get_data(as_text=True)
    assert (response.status_code, "ds-not-found" in text, "Microsoft Dynamics" in text) == (404, True, True)
    assert "There is no sync error with the ID" in text


def test_a_nul_byte_in_the_search_finds_what_the_recorder_stored(client, sync, db):
    sync.enqueue("Lead", "L-1", "insert")
    db.session.commit()
    [record] = sync.claim()
    sync.mark_failed(record, "0x80040237", "Duplicate\x00record")  # stored with U+FFFD for the NUL

    found = client.get(ERRORS_URL + "?search=Duplicate%00record").get_data(as_text=True)
    filtered = client.get(ERRORS_URL + "?flt3_3=0x8004%00").get_data(as_text=True)

    assert "Duplicate\ufffdrecord" in found
    assert "No sync errors match." in filtered
