"""Notifications: the daily digest of failed records and the error threshold alert.

Each is sent as a blinker signal (:mod:`flask_dynamics_sync.signals`) the host
can connect, and by e-mail to ``DYNAMICS_SYNC_NOTIFY_EMAILS`` when that list is
not empty, through the host's SMTP server (``DYNAMICS_SYNC_SMTP_*``; plain
:mod:`smtplib`, no mail service of our own).

* **Digest** (``notify`` job, daily): the records that failed in the 24 hours
  before the run, per object and error code, with the latest failures. The
  e-mail is skipped when nothing failed; the signal is always sent.
* **Threshold alert** (``alerts`` job, every minute, when
  ``DYNAMICS_SYNC_ALERT_THRESHOLD`` > 0): an error code with at least that
  many errors within the last ``DYNAMICS_SYNC_ALERT_WINDOW_MINUTES``. It fires
  when the count crosses the threshold, compared with the previous check (the
  ``alerts`` job row's ``watermark``), so a storm of errors alerts once, not
  every minute.

E-mails are sent at least once: each is kept in ``dynamics_sync_pending_email``
in the transaction that decided to send it (for an alert, the one that moves
the watermark) and deleted once the SMTP server took it. An e-mail that could
not be sent, and every one after it, is sent by the next run; one that was sent
is never sent again (unless the process dies between the SMTP server's answer
and the delete: then at most that one, after :data:`EMAIL_CLAIM`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import smtplib
import typing as t
from email.message import EmailMessage

import sqlalchemy as sa
from blinker import Signal
from sqlalchemy.engine import Connection

from .config import Settings
from .database import Transaction
from .errors import DynamicsSyncError
from .i18n import force_locale
from .i18n import format_datetime
from .i18n import format_number
from .i18n import gettext
from .i18n import ngettext
from .jobs import JobName
from .jobs import lock_job_row
from .jobs import read_job
from .jobs import set_watermark
from .models import EMAIL_SUBJECT_LENGTH
from .models import error_table
from .models import pending_email_table
from .signals import error_threshold_reached
from .signals import errors_digest

logger = logging.getLogger(__name__)

errors = error_table
pending_emails = pending_email_table
DIGEST_PERIOD = dt.timedelta(hours=24)
#: Failures listed one by one in the digest (the most recent).
DIGEST_LATEST = 20
#: How long a sender holds a pending e-mail: past it (a sender that died), another sends it.
EMAIL_CLAIM = dt.timedelta(minutes=5)


@dataclasses.dataclass(frozen=True)
class DigestLine:
    """Failures of one object type with one error code."""

    object_type: str
    error_code: str
    records: int
    """Distinct records (object, record id, direction) that failed with this code."""
    attempts: int
    """Failed attempts (error rows)."""
    example_message: str
    last_failed_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class FailedRecord:
    """One failed attempt, as listed in the digest."""

    object_type: str
    record_id: str
    record_label: str | None
    operation: str
    direction: str
    error_code: str
    error_message: str
    occurred_at: dt.datetime
    state: str


@dataclasses.dataclass(frozen=True)
class ErrorsDigest:
    """The records that failed after ``since``, up to ``until`` (naive UTC)."""

    since: dt.datetime
    until: dt.datetime
    failed_records: int
    """Distinct records that failed at least once."""
    attempts: int
    lines: tuple[DigestLine, ...]
    """Per object type and error code, most records first."""
    latest: tuple[FailedRecord, ...]
    """The most recent failures, newest first (at most :data:`DIGEST_LATEST`)."""


@dataclasses.dataclass(frozen=True)
class ThresholdAlert:
    """``count`` errors with ``error_code`` after ``since`` up to ``until``, at least ``threshold``."""

    error_code: str
    count: int
    threshold: int
    window_minutes: int
    since: dt.datetime
    until: dt.datetime
    object_types: tuple[str, ...]
    example_message: str


class NotificationError(DynamicsSyncError):
    """The signals were sent but an e-mail could not be; ``result`` tells what was sent."""

    def __init__(self, result: NotifyResult) -> None:
        super().__init__(result.email_error)
        self.result = result


@dataclasses.dataclass(frozen=True)
class NotifyResult:
    """What a notification run sent."""

    digest: ErrorsDigest | None
    alerts: tuple[ThresholdAlert, ...]
    emails_sent: int
    email_error: str | None = None
    """Why an e-mail could not be sent (the signals were sent anyway)."""

    def __str__(self) -> str:
        parts = []
        if self.digest is not None:
            parts.append(
                f"digest: {self.digest.failed_records} failed record(s), {self.digest.attempts} attempt(s) "
                f"since {self.digest.since:%Y-%m-%d %H:%M} UTC"
            )
        if self.alerts:
            parts.append("alerts: " + ", ".join(f"{a.error_code} x{a.count}" for a in self.alerts))
        else:
            parts.append("no threshold alert")
        parts.append(f"{self.emails_sent} e-mail(s) sent")
        if self.email_error:
            parts.append(f"e-mail failed: {self.email_error}")
        return "; ".join(parts)


# -- queries ----------------------------------------------------------------------


def build_digest(conn: Connection, now: dt.datetime) -> ErrorsDigest:
    """The digest of the 24 hours up to ``now`` (a range of the ``occurred_at`` index)."""
    since = now - DIGEST_PERIOD
    in_period = sa.and_(errors.c.occurred_at > since, errors.c.occurred_at <= now)
    per_record = (
        sa.select(
            errors.c.object_type,
            errors.c.error_code,
            sa.func.count().label("attempts"),
            sa.func.max(errors.c.occurred_at).label("last_at"),
            sa.func.max(errors.c.error_message).label("message"),
        )
        .where(in_period)
        .group_by(errors.c.object_type, errors.c.error_code, errors.c.record_id, errors.c.direction)
        .subquery()
    )
    records = sa.func.count().label("records")
    rows = conn.execute(
        sa.select(
            per_record.c.object_type,
            per_record.c.error_code,
            records,
            sa.func.sum(per_record.c.attempts),
            sa.func.max(per_record.c.message),
            sa.func.max(per_record.c.last_at),
        )
        .group_by(per_record.c.object_type, per_record.c.error_code)
        .order_by(records.desc(), per_record.c.object_type, per_record.c.error_code)
    ).all()
    lines = tuple(
        DigestLine(
            object_type=row[0],
            error_code=row[1],
            records=int(row[2]),
            attempts=int(row[3]),
            example_message=row[4],
            last_failed_at=row[5],
        )
        for row in rows
    )
    distinct_records = (
        sa.select(errors.c.object_type, errors.c.record_id, errors.c.direction).where(in_period).distinct().subquery()
    )
    failed_records = conn.scalar(sa.select(sa.func.count()).select_from(distinct_records)) or 0
    latest = conn.execute(
        sa.select(
            *(errors.c[field.name] for field in dataclasses.fields(FailedRecord))
        )
        .where(in_period)
        .order_by(errors.c.occurred_at.desc(), errors.c.id.desc())
        .limit(DIGEST_LATEST)
    ).all()
    return ErrorsDigest(
        since=since,
        until=now,
        failed_records=int(failed_records),
        attempts=sum(line.attempts for line in lines),
        lines=lines,
        latest=tuple(FailedRecord(*row) for row in latest),
    )


def _codes_over(conn: Connection, since: dt.datetime, until: dt.datetime, threshold: int) -> dict[str, tuple[int, str]]:
    """Error codes with at least ``threshold`` errors after ``since`` up to ``until``: count and an example."""
    count = sa.func.count()
    rows = conn.execute(
        sa.select(errors.c.error_code, count, sa.func.max(errors.c.error_message))
        .where(errors.c.occurred_at > since, errors.c.occurred_at <= until)
        .group_by(errors.c.error_code)
        .having(count >= threshold)
    ).all()
    return {row[0]: (int(row[1]), row[2]) for row in rows}


def check_thresholds(conn: Connection, *, now: dt.datetime, threshold: int, window_minutes: int) -> tuple[
    ThresholdAlert, ...
]:
    """The codes that crossed the threshold since the previous check; records this check.

    Holds the ``alerts`` row's lock, so two checks at once never alert twice.
    """
    lock_job_row(conn, JobName.ALERTS)
    state = read_job(conn, JobName.ALERTS)
    previous = state.watermark if state is not None else None
    window = dt.timedelta(minutes=window_minutes)
    since = now - window
    over = _codes_over(conn, since, now, threshold)
    if over and previous is not None:
        before = _codes_over(conn, min(previous, now) - window, min(previous, now), threshold)
        over = {code: value for code, value in over.items() if code not in before}
    set_watermark(conn, JobName.ALERTS, now if previous is None else max(previous, now))
    alerts = []
    for code, (count, message) in sorted(over.items()):
        object_types = conn.scalars(
            sa.select(errors.c.object_type)
            .where(errors.c.error_code == code, errors.c.occurred_at > since, errors.c.occurred_at <= now)
            .distinct()
            .order_by(errors.c.object_type)
        ).all()
        alerts.append(
            ThresholdAlert(
                error_code=code,
                count=count,
                threshold=threshold,
                window_minutes=window_minutes,
                since=since,
                until=now,
                object_types=tuple(object_types),
                example_message=message,
            )
        )
    return tuple(alerts)


# -- e-mail -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SmtpMailer:
    """Sends plain-text mail through the host's SMTP server."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpMailer | None:
        """The configured mailer, or ``None`` when ``DYNAMICS_SYNC_NOTIFY_EMAILS`` is empty."""
        if not settings.notify_emails:
            return None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.mail_sender,
            recipients=settings.notify_emails,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
        )

    def send(self, subject: str, body: str) -> None:
        """Send one e-mail; every header is written as one line of printable text (:func:`header_text`)."""
        message = EmailMessage()
        message["Subject"] = header_text(subject)
        message["From"] = header_text(self.sender)
        message["To"] = header_text(", ".join(self.recipients))
        message.set_content(body)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)


