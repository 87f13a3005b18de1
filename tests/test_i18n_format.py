"""Numbers, dates and hours follow the viewer's locale and the configured time zone."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable

import pytest
from flask import Flask

from flask_dynamics_sync import i18n

#: 13:00-14:00 UTC on the tests' day (a Tuesday; New York is already on summer time).
HOUR = dt.datetime(2026, 3, 10, 13, 0)
MOMENT = dt.datetime(2026, 3, 10, 14, 20)

HOUR_RANGES = {
    "UTC": {
        "en": "1:00\u2009–\u20092:00\u202fPM",
        "it": "13:00–14:00",
        "pt_BR": "13:00\u2009–\u200914:00",
        "de": "13:00–14:00 Uhr",
        "es": "13:00–14:00",
        "fr": "13:00\u2009–\u200914:00",
    },
    "Europe/Berlin": {
        "en": "2:00\u2009–\u20093:00\u202fPM",
        "it": "14:00–15:00",
        "pt_BR": "14:00\u2009–\u200915:00",
        "de": "14:00–15:00 Uhr",
        "es": "14:00–15:00",
        "fr": "14:00\u2009–\u200915:00",
    },
    # Half-hour offset: the UTC hour bucket runs from half past to half past.
    "Asia/Kolkata": {
        "en": "6:30\u2009–\u20097:30\u202fPM",
        "it": "18:30–19:30",
        "pt_BR": "18:30\u2009–\u200919:30",
        "de": "18:30–19:30 Uhr",
        "es": "18:30–19:30",
        "fr": "18:30\u2009–\u200919:30",
    },
    "America/New_York": {
        "en": "9:00\u2009–\u200910:00\u202fAM",
        "it": "09:00–10:00",
        "pt_BR": "09:00\u2009–\u200910:00",
        "de": "09:00–10:00 Uhr",
        "es": "9:00–10:00",
        "fr": "09:00\u2009–\u200910:00",
    },
}

NUMBERS = {
    "en": ("1,234,567", "12,345.5"),
    "it": ("1.234.567", "12.345,5"),
    "pt_BR": ("1.234.567", "12.345,5"),
    "de": ("1.234.567", "12.345,5"),
    "es": ("1.234.567", "12.345,5"),
    "fr": ("1\u202f234\u202f567", "12\u202f345,5"),
}

DATETIMES = {
    "en": ("Mar 10, 2026, 2:20:00\u202fPM", "2:20\u202fPM"),
    "it": ("10 mar 2026, 14:20:00", "14:20"),
    "pt_BR": ("10 de mar. de 2026 14:20:00", "14:20"),
    "de": ("10.03.2026, 14:20:00", "14:20"),
    "es": ("10 mar 2026, 14:20:00", "14:20"),
    "fr": ("10 mars 2026, 14:20:00", "14:20"),
}


@pytest.mark.parametrize("zone", sorted(HOUR_RANGES))
@pytest.mark.parametrize("locale", list(NUMBERS))
def test_hour_range_is_written_in_the_locales_clock_and_the_configured_zone(
    make_babel_app: Callable[..., Flask], locale: str, zone: str
) -> None:
    app = make_babel_app(config={"DYNAMICS_SYNC_TIMEZONE": zone})
    with app.test_request_context(headers={"Accept-Language": locale}):
        assert i18n.format_hour_range(HOUR) == HOUR_RANGES[zone][locale]


def test_hour_range_follows_the_hosts_time_zone_selector(make_babel_app: Callable[..., Flask]) -> None:
    app = make_babel_app(config={"DYNAMICS_SYNC_TIMEZONE": "Asia/Kolkata"}, timezone_selector=lambda: "Europe/Berlin")
    with app.test_request_context(headers={"Accept-Language": "de"}):
        assert i18n.format_hour_range(HOUR) == "14:00–15:00 Uhr"


def test_hour_range_without_flask_babel_is_english_in_the_configured_zone(
    make_app: Callable[..., Flask], sqlite_url: str
) -> None:
    app = make_app(sqlite_url, config={"DYNAMICS_SYNC_TIMEZONE": "Europe/Berlin"})
    with app.test_request_context(headers={"Accept-Language": "de"}):
        assert i18n.format_hour_range(HOUR) == "2:00\u2009–\u20093:00\u202fPM"


@pytest.mark.parametrize("locale", list(NUMBERS))
def test_numbers_are_grouped_for_the_locale(babel_app: Flask, locale: str) -> None:
    with babel_app.test_request_context(headers={"Accept-Language": locale}):
        assert (i18n.format_number(1234567), i18n.format_number(12345.5)) == NUMBERS[locale]


@pytest.mark.parametrize("locale", list(DATETIMES))
def test_dates_and_times_are_written_for_the_locale(babel_app: Flask, locale: str) -> None:
    with babel_app.test_request_context(headers={"Accept-Language": locale}):
        assert (i18n.format_datetime(MOMENT), i18n.format_time(MOMENT)) == DATETIMES[locale]


def test_dates_are_shown_in_the_configured_zone(make_babel_app: Callable[..., Flask]) -> None:
    app = make_babel_app(config={"DYNAMICS_SYNC_TIMEZONE": "Europe/Rome"})
    with app.test_request_context(headers={"Accept-Language": "it"}):
        assert i18n.format_datetime(MOMENT) == "10 mar 2026, 15:20:00"
        assert i18n.to_local(MOMENT) == dt.datetime(2026, 3, 10, 15, 20, tzinfo=zoneinfo.ZoneInfo("Europe/Rome"))


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("en", "3 hours"), ("it", "3 ore"), ("pt_BR", "3 horas"), ("de", "3 Stunden"), ("es", "3 horas"), ("fr", "3\u00a0heures")],
)
def test_durations_are_written_for_the_locale(babel_app: Flask, locale: str, expected: str) -> None:
    with babel_app.test_request_context(headers={"Accept-Language": locale}):
        assert i18n.format_duration(3 * 3600) == expected
