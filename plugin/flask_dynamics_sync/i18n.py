"""Translations and locale-aware formatting, with or without Flask-Babel.

The plugin has its own gettext domain, ``dynamics_sync``, shipped in
``translations/<locale>/LC_MESSAGES/dynamics_sync.mo``. When the host has
initialised Flask-Babel, the locale and time zone come from the host's
selectors; when it has not (or flask-babel is not installed at all, or is
installed but ``Babel(app)`` was never called) pages are English and times
are shown in ``DYNAMICS_SYNC_TIMEZONE``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import functools
import os
import re
import threading
import typing as t
import zoneinfo

from babel import Locale
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from babel import support
from flask import current_app
from flask import g
from flask import has_app_context
from flask import has_request_context

from .state import EXTENSION_KEY

DOMAIN = "dynamics_sync"
TRANSLATIONS_DIR = os.path.join(os.path.dirname(__file__), "translations")
DEFAULT_LOCALE = Locale("en")

try:  # pragma: no cover - exercised by the "without Flask-Babel" tests through monkeypatching
    import flask_babel
except ImportError:  # pragma: no cover
    flask_babel = None  # type: ignore[assignment]


def babel_active() -> bool:
    """True when Flask-Babel is installed *and* initialised on the current app."""
    return flask_babel is not None and has_app_context() and "babel" in current_app.extensions


def translation_directories() -> list[str]:
    """The host's extra catalog folders (``DYNAMICS_SYNC_TRANSLATION_DIRECTORIES``) first, then ours.

    A folder holds ``<locale>/LC_MESSAGES/dynamics_sync.mo``; relative paths are
    relative to the app's ``root_path``. The first folder with a translation of
    a message wins, so a host can add a language or reword single messages.
    """
    extra: t.Sequence[str] = ()
    if has_app_context():
        state = current_app.extensions.get(EXTENSION_KEY)
        extra = state.settings.translation_directories if state is not None else ()
        extra = [os.path.join(current_app.root_path, directory) for directory in extra]
    return [*extra, TRANSLATIONS_DIR]


_catalogs: dict[tuple[tuple[str, ...], str], support.NullTranslations] = {}


def catalog_locales(locale: Locale, directories: t.Sequence[str]) -> list[str]:
    """The catalogs that may serve ``locale``, best first: its own, its language's, then a regional one.

    ``de_AT`` is served by ``de``, and ``pt`` or ``pt_PT`` by ``pt_BR`` when no
    catalog of their own exists: the same language rather than English.
    """
    regional = sorted(
        {
            name
            for directory in directories
            if os.path.isdir(directory)
            for name in os.listdir(directory)
            if name.split("_", 1)[0] == locale.language and "_" in name
        }
    )
    return list(dict.fromkeys([str(locale), locale.language, *regional]))


def _load(locale: Locale) -> support.NullTranslations:
    directories = tuple(translation_directories())
    key = (directories, str(locale))
    catalog = _catalogs.get(key)
    if catalog is None:
        merged: support.Translations | None = None
        candidates = catalog_locales(locale, directories)
        # Lowest priority first: merge() lets later catalogs win, and the first
        # one found supplies the plural rule (an empty Translations would use English's).
        for directory in reversed(directories):
            found = support.Translations.load(directory, candidates, DOMAIN)
            if isinstance(found, support.Translations):
                merged = found if merged is None else merged.merge(found)
        catalog = merged if merged is not None else support.NullTranslations()
        _catalogs[key] = catalog
    return catalog


_forced_locale: contextvars.ContextVar[Locale | None] = contextvars.ContextVar("dynamics_sync_locale", default=None)


@contextlib.contextmanager
def force_locale(locale: str | Locale | None) -> t.Iterator[None]:
    """Translate and format in ``locale`` inside the block, whatever the viewer's.

    For text made outside a request (e-mails, CLI) in a configured language;
    ``None`` leaves the locale to the request. Needs no Flask-Babel.
    """
    token = _forced_locale.set(Locale.parse(locale) if isinstance(locale, str) else locale)
    try:
        yield
    finally:
        _forced_locale.reset(token)


def get_locale() -> Locale:
    """The viewer's locale: a :func:`force_locale` block's, the host's Flask-Babel selector's, or English."""
    forced = _forced_locale.get()
    if forced is not None:
        return forced
    if babel_active() and has_request_context():
        locale = flask_babel.get_locale()
        if locale is not None:
            return locale
    return DEFAULT_LOCALE


def get_timezone() -> dt.tzinfo:
    """The viewer's time zone: the host's Flask-Babel selector, else ``DYNAMICS_SYNC_TIMEZONE``."""
    if babel_active() and has_request_context():
        babel_config = flask_babel.get_babel()
        if babel_config.timezone_selector is not None:
            tz = flask_babel.get_timezone()
            if tz is not None:
                return tz
    name = "UTC"
    if has_app_context():
        name = current_app.config.get("DYNAMICS_SYNC_TIMEZONE", "UTC")
    return zoneinfo.ZoneInfo(name)


def get_translations() -> support.NullTranslations:
    """The plugin's catalog for the viewer's locale (cached per request)."""
    if not has_app_context():
        return support.NullTranslations()
    locale = get_locale()
    if has_request_context():
        cached = getattr(g, "_dynamics_sync_translations", None)
        if cached is not None and cached[0] == str(locale):
            return cached[1]
    catalog = _load(locale)
    if has_request_context():
        g._dynamics_sync_translations = (str(locale), catalog)
    return catalog


def gettext(string: str, **variables: t.Any) -> str:
    """Translate ``string`` in the plugin's domain, then ``%``-format it with ``variables``."""
    translated = get_translations().ugettext(string)
    return translated % variables if variables else translated


