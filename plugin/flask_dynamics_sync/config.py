"""Configuration: every ``DYNAMICS_SYNC_*`` key, its default, read once in ``init_app``.

Each key is documented in the README ("Configuration"). ``load_settings`` calls
``app.config.setdefault`` for every key, so ``app.config`` shows the values in
effect, and returns an immutable :class:`Settings` the plugin reads afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import typing as t
from collections.abc import Mapping

from .dataverse.settings import CONNECTOR_DEFAULTS
from .types import Direction

DEFAULT_OBJECTS: tuple[str, ...] = ("Lead", "Contact", "Account", "Opportunity")

#: Every config key with its default value.
DEFAULTS: dict[str, t.Any] = {
    # Synced object types, in display order: a list of names or a {name: label} mapping.
    "DYNAMICS_SYNC_OBJECTS": list(DEFAULT_OBJECTS),
    # Menu category the two views are placed in.
    "DYNAMICS_SYNC_MENU_CATEGORY": "Microsoft Dynamics",
    # URL segment under the Admin URL: /admin/<segment>/status and /admin/<segment>/errors.
    "DYNAMICS_SYNC_URL_SEGMENT": "dynamics",
    # URL path the plugin's static files are served from.
    "DYNAMICS_SYNC_STATIC_URL_PATH": "/static/dynamics_sync",
    # Time zone used to show times when the host has no Flask-Babel time zone selector.
    "DYNAMICS_SYNC_TIMEZONE": "UTC",
    # Extra folders of <locale>/LC_MESSAGES/dynamics_sync.mo catalogs (a list, or one string with ";"
    # between folders; relative to the app's root_path), searched before the plugin's own: a host adds
    # a language or rewords messages this way.
    "DYNAMICS_SYNC_TRANSLATION_DIRECTORIES": [],
    # Seconds a claimed record stays with its worker before it returns to the queue.
    "DYNAMICS_SYNC_CLAIM_TIMEOUT": 300,
    # Failed attempts after which a record retried by mark_failed(retry=True) is parked.
    "DYNAMICS_SYNC_MAX_ATTEMPTS": 10,
    # Seconds before the first retry; doubles with each attempt, capped at one hour.
    "DYNAMICS_SYNC_RETRY_BACKOFF": 30,
    # Direction used by enqueue() when none is given.
    "DYNAMICS_SYNC_DEFAULT_DIRECTION": Direction.TO_DYNAMICS.value,
    # Start the APScheduler jobs (rollup, retention, notifications) in this process.
    "DYNAMICS_SYNC_SCHEDULER": False,
    # Hours before the current one that every rollup run recomputes (late events).
    "DYNAMICS_SYNC_ROLLUP_WINDOW_HOURS": 3,
    # Minutes between refreshes of the current (partial) hour.
    "DYNAMICS_SYNC_ROLLUP_REFRESH_MINUTES": 5,
    # Raw sync events older than this many days are deleted (after they are rolled up).
    "DYNAMICS_SYNC_EVENT_RETENTION_DAYS": 14,
    # Resolved and ignored errors older than this many days are deleted.
    "DYNAMICS_SYNC_ERROR_RETENTION_DAYS": 90,
    # Rows deleted per batch by retention pruning.
    "DYNAMICS_SYNC_PRUNE_BATCH_SIZE": 5000,
    # SQLite: seconds a job lease row lasts (a dead holder loses it then); PostgreSQL/MariaDB locks end with the connection.
    "DYNAMICS_SYNC_LEASE_SECONDS": 120,
    # Most rows one export may contain; None for no cap.
    "DYNAMICS_SYNC_EXPORT_MAX_ROWS": None,
    # Rows fetched per round trip while exporting.
    "DYNAMICS_SYNC_EXPORT_CHUNK_SIZE": 2000,
    # Seconds a statement of a plugin page (list, details, status, JSON, metrics) may run before it is stopped.
    "DYNAMICS_SYNC_PAGE_TIME_LIMIT": 10,
    # Seconds an export may spend reading the database (each statement, and all of them together).
    "DYNAMICS_SYNC_EXPORT_TIME_LIMIT": 300,
    # Exports one user may have in flight (being written or downloaded) at a time, per process.
    "DYNAMICS_SYNC_EXPORTS_PER_USER": 1,
    # Exports all users together may have reading the database at a time, per process.
    "DYNAMICS_SYNC_EXPORTS_TOTAL": 4,
    # Most rows of an XLSX export; a larger selection is refused with its count and the CSV link.
    "DYNAMICS_SYNC_XLSX_MAX_ROWS": 50000,
    # Errors list: counts above this are shown capped ("10,000+").
    "DYNAMICS_SYNC_COUNT_CAP": 10000,
    # Seconds between updates of the Sync Status page when its auto-refresh is switched on.
    "DYNAMICS_SYNC_STATUS_REFRESH_SECONDS": 30,
    # Alert when this many errors with one code happen within the window below (0: off).
    "DYNAMICS_SYNC_ALERT_THRESHOLD": 0,
    "DYNAMICS_SYNC_ALERT_WINDOW_MINUTES": 15,
    # Send the daily digest and alerts by e-mail to these addresses (Flask-Mail-free SMTP).
    "DYNAMICS_SYNC_NOTIFY_EMAILS": [],
    # Language of the notification e-mails (one of the shipped locales, or one a host added).
    "DYNAMICS_SYNC_NOTIFY_LOCALE": "en",
    "DYNAMICS_SYNC_SMTP_HOST": "localhost",
    "DYNAMICS_SYNC_SMTP_PORT": 25,
    "DYNAMICS_SYNC_SMTP_USERNAME": None,
    "DYNAMICS_SYNC_SMTP_PASSWORD": None,
    "DYNAMICS_SYNC_SMTP_STARTTLS": False,
    "DYNAMICS_SYNC_MAIL_SENDER": "dynamics-sync@localhost",
}


# The connector's keys (DYNAMICS_SYNC_DATAVERSE_*, DYNAMICS_SYNC_WORKER_*) are read by
# dataverse.settings.load_connector_settings; they are listed here so every key has one home.
DEFAULTS.update(CONNECTOR_DEFAULTS)


@dataclasses.dataclass(frozen=True)
class Settings:
    """The plugin's configuration for one application, read once."""

    objects: dict[str, str]
    menu_category: str
    url_segment: str
    static_url_path: str
    timezone: str
    translation_directories: tuple[str, ...]
    claim_timeout: int
    max_attempts: int
    retry_backoff: int
    default_direction: Direction
    scheduler: bool
    rollup_window_hours: int
    rollup_refresh_minutes: int
    event_retention_days: int
    error_retention_days: int
    prune_batch_size: int
    lease_seconds: int
    export_max_rows: int | None
    export_chunk_size: int
    page_time_limit: float
    export_time_limit: float
    exports_per_user: int
    exports_total: int
    xlsx_max_rows: int
    count_cap: int
    status_refresh_seconds: int
    alert_threshold: int
    alert_window_minutes: int
    notify_emails: tuple[str, ...]
    notify_locale: str
    smtp_host: str
    smtp_port: int
    smtp_username: str | None
    smtp_password: str | None
    smtp_starttls: bool
    mail_sender: str

    @property
    def object_types(self) -> tuple[str, ...]:
        """Configured object type names, in display order."""
        return tuple(self.objects)


