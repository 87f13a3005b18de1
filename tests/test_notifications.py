"""Notifications: the daily digest and the threshold alert, as signals and e-mails."""

from __future__ import annotations

import datetime as dt
import smtplib

import pytest

from flask_dynamics_sync.jobs import job_states
from flask_dynamics_sync.notifications import DigestLine
from flask_dynamics_sync.notifications import NotificationError
from flask_dynamics_sync.signals import error_threshold_reached
from flask_dynamics_sync.signals import errors_digest

from .conftest import NOW
from .test_rollup import add_errors
from .test_rollup import error

M = dt.timedelta(minutes=1)
H = dt.timedelta(hours=1)
ALERTS = {"DYNAMICS_SYNC_ALERT_THRESHOLD": 3, "DYNAMICS_SYNC_ALERT_WINDOW_MINUTES": 15}
MAIL = {"DYNAMICS_SYNC_NOTIFY_EMAILS": ["ops@example.com", "crm@example.com"], "DYNAMICS_SYNC_SMTP_HOST": "mail.example.com",
        "DYNAMICS_SYNC_SMTP_PORT": 587, "DYNAMICS_SYNC_MAIL_SENDER": "sync@example.com"}


def failure(at: dt.datetime, record_id: str, code: str = "0x80040237", object_type: str = "Lead",
            message: str = "Duplicate record", label: str | None = None) -> dict:
    return {**error(at, object_type), "record_id": record_id, "record_label": label, "error_code": code,
            "error_message": message}


@pytest.fixture
def listen():
    """``got = listen(signal, app)``: the keyword payloads ``signal`` sends for ``app``, disconnected afterwards."""
    connected = []

    def connect(signal, app) -> list:
        got: list = []

        def receiver(sender, **payload):
            got.extend(payload.values())

        signal.connect(receiver, sender=app)
        connected.append((signal, receiver, app))
        return got

    yield connect
    for signal, receiver, app in connected:
        signal.disconnect(receiver, sender=app)


class FakeSMTP:
    """Stands in for :class:`smtplib.SMTP`; every connection is recorded in ``FakeSMTP.sessions``."""

    sessions: list[FakeSMTP] = []
    fail_with: Exception | None = None
    fail_after: int = 0
    """Messages accepted (over all sessions) before ``fail_with`` is raised."""

    def __init__(self, host, port, timeout=None):
        self.address, self.calls, self.messages = (host, port), [], []
        FakeSMTP.sessions.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def starttls(self):
        self.calls.append("starttls")

    def login(self, user, password):
        self.calls.append(("login", user, password))

    def send_message(self, message):
        if FakeSMTP.fail_with is not None and len(mailed(FakeSMTP)) >= FakeSMTP.fail_after:
            raise FakeSMTP.fail_with
        self.messages.append(message)


@pytest.fixture
def smtp(monkeypatch):
    FakeSMTP.sessions, FakeSMTP.fail_with, FakeSMTP.fail_after = [], None, 0
    monkeypatch.setattr(smtplib, "SMTP", FakeSMTP)
    return FakeSMTP


def mailed(smtp) -> list:
    """Every message the SMTP server accepted, in order."""
    return [message for session in smtp.sessions for message in session.messages]


def mail_app(make_app, db_url, **config):
    app = make_app(db_url, config={**MAIL, **config})
    return app, app.extensions["dynamics_sync"].extension


# -- digest ---------------------------------------------------------------------------


def test_the_digest_counts_failed_records_per_object_and_error_code(app, sync, db, listen):
    digests = listen(errors_digest, app)
    add_errors(
        db,
        failure(NOW - 2 * H, "1"), failure(NOW - H, "1"), failure(NOW - H, "2"),
        failure(NOW - 3 * H, "9", code="0x80040220", object_type="Contact", message="Missing privileges"),
        failure(NOW - 4 * H, "1", code="0x80040220", message="Missing privileges"),
    )

    sync.notify()

    [digest] = digests
    assert (digest.since, digest.until, digest.failed_records, digest.attempts) == (NOW - 24 * H, NOW, 3, 5)
    assert digest.lines == (
        DigestLine("Lead", "0x80040237", records=2, attempts=3, example_message="Duplicate record", last_failed_at=NOW - H),
        DigestLine("Contact", "0x80040220", 1, 1, "Missing privileges", NOW - 3 * H),
        DigestLine("Lead", "0x80040220", 1, 1, "Missing privileges", NOW - 4 * H),
    )
    assert [(f.record_id, f.occurred_at) for f in digest.latest] == [
        ("2", NOW - H), ("1", NOW - H), ("1", NOW - 2 * H), ("9", NOW - 3 * H), ("1", NOW - 4 * H),
    ]