def ngettext(singular: str, plural: str, num: int, **variables: t.Any) -> str:
    """Plural-aware :func:`gettext`; ``num`` is available as ``%(num)s``."""
    variables.setdefault("num", num)
    return get_translations().ungettext(singular, plural, num) % variables


def lazy_gettext(string: str, **variables: t.Any) -> support.LazyProxy:
    """A string translated when it is rendered (menu names, class attributes)."""
    return support.LazyProxy(gettext, string, enable_cache=False, **variables)


_ = gettext


def to_local(value: dt.datetime) -> dt.datetime:
    """A naive UTC timestamp from the database, in the viewer's time zone."""
    return _as_zone(value, get_timezone())


def format_datetime(value: dt.datetime | None, format: str = "medium") -> str:
    """A UTC timestamp formatted for the viewer's locale and time zone."""
    return viewer_formats().datetime(value, format)


def format_time(value: dt.datetime, format: str = "short") -> str:
    """The time of day of a UTC timestamp, for the viewer's locale and time zone."""
    return viewer_formats().time(value, format)


def format_number(value: int | float) -> str:
    """A number with the locale's grouping (``12,345`` / ``12.345``)."""
    return viewer_formats().number(value)


def format_duration(seconds: float) -> str:
    """A rough, localised duration such as ``3 hours``."""
    return babel_dates.format_timedelta(
        dt.timedelta(seconds=seconds), threshold=1.0, locale=get_locale()
    )


def format_relative(value: dt.datetime, now: dt.datetime) -> str:
    """How long ago (or from now) a UTC timestamp is: ``4 minutes ago``, ``vor 4 Minuten``."""
    return babel_dates.format_timedelta(value - now, threshold=1.0, add_direction=True, locale=get_locale())


def format_hour_range(start: dt.datetime) -> str:
    """The hour starting at ``start`` (UTC), as the viewer reads it.

    In the locale's own clock: ``1:00 – 2:00 PM`` (en), ``13:00–14:00 Uhr`` (de),
    ``13:00 – 14:00`` (fr). Minutes are always shown, since in zones such as
    Asia/Kolkata an hour bucket runs from half past to half past.
    """
    return viewer_formats().hour_range(start)