def header_text(value: str) -> str:
    """``value`` as one line of printable text: line breaks, control and format characters become spaces.

    Error codes recorded before they were validated may hold a line break, which
    ``email`` refuses in a header (an injection attempt); the e-mail is sent anyway.
    """
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())


def digest_email(digest: ErrorsDigest) -> tuple[str, str]:
    """Subject and plain-text body of the digest e-mail."""
    subject = ngettext(
        "Dynamics sync: %(num)s record failed in the last 24 hours",
        "Dynamics sync: %(num)s records failed in the last 24 hours",
        digest.failed_records,
    )
    lines = [
        gettext(
            "Failed records from %(since)s to %(until)s: %(records)s (%(attempts)s failed attempts).",
            since=format_datetime(digest.since),
            until=format_datetime(digest.until),
            records=format_number(digest.failed_records),
            attempts=format_number(digest.attempts),
        ),
        "",
        gettext("By object and error code:"),
    ]
    for line in digest.lines:
        lines.append(
            gettext(
                "- %(object)s, %(code)s: %(records)s records, %(attempts)s attempts. %(message)s",
                object=line.object_type,
                code=line.error_code,
                records=format_number(line.records),
                attempts=format_number(line.attempts),
                message=line.example_message,
            )
        )
    lines += ["", gettext("Latest failures:")]
    for failure in digest.latest:
        lines.append(
            f"- {format_datetime(failure.occurred_at)} {failure.object_type} {failure.record_label or failure.record_id}"
            f" ({failure.operation}, {failure.direction}): {failure.error_code} {failure.error_message}"
        )
    return subject, "\n".join(lines) + "\n"