def test_the_digest_covers_the_last_24_hours_only(app, sync, db, listen):
    digests = listen(errors_digest, app)
    add_errors(db, failure(NOW - 24 * H, "old"), failure(NOW - 24 * H + M, "first"), failure(NOW, "last"),
               failure(NOW + M, "not yet"))

    sync.notify()

    assert [f.record_id for f in digests[0].latest] == ["last", "first"]


def test_the_digest_signal_is_sent_even_when_nothing_failed_but_no_mail(make_app, db_url, smtp, listen):
    app, sync = mail_app(make_app, db_url)
    digests = listen(errors_digest, app)
    with app.app_context():
        result = sync.notify()

    assert [d.failed_records for d in digests] == [0]
    assert (result.emails_sent, smtp.sessions) == (0, [])


def test_the_digest_is_mailed_through_the_hosts_smtp_server(make_app, db_url, smtp):
    app, sync = mail_app(make_app, db_url, DYNAMICS_SYNC_SMTP_STARTTLS=True, DYNAMICS_SYNC_SMTP_USERNAME="sync",
                         DYNAMICS_SYNC_SMTP_PASSWORD="secret")
    with app.app_context():
        add_errors(app.extensions["test_db"], failure(NOW - H, "42", label="Ada Lovelace"))
        result = sync.notify()

    [session] = smtp.sessions
    [message] = session.messages
    assert session.address == ("mail.example.com", 587)
    assert session.calls == ["starttls", ("login", "sync", "secret")]
    assert (message["From"], message["To"]) == ("sync@example.com", "ops@example.com, crm@example.com")
    assert message["Subject"] == "Dynamics sync: 1 record failed in the last 24 hours"
    body = message.get_content()
    assert "- Lead, 0x80040237: 1 records, 1 attempts. Duplicate record" in body
    assert "Lead Ada Lovelace (insert, to_dynamics): 0x80040237 Duplicate record" in body
    assert result.emails_sent == 1


def test_the_digest_is_written_in_the_configured_language(make_app, db_url, smtp):
    app, sync = mail_app(make_app, db_url, DYNAMICS_SYNC_NOTIFY_LOCALE="de")
    with app.app_context():
        add_errors(app.extensions["test_db"], failure(NOW - H, "42"))
        sync.notify()

    [session] = smtp.sessions
    [message] = session.messages
    assert message["Subject"] == "Dynamics-Synchronisierung: 1 Datensatz in den letzten 24 Stunden fehlgeschlagen"


def test_a_mail_failure_is_reported_after_the_signals_went_out(make_app, db_url, smtp, listen):
    smtp.fail_with = smtplib.SMTPRecipientsRefused({"ops@example.com": (550, b"no such user")})
    app, sync = mail_app(make_app, db_url)
    got = listen(errors_digest, app)
    with app.app_context():
        add_errors(app.extensions["test_db"], failure(NOW - H, "1"))
        with pytest.raises(NotificationError) as raised:
            sync.notify()
        info = job_states(sync.engine)["notify"]

    assert len(got) == 1
    assert raised.value.result.emails_sent == 0
    assert raised.value.result.email_error.startswith("SMTPRecipientsRefused")
    assert info.last_status == "failed"


def test_a_failing_receiver_does_not_stop_the_others(sync, db, listen, app):
    def broken(sender, **extra):
        raise RuntimeError("receiver bug")

    errors_digest.connect(broken, sender=app)
    digests = listen(errors_digest, app)
    try:
        sync.notify()
    finally:
        errors_digest.disconnect(broken, sender=app)

    assert len(digests) == 1