@dataclasses.dataclass(frozen=True)
class Formats:
    """The ``format_*`` helpers bound to one locale and time zone.

    :func:`viewer_formats` looks the viewer's up once: a page that formats
    hundreds of values (the status charts) saves the lookups, and formatted
    dates are cached, since each refresh labels the same hours again.
    """

    locale: Locale
    tz: dt.tzinfo

    def to_local(self, value: dt.datetime) -> dt.datetime:
        """A naive UTC timestamp in this time zone."""
        return _as_zone(value, self.tz)

    def datetime(self, value: dt.datetime | None, format: str = "medium") -> str:
        """See :func:`format_datetime`."""
        return "" if value is None else _format_datetime(value, format, self.locale, self.tz)

    def time(self, value: dt.datetime, format: str = "short") -> str:
        """See :func:`format_time`."""
        return _format_time(value, format, self.locale, self.tz)

    def hour_range(self, start: dt.datetime) -> str:
        """See :func:`format_hour_range`."""
        return _format_hour_range(start, self.locale, self.tz)

    @functools.cached_property
    def _group(self) -> str | None:
        return _plain_group_symbol(self.locale)

    def number(self, value: int | float) -> str:
        """See :func:`format_number`."""
        group = self._group
        if group is not None and type(value) is int and value >= 0:
            return f"{value:,}".replace(",", group)
        return babel_numbers.format_decimal(value, locale=self.locale)


def viewer_formats() -> Formats:
    """Formatting in the viewer's locale and time zone, looked up now."""
    return Formats(get_locale(), get_timezone())


def _as_zone(value: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(tz)


# Formatting a date is pure (value, pattern, locale, zone) but costs Babel tens of microseconds.
@functools.lru_cache(maxsize=4096)
def _format_datetime(value: dt.datetime, format: str, locale: Locale, tz: dt.tzinfo) -> str:
    return babel_dates.format_datetime(_as_zone(value, tz), format=format, locale=locale)


@functools.lru_cache(maxsize=1024)
def _format_time(value: dt.datetime, format: str, locale: Locale, tz: dt.tzinfo) -> str:
    return babel_dates.format_time(_as_zone(value, tz), format=format, locale=locale)


@functools.lru_cache(maxsize=1024)
def _format_hour_range(start: dt.datetime, locale: Locale, tz: dt.tzinfo) -> str:
    local_start = _as_zone(start, tz)
    local_end = _as_zone(start + dt.timedelta(hours=1), tz)
    return babel_dates.format_interval(
        local_start, local_end, skeleton=_hour_minute_skeleton(locale), tzinfo=local_start.tzinfo, locale=locale
    )


@functools.lru_cache(maxsize=64)
def _plain_group_symbol(locale: Locale) -> str | None:
    """The locale's group separator if Babel groups whole numbers by threes (``1.234.567``), else ``None``.

    Then a non-negative integer is formatted by Python's own grouping, Babel's
    result without its cost; other locales (``12,34,567`` in hi_IN) and other
    values go through Babel.
    """
    group = babel_numbers.get_group_symbol(locale)
    probes = (0, 7, 1234, 12345, 123456, 1234567, 1234567890)
    if all(babel_numbers.format_decimal(n, locale=locale) == f"{n:,}".replace(",", group) for n in probes):
        return group
    return None


def _hour_minute_skeleton(locale: Locale) -> str:
    """``hm`` where the locale's clock is 12-hour (en, es_MX), else ``Hm``.

    Babel resolves the CLDR ``j`` (preferred hour) symbol only in date-time
    skeletons, not in intervals, so the locale's short time pattern decides.
    """
    fields = re.sub(r"'[^']*'", "", locale.time_formats["short"].pattern)  # drop quoted literals ('h' in fr_CA)
    return "hm" if "h" in fields or "K" in fields else "Hm"


def install_babel_fallback(app: t.Any) -> None:
    """Keep Flask-Admin pages working when flask-babel is installed but never initialised.

    Flask-Admin translates through Flask-Babel whenever it is importable, and
    fails with ``KeyError: 'babel'`` if the host never called ``Babel(app)``.
    At the first request, if the host still has not, a default (English, UTC)
    Babel is set up; a host that initialises Babel itself is left alone.
    """
    if flask_babel is None:
        return

    checked = False
    lock = threading.Lock()

    def ensure_babel() -> None:
        nonlocal checked
        if checked:
            return
        with lock:  # threaded servers: every first request waits until Babel is there
            if "babel" not in app.extensions:
                app.logger.info("Flask-Dynamics-Sync: flask-babel is installed but not initialised; using English.")
                flask_babel.Babel(app)
            checked = True

    app.before_request_funcs.setdefault(None, []).insert(0, ensure_babel)