def _objects(value: t.Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        objects = {str(k): str(v) for k, v in value.items()}
    elif isinstance(value, (list, tuple)):
        objects = {str(name): str(name) for name in value}
    else:
        raise TypeError("DYNAMICS_SYNC_OBJECTS must be a list of names or a {name: label} mapping")
    if not objects:
        raise ValueError("DYNAMICS_SYNC_OBJECTS must name at least one object type")
    for name in objects:
        if not name or len(name) > 64:
            raise ValueError(f"object type names must be 1 to 64 characters: {name!r}")
    return objects


def _directories(value: t.Any) -> tuple[str, ...]:
    # A string is split on ";" like Flask-Babel's BABEL_TRANSLATION_DIRECTORIES.
    if value is None:
        return ()
    if isinstance(value, (str, os.PathLike)):
        value = str(value).split(";")
    if not isinstance(value, (list, tuple)):
        raise TypeError("DYNAMICS_SYNC_TRANSLATION_DIRECTORIES must be a list of folders or a ';'-separated string")
    return tuple(str(directory) for directory in value if str(directory))


def _addresses(key: str, value: t.Any) -> tuple[str, ...]:
    """E-mail addresses written into headers: printable text, one line each."""
    addresses = (value,) if isinstance(value, str) else tuple(value or ())
    for address in addresses:
        if not isinstance(address, str) or not address.strip() or not address.isprintable():
            raise ValueError(f"{key}: not an e-mail address: {address!r}")
    return addresses


def _locale(value: t.Any) -> str:
    from babel import Locale
    from babel import UnknownLocaleError

    try:
        return str(Locale.parse(str(value)))
    except (ValueError, UnknownLocaleError):
        raise ValueError(f"DYNAMICS_SYNC_NOTIFY_LOCALE: unknown locale {value!r}") from None


def _timezone(value: t.Any) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(str(value))
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ValueError(f"DYNAMICS_SYNC_TIMEZONE: unknown time zone {value!r}") from None
    return str(value)


def _positive_seconds(config: Mapping[str, t.Any], key: str) -> float:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{key} must be a number of seconds, not {type(value).__name__}")
    if not 0 < value < 365 * 24 * 3600:
        raise ValueError(f"{key} must be > 0 and under a year, got {value}")
    return float(value)


def _positive_int(config: Mapping[str, t.Any], key: str, *, allow_zero: bool = False) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an integer, not {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{key} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


def load_settings(config: t.MutableMapping[str, t.Any]) -> Settings:
    """Fill in defaults with ``setdefault`` and return the validated settings."""
    for key, default in DEFAULTS.items():
        config.setdefault(key, list(default) if isinstance(default, list) else default)
    export_max_rows = config["DYNAMICS_SYNC_EXPORT_MAX_ROWS"]
    if export_max_rows is not None:
        export_max_rows = _positive_int(config, "DYNAMICS_SYNC_EXPORT_MAX_ROWS")
    segment = str(config["DYNAMICS_SYNC_URL_SEGMENT"]).strip("/")
    if not segment:
        raise ValueError("DYNAMICS_SYNC_URL_SEGMENT must not be empty")
    return Settings(
        objects=_objects(config["DYNAMICS_SYNC_OBJECTS"]),
        menu_category=str(config["DYNAMICS_SYNC_MENU_CATEGORY"]),
        url_segment=segment,
        static_url_path=str(config["DYNAMICS_SYNC_STATIC_URL_PATH"]),
        timezone=_timezone(config["DYNAMICS_SYNC_TIMEZONE"]),
        translation_directories=_directories(config["DYNAMICS_SYNC_TRANSLATION_DIRECTORIES"]),
        claim_timeout=_positive_int(config, "DYNAMICS_SYNC_CLAIM_TIMEOUT"),
        max_attempts=_positive_int(config, "DYNAMICS_SYNC_MAX_ATTEMPTS"),
        retry_backoff=_positive_int(config, "DYNAMICS_SYNC_RETRY_BACKOFF", allow_zero=True),
        default_direction=Direction(config["DYNAMICS_SYNC_DEFAULT_DIRECTION"]),
        scheduler=bool(config["DYNAMICS_SYNC_SCHEDULER"]),
        rollup_window_hours=_positive_int(config, "DYNAMICS_SYNC_ROLLUP_WINDOW_HOURS", allow_zero=True),
        rollup_refresh_minutes=_positive_int(config, "DYNAMICS_SYNC_ROLLUP_REFRESH_MINUTES"),
        event_retention_days=_positive_int(config, "DYNAMICS_SYNC_EVENT_RETENTION_DAYS"),
        error_retention_days=_positive_int(config, "DYNAMICS_SYNC_ERROR_RETENTION_DAYS"),
        prune_batch_size=_positive_int(config, "DYNAMICS_SYNC_PRUNE_BATCH_SIZE"),
        lease_seconds=_positive_int(config, "DYNAMICS_SYNC_LEASE_SECONDS"),
        export_max_rows=export_max_rows,
        export_chunk_size=_positive_int(config, "DYNAMICS_SYNC_EXPORT_CHUNK_SIZE"),
        page_time_limit=_positive_seconds(config, "DYNAMICS_SYNC_PAGE_TIME_LIMIT"),
        export_time_limit=_positive_seconds(config, "DYNAMICS_SYNC_EXPORT_TIME_LIMIT"),
        exports_per_user=_positive_int(config, "DYNAMICS_SYNC_EXPORTS_PER_USER"),
        exports_total=_positive_int(config, "DYNAMICS_SYNC_EXPORTS_TOTAL"),
        xlsx_max_rows=_positive_int(config, "DYNAMICS_SYNC_XLSX_MAX_ROWS"),
        count_cap=_positive_int(config, "DYNAMICS_SYNC_COUNT_CAP"),
        status_refresh_seconds=_positive_int(config, "DYNAMICS_SYNC_STATUS_REFRESH_SECONDS"),
        alert_threshold=_positive_int(config, "DYNAMICS_SYNC_ALERT_THRESHOLD", allow_zero=True),
        alert_window_minutes=_positive_int(config, "DYNAMICS_SYNC_ALERT_WINDOW_MINUTES"),
        notify_emails=_addresses("DYNAMICS_SYNC_NOTIFY_EMAILS", config["DYNAMICS_SYNC_NOTIFY_EMAILS"]),
        notify_locale=_locale(config["DYNAMICS_SYNC_NOTIFY_LOCALE"]),
        smtp_host=str(config["DYNAMICS_SYNC_SMTP_HOST"]),
        smtp_port=_positive_int(config, "DYNAMICS_SYNC_SMTP_PORT"),
        smtp_username=config["DYNAMICS_SYNC_SMTP_USERNAME"],
        smtp_password=config["DYNAMICS_SYNC_SMTP_PASSWORD"],
        smtp_starttls=bool(config["DYNAMICS_SYNC_SMTP_STARTTLS"]),
        mail_sender=_addresses("DYNAMICS_SYNC_MAIL_SENDER", str(config["DYNAMICS_SYNC_MAIL_SENDER"]))[0],
    )