def test_a_notify_run_is_recorded(sync, db):
    add_errors(db, failure(NOW - H, "1"))

    sync.notify()

    info = job_states(db.engine)["notify"]
    assert (info.last_status, info.last_message) == (
        "ok", "digest: 1 failed record(s), 1 attempt(s) since 2026-03-09 14:20 UTC; no threshold alert; 0 e-mail(s) sent",
    )


# -- threshold alert ---------------------------------------------------------------------


def alert_app(make_app, db_url, **config):
    app = make_app(db_url, config={**ALERTS, **config})
    return app, app.extensions["dynamics_sync"].extension, app.extensions["test_db"]


def test_an_alert_fires_when_a_code_reaches_the_threshold_within_the_window(make_app, db_url, listen):
    app, sync, db = alert_app(make_app, db_url)
    got = listen(error_threshold_reached, app)
    with app.app_context():
        add_errors(db, failure(NOW - 14 * M, "1"), failure(NOW - 5 * M, "2", object_type="Contact"),
                   failure(NOW - M, "3"), failure(NOW - 20 * M, "old"), failure(NOW - M, "4", code="0x1"))
        result = sync.notify(digest=False)

    [alert] = got
    assert (alert.error_code, alert.count, alert.threshold, alert.window_minutes, alert.since, alert.until) == (
        "0x80040237", 3, 3, 15, NOW - 15 * M, NOW,
    )
    assert (alert.object_types, alert.example_message) == (("Contact", "Lead"), "Duplicate record")
    assert result.alerts == (alert,)


def test_no_alert_below_the_threshold(make_app, db_url, listen):
    app, sync, db = alert_app(make_app, db_url)
    got = listen(error_threshold_reached, app)
    with app.app_context():
        add_errors(db, failure(NOW - M, "1"), failure(NOW - 2 * M, "2"), failure(NOW - 15 * M, "3"))
        sync.notify(digest=False)

    assert got == []


def test_an_alert_is_not_repeated_while_the_errors_keep_coming(make_app, db_url, clock, listen):
    app, sync, db = alert_app(make_app, db_url)
    got = listen(error_threshold_reached, app)
    with app.app_context():
        add_errors(db, *(failure(NOW - i * M, str(i)) for i in range(3)))
        sync.notify(digest=False)
        for _ in range(5):
            clock.advance(minutes=1)
            add_errors(db, failure(clock(), "more"))
            sync.notify(digest=False)

    assert len(got) == 1


def test_an_alert_fires_again_after_the_errors_calmed_down(make_app, db_url, clock, listen):
    app, sync, db = alert_app(make_app, db_url)
    got = listen(error_threshold_reached, app)
    with app.app_context():
        add_errors(db, *(failure(NOW - i * M, str(i)) for i in range(3)))
        sync.notify(digest=False)
        clock.advance(minutes=30)
        sync.notify(digest=False)  # quiet for a whole window
        clock.advance(minutes=1)
        add_errors(db, *(failure(clock() - i * M, f"again-{i}") for i in range(3)))
        sync.notify(digest=False)

    assert [a.until for a in got] == [NOW, NOW + 31 * M]


def test_alerts_are_off_without_a_threshold(app, sync, db, listen):
    alerts = listen(error_threshold_reached, app)
    add_errors(db, *(failure(NOW - i * M, str(i)) for i in range(50)))

    result = sync.notify()

    assert (result.alerts, alerts) == ((), [])


def test_an_alert_is_mailed(make_app, db_url, smtp):
    app, sync, db = alert_app(make_app, db_url, **MAIL)
    with app.app_context():
        add_errors(db, *(failure(NOW - i * M, str(i)) for i in range(4)))
        result = sync.notify(digest=False)

    [message] = smtp.sessions[0].messages
    assert message["Subject"] == "Dynamics sync alert: 4 errors 0x80040237 in 15 minutes"
    assert "Objects: Lead" in message.get_content()
    assert result.emails_sent == 1


# -- headers ------------------------------------------------------------------------