def alert_email(alert: ThresholdAlert) -> tuple[str, str]:
    """Subject and plain-text body of a threshold alert e-mail."""
    subject = gettext(
        "Dynamics sync alert: %(count)s errors %(code)s in %(minutes)s minutes",
        count=format_number(alert.count),
        code=alert.error_code,
        minutes=alert.window_minutes,
    )
    body = gettext(
        "%(count)s errors with code %(code)s between %(since)s and %(until)s (threshold: %(threshold)s).\n"
        "Objects: %(objects)s\nExample message: %(message)s\n",
        count=format_number(alert.count),
        code=alert.error_code,
        since=format_datetime(alert.since),
        until=format_datetime(alert.until),
        threshold=format_number(alert.threshold),
        objects=", ".join(alert.object_types),
        message=alert.example_message,
    )
    return subject, body


# -- sending ----------------------------------------------------------------------


def send_signal(signal: Signal, sender: t.Any, **kwargs: t.Any) -> None:
    """Call every receiver; one that raises is logged and does not stop the others."""
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **kwargs)
        except Exception:  # noqa: BLE001 - a host's receiver must not break the job
            logger.exception("receiver %r of signal %s failed", receiver, signal.name)


def queue_emails(conn: Connection, emails: t.Iterable[tuple[str, str]], now: dt.datetime) -> int:
    """Keep ``(subject, body)`` e-mails to send in :class:`~.models.PendingEmail`, in ``conn``'s transaction."""
    rows = [
        {"created_at": now, "subject": header_text(subject)[:EMAIL_SUBJECT_LENGTH], "body": body, "claimed_until": None}
        for subject, body in emails
    ]
    if rows:
        conn.execute(sa.insert(pending_emails), rows)
    return len(rows)


