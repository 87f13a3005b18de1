"""Sync Errors filters: object, operation, direction, error code, state, time range.

The filter bar submits every input; ``flt<i>_<i>`` is the i-th filter, empty means "any".
"""

from __future__ import annotations

import re

import pytest

from .conftest import ERRORS_URL
from .conftest import listed_error_ids
from .conftest import load_errors_dataset

OBJECT, OPERATION, DIRECTION, ERROR_CODE, STATE, FROM, UNTIL = (f"flt{i}_{i}" for i in range(7))


def test_object_filter(client, errors_dataset):
    assert listed_error_ids(client, {OBJECT: "Lead"}) == [700001, 700003, 700005, 700007]


def test_operation_filter(client, errors_dataset):
    assert listed_error_ids(client, {OPERATION: "update"}) == [700002, 700003, 700005, 700008]


def test_direction_filter(client, errors_dataset):
    assert listed_error_ids(client, {DIRECTION: "from_dynamics"}) == [700003]


def test_error_code_filter(client, errors_dataset):
    assert listed_error_ids(client, {ERROR_CODE: "0x80040237"}) == [700001, 700004, 700007]


def test_state_filter(client, errors_dataset):
    assert listed_error_ids(client, {STATE: "open"}) == [700001, 700002, 700003, 700007, 700008]


def test_from_is_inclusive(client, errors_dataset):
    assert listed_error_ids(client, {FROM: "2026-03-10T12:00"}) == [700001, 700002, 700003, 700004, 700005]


def test_until_is_exclusive(client, errors_dataset):
    assert listed_error_ids(client, {UNTIL: "2026-03-10T12:00"}) == [700006, 700007, 700008]


def test_time_range(client, errors_dataset):
    assert listed_error_ids(client, {FROM: "2026-03-10 11:30:00", UNTIL: "2026-03-10T13:50:00"}) == [
        700004, 700005, 700006,
    ]


def test_filters_combine(client, errors_dataset):
    assert listed_error_ids(client, {OBJECT: "Lead", OPERATION: "insert", STATE: "open"}) == [700001, 700007]


def test_empty_filter_values_select_everything(client, errors_dataset):
    empty = {name: "" for name in (OBJECT, OPERATION, DIRECTION, ERROR_CODE, STATE, FROM, UNTIL)}
    assert listed_error_ids(client, empty) == [row["id"] for row in errors_dataset]


def test_times_are_read_in_the_viewers_time_zone(make_app, db_url):
    app = make_app(db_url, config={"DYNAMICS_SYNC_TIMEZONE": "Europe/Rome"})  # UTC+1 in March
    with app.app_context():
        load_errors_dataset(app.extensions["test_db"])
    # 13:00 in Rome is 12:00 UTC.
    assert listed_error_ids(app.test_client(), {FROM: "2026-03-10T13:00"}) == [700001, 700002, 700003, 700004, 700005]


def test_a_time_with_an_offset_is_taken_as_written(client, errors_dataset):
    assert listed_error_ids(client, {UNTIL: "2026-03-10T13:00+01:00"}) == [700006, 700007, 700008]


def test_an_invalid_time_is_ignored_with_a_warning(client, errors_dataset):
    response = client.get(ERRORS_URL, query_string={FROM: "yesterday", "state": "all"})

    html = response.get_data(as_text=True)
    assert re.findall(r"/details/\?id=(\d+)", html) == [str(row["id"]) for row in errors_dataset]
    assert "Ignored filter values that are not valid: yesterday" in html


def test_the_filter_bar_shows_the_active_values(client, errors_dataset):
    html = client.get(ERRORS_URL, query_string={OBJECT: "Contact", FROM: "2026-03-10 12:00:00"}).get_data(as_text=True)

    assert '<option value="Contact" selected>Contact</option>' in html
    assert f'name="{FROM}" class="form-control form-control-sm" type="datetime-local" step="1" value="2026-03-10T12:00"' in html


@pytest.mark.parametrize(
    ("arg", "choices"),
    [
        (OBJECT, ["Lead", "Contact", "Account", "Opportunity"]),
        (OPERATION, ["insert", "update"]),
        (DIRECTION, ["to_dynamics", "from_dynamics"]),
    ],
)
def test_choice_filters_offer_every_value(client, arg, choices):
    html = client.get(ERRORS_URL).get_data(as_text=True)

    select = re.search(rf'<select id="ds-{arg}" name="{arg}".*?</select>', html, re.S).group(0)
    assert re.findall(r'<option value="([^"]*)"', select) == ["", *choices]


@pytest.mark.parametrize(
    ("zone", "value"), [("Europe/Rome", "0001-01-01T00:00"), ("America/New_York", "9999-12-31T23:59")]
)
def test_a_time_outside_the_utc_calendar_is_ignored_with_a_warning(make_app, db_url, zone, value):
    # In the viewer's zone the time exists, in UTC it would fall before year 1 or after year 9999.
    app = make_app(db_url, config={"DYNAMICS_SYNC_TIMEZONE": zone})
    with app.app_context():
        dataset = load_errors_dataset(app.extensions["test_db"])
    response = app.test_client().get(ERRORS_URL, query_string={FROM: value, "state": "all"})

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert re.findall(r"/details/\?id=(\d+)", html) == [str(row["id"]) for row in dataset]
    assert f"Ignored filter values that are not valid: {value}" in html


def test_times_are_read_in_the_zone_of_the_hosts_flask_babel_selector(make_babel_app):
    # Flask-Babel's zones are pytz zones: 13:00 in Rome is 12:00 UTC, not 12:10 (Rome's local mean time).
    app = make_babel_app(timezone_selector=lambda: "Europe/Rome")
    with app.app_context():
        load_errors_dataset(app.extensions["test_db"])
    assert listed_error_ids(app.test_client(), {FROM: "2026-03-10T13:00"}) == [700001, 700002, 700003, 700004, 700005]


def test_a_time_outside_the_utc_calendar_in_the_hosts_flask_babel_zone_is_ignored(make_babel_app):
    app = make_babel_app(timezone_selector=lambda: "Europe/Rome")
    with app.app_context():
        load_errors_dataset(app.extensions["test_db"])
    response = app.test_client().get(ERRORS_URL, query_string={FROM: "0001-01-01T00:00"})

    assert response.status_code == 200
    assert "Ignored filter values that are not valid: 0001-01-01T00:00" in response.get_data(as_text=True)


def test_a_utc_time_before_year_1_in_the_viewers_zone_keeps_the_filter_bar(make_app, db_url):
    # Valid in UTC, but the filter bar cannot show it in New York (it would be year 0 there).
    app = make_app(db_url, config={"DYNAMICS_SYNC_TIMEZONE": "America/New_York"})
    with app.app_context():
        dataset = load_errors_dataset(app.extensions["test_db"])
    response = app.test_client().get(ERRORS_URL, query_string={FROM: "0001-01-01T00:00Z", "state": "all"})

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert re.findall(r"/details/\?id=(\d+)", html) == [str(row["id"]) for row in dataset]
    assert f'name="{FROM}" class="form-control form-control-sm" type="datetime-local" step="1" value="0001-01-01T00:00Z"' in html