def test_a_line_break_in_a_stored_error_code_stays_out_of_the_headers(make_app, db_url, smtp):
    # A code recorded before codes were validated: the alert is mailed, on one subject line.
    app, sync, db = alert_app(make_app, db_url, **MAIL)
    with app.app_context():
        add_errors(db, *(failure(NOW - i * M, str(i), code="0x1\nBcc: evil@x") for i in range(4)))
        result = sync.notify(digest=False)

    [message] = smtp.sessions[0].messages
    assert message["Subject"] == "Dynamics sync alert: 4 errors 0x1 Bcc: evil@x in 15 minutes"
    assert (message["Bcc"], message["To"]) == (None, "ops@example.com, crm@example.com")
    assert result.emails_sent == 1


@pytest.mark.parametrize("key", ["DYNAMICS_SYNC_NOTIFY_EMAILS", "DYNAMICS_SYNC_MAIL_SENDER"])
def test_an_address_with_a_line_break_is_refused_at_init_app(make_app, sqlite_url, key):
    value = "ops@example.com\nBcc: evil@x"

    with pytest.raises(ValueError, match=rf"{key}: not an e-mail address: 'ops@example.com\\nBcc: evil@x'"):
        make_app(sqlite_url, config={key: [value] if key.endswith("EMAILS") else value})


# -- at least once ------------------------------------------------------------------


CODES = [f"0x8004{i:04d}" for i in range(5)]


def test_alerts_a_failed_send_stopped_are_mailed_by_the_next_run_and_none_twice(make_app, db_url, smtp, clock):
    # Found by an outside probe: after a failure mid-run, the next run sent nothing (the watermark had moved).
    app, sync, db = alert_app(make_app, db_url, **MAIL)
    smtp.fail_with, smtp.fail_after = smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), 2
    with app.app_context():
        add_errors(db, *(failure(NOW - i * M, f"{code}-{i}", code=code) for code in CODES for i in range(4)))
        with pytest.raises(NotificationError) as failed:
            sync.notify(digest=False)
        smtp.fail_with = None
        clock.advance(minutes=1)
        retried = sync.notify(digest=False)
        clock.advance(minutes=1)
        quiet = sync.notify(digest=False)

    assert (failed.value.result.emails_sent, retried.emails_sent, quiet.emails_sent) == (2, 3, 0)
    assert failed.value.result.email_error == "SMTPServerDisconnected: Connection unexpectedly closed"
    assert [m["Subject"] for m in mailed(smtp)] == [f"Dynamics sync alert: 4 errors {code} in 15 minutes" for code in CODES]
    assert (len(failed.value.result.alerts), retried.alerts, quiet.alerts) == (5, (), ())


def test_a_digest_the_smtp_server_refused_is_mailed_by_the_next_run(make_app, db_url, smtp, clock):
    app, sync = mail_app(make_app, db_url)
    smtp.fail_with = smtplib.SMTPDataError(451, b"try again later")
    with app.app_context():
        add_errors(app.extensions["test_db"], failure(NOW - H, "1"))
        with pytest.raises(NotificationError):
            sync.notify(alerts=False)
        smtp.fail_with = None
        clock.advance(minutes=5)
        result = sync.notify(alerts=False)

    # The kept digest first, then the new run's own.
    assert result.emails_sent == 2
    assert [m["Subject"] for m in mailed(smtp)] == ["Dynamics sync: 1 record failed in the last 24 hours"] * 2


def test_an_e_mail_another_sender_holds_is_left_to_it_until_its_claim_expires(make_app, db_url, smtp, clock):
    from flask_dynamics_sync.notifications import claim_email

    app, sync = mail_app(make_app, db_url)
    with app.app_context():
        add_errors(app.extensions["test_db"], failure(NOW - H, "1"))
        smtp.fail_with = smtplib.SMTPDataError(451, b"try again later")
        with pytest.raises(NotificationError):
            sync.notify(alerts=False)
        smtp.fail_with = None
        with sync.engine.begin() as conn:
            held = claim_email(conn, NOW)  # another process took it, then died
            assert claim_email(conn, NOW + dt.timedelta(minutes=4)) is None
            assert claim_email(conn, NOW + dt.timedelta(minutes=5)) == held