@dataclasses.dataclass(frozen=True)
class QueuedEmail:
    """A pending e-mail one sender claimed."""

    id: int
    subject: str
    body: str


def claim_email(conn: Connection, now: dt.datetime) -> QueuedEmail | None:
    """The oldest pending e-mail no other sender holds, claimed for :data:`EMAIL_CLAIM`; ``None`` when none is left."""
    free = sa.or_(pending_emails.c.claimed_until.is_(None), pending_emails.c.claimed_until <= now)
    while True:
        row = conn.execute(
            sa.select(pending_emails.c.id, pending_emails.c.subject, pending_emails.c.body)
            .where(free)
            .order_by(pending_emails.c.id)
            .limit(1)
        ).first()
        if row is None:
            return None
        claimed = conn.execute(
            sa.update(pending_emails)
            .where(pending_emails.c.id == row.id, free)
            .values(claimed_until=now + EMAIL_CLAIM)
        ).rowcount
        if claimed:
            return QueuedEmail(row.id, row.subject, row.body)


def deliver_pending(transaction: Transaction, mailer: SmtpMailer, *, now: dt.datetime) -> tuple[int, str | None]:
    """Send the pending e-mails, oldest first, each deleted once the SMTP server took it.

    Stops at the first that cannot be sent: it and the ones after stay pending
    for the next run. Returns how many were sent and why sending stopped.
    """
    sent = 0
    while (email := transaction(lambda conn: claim_email(conn, now))) is not None:
        try:
            mailer.send(email.subject, email.body)
        except (OSError, smtplib.SMTPException) as exc:
            transaction(
                lambda conn: conn.execute(
                    sa.update(pending_emails).where(pending_emails.c.id == email.id).values(claimed_until=None)
                )
            )
            error = f"{type(exc).__name__}: {exc}"
            logger.warning("Flask-Dynamics-Sync could not send a notification e-mail (kept for the next run): %s", error)
            return sent, error
        transaction(lambda conn: conn.execute(sa.delete(pending_emails).where(pending_emails.c.id == email.id)))
        sent += 1
    return sent, None


def notify(
    app: t.Any,
    transaction: Transaction,
    settings: Settings,
    *,
    now: dt.datetime,
    digest: bool = True,
    alerts: bool = True,
    mailer: SmtpMailer | None = None,
) -> NotifyResult:
    """Build and send the digest and/or the threshold alerts as of ``now``.

    Threshold alerts are checked only when ``DYNAMICS_SYNC_ALERT_THRESHOLD`` > 0.
    With a ``mailer``, their e-mails are kept as pending in the transaction that
    built them (for alerts, the one that moves the watermark), then sent with
    whatever an earlier run could not send (:func:`deliver_pending`).
    """

    def e_mails(conn: Connection, emails: t.Iterable[tuple[str, str]]) -> None:
        if mailer is not None:
            queue_emails(conn, emails, now)

    def build(conn: Connection) -> ErrorsDigest:
        built = build_digest(conn, now)
        if built.failed_records:
            with force_locale(settings.notify_locale):
                e_mails(conn, [digest_email(built)])
        return built

    def check(conn: Connection) -> tuple[ThresholdAlert, ...]:
        found = check_thresholds(
            conn, now=now, threshold=settings.alert_threshold, window_minutes=settings.alert_window_minutes
        )
        with force_locale(settings.notify_locale):
            e_mails(conn, [alert_email(alert) for alert in found])
        return found

    built = transaction(build) if digest else None
    raised: tuple[ThresholdAlert, ...] = transaction(check) if alerts and settings.alert_threshold > 0 else ()

    with force_locale(settings.notify_locale):
        if built is not None:
            send_signal(errors_digest, app, digest=built)
        for alert in raised:
            send_signal(error_threshold_reached, app, alert=alert)

    sent, email_error = deliver_pending(transaction, mailer, now=now) if mailer is not None else (0, None)
    return NotifyResult(digest=built, alerts=raised, emails_sent=sent, email_error=email_error)
