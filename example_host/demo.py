"""Demo data: a CRM with a week of sync history, a live backlog and realistic Dataverse errors.

:func:`ensure_demo_data` seeds an empty database once, at the first start: the
host's own records and users, then the plugin's tables as a real sync engine
would have left them after ``days`` days of work:

* sync events for Lead, Contact, Account and Opportunity, both directions,
  inserts and updates, following an office-hours curve (quiet nights and weekends);
* errors with real Dataverse codes, in every state (a throttling burst
  yesterday morning, permission and validation problems still open);
* a backlog of some hundreds of records of varied ages, including parked ones;
* the hourly throughput rolled up with the plugin's own rollup, and hourly
  backlog snapshots so the status view can tell *Growing* from *Normal*.

Everything is written with bulk inserts in one transaction (the ORM's tracking
events are bypassed on purpose: the queue is built explicitly, with its history).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random
import zoneinfo
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.engine import Connection
from werkzeug.security import generate_password_hash

from flask_dynamics_sync import Change
from flask_dynamics_sync import DynamicsSync
from flask_dynamics_sync import ErrorState
from flask_dynamics_sync import QueueState
from flask_dynamics_sync.models import BacklogSnapshot
from flask_dynamics_sync.models import QueueItem
from flask_dynamics_sync.models import SyncError
from flask_dynamics_sync.models import SyncEvent
from flask_dynamics_sync.recorder import Recorder

from .dataverse import CATALOGUE
from .dataverse import pick_error
from .models import SYNCED_MODELS
from .models import User

HOUR = dt.timedelta(hours=1)
#: The demo company works from Milan: its office hours drive the curve.
OFFICE_TIMEZONE = zoneinfo.ZoneInfo("Europe/Rome")

#: (username, password, operator, time zone) of the demo users, printed at start.
DEMO_USERS: tuple[tuple[str, str, bool, str], ...] = (
    ("admin", "admin", True, "Europe/Rome"),
    ("viewer", "viewer", False, "America/Sao_Paulo"),
)


@dataclasses.dataclass(frozen=True)
class Flow:
    """Records of one object, operation and direction synced per hour at the busiest time of day."""

    object_type: str
    operation: str
    direction: str
    peak_per_hour: float


TO, FROM = "to_dynamics", "from_dynamics"
FLOWS: tuple[Flow, ...] = (
    Flow("Lead", "insert", TO, 60), Flow("Lead", "update", TO, 40),
    Flow("Lead", "insert", FROM, 10), Flow("Lead", "update", FROM, 25),
    Flow("Contact", "insert", TO, 25), Flow("Contact", "update", TO, 90),
    Flow("Contact", "insert", FROM, 8), Flow("Contact", "update", FROM, 45),
    Flow("Account", "insert", TO, 6), Flow("Account", "update", TO, 30),
    Flow("Account", "insert", FROM, 2), Flow("Account", "update", FROM, 15),
    Flow("Opportunity", "insert", TO, 10), Flow("Opportunity", "update", TO, 45),
    Flow("Opportunity", "insert", FROM, 3), Flow("Opportunity", "update", FROM, 20),
)  # fmt: skip

#: Records waiting now, per (object, operation, direction).
BACKLOG: dict[tuple[str, str, str], int] = {
    ("Lead", "insert", TO): 140, ("Lead", "update", TO): 70, ("Lead", "update", FROM): 12,
    ("Contact", "insert", TO): 35, ("Contact", "update", TO): 120, ("Contact", "update", FROM): 25,
    ("Account", "insert", TO): 8, ("Account", "update", TO): 30, ("Account", "update", FROM): 6,
    ("Opportunity", "insert", TO): 14, ("Opportunity", "update", TO): 45, ("Opportunity", "insert", FROM): 3,
}  # fmt: skip

#: Backlog six hours ago relative to now, per object: above 1 shows *Normal* (draining), below *Growing*.
BACKLOG_SIX_HOURS_AGO = {"Lead": 0.55, "Contact": 1.3, "Account": 1.1, "Opportunity": 0.8}

FIRST_NAMES = (
    "Giulia", "Marco", "Sofia", "Luca", "Ana", "João", "Beatriz", "Lukas", "Anna", "Jonas", "Lucía",
    "Javier", "Camille", "Louis", "Zoë", "Emma", "Noah", "Olivia", "Liam", "Aiko", "Ravi", "Fatima",
    "Mateus", "Chiara", "François", "Søren", "Małgorzata", "Ioana", "Niamh", "Dmitri",
)  # fmt: skip
LAST_NAMES = (
    "Rossi", "Bianchi", "Ferrari", "Silva", "Santos", "Oliveira", "Müller", "Schmidt", "Schneider",
    "García", "Martínez", "López", "Martin", "Bernard", "Dubois", "Smith", "Johnson", "Brown",
    "Tanaka", "Patel", "Khan", "Costa", "Lefèvre", "Jørgensen", "Kowalska", "Popescu", "Murphy",
    "Ivanov", "Esposito", "Araújo",
)  # fmt: skip
COMPANY_STEMS = (
    "Nordwind", "Aurora", "Bluefin", "Castello", "Delta", "Everest", "Fjord", "Granite", "Helios",
    "Iberia", "Juniper", "Kestrel", "Lumen", "Meridian", "Nimbus", "Orchid", "Pioneer", "Quarry",
    "Riviera", "Solaris", "Tidewater", "Umbra", "Vertex", "Westwind", "Zenith",
)  # fmt: skip
COMPANY_KINDS = (
    ("Logistica S.p.A.", "Logistics", "Milano", "Italy"),
    ("GmbH", "Manufacturing", "München", "Germany"),
    ("Ltda.", "Retail", "São Paulo", "Brazil"),
    ("S.L.", "Hospitality", "Valencia", "Spain"),
    ("SAS", "Energy", "Lyon", "France"),
    ("Ltd", "Software", "Dublin", "Ireland"),
    ("Inc.", "Healthcare", "Boston", "United States"),
)
DEAL_KINDS = ("Annual licence", "Renewal", "Upsell", "Pilot", "Support plan", "Rollout phase 2")
DEAL_STAGES = ("Qualify", "Develop", "Propose", "Close")
PROSPECT_SOURCES = ("Web form", "Trade show", "Referral", "Campaign", "Partner")
PROSPECT_STATUSES = ("New", "Contacted", "Qualified", "Disqualified")

#: Names with apostrophes, ampersands and quotes, as a real CRM holds them (hostile text is the tests' business).
PUNCTUATED_NAMES = {
    "Account": ["Smith & Sons Holdings Ltd", "L'Atelier Chez Zoë SARL"],
    "Contact": ["Dana O'Neil", "Seán Ó Briain"],
    "Lead": ["Mary-Kate D'Angelo", "José María Núñez"],
    "Opportunity": ['Q3 renewal – "Premium" support & training', "Westwind – 15% upsell"],
}


@dataclasses.dataclass(frozen=True)
class DemoSummary:
    """What :func:`seed_demo` wrote."""

    records: int
    events: int
    errors: int
    queued: int
    parked: int


# -- host records -----------------------------------------------------------------------------


def _person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def _email(name: str, domain: str, rng: random.Random) -> str:
    local = name.lower().replace(" ", ".").encode("ascii", "ignore").decode() or "contact"
    return f"{local}{rng.randint(1, 99)}@{domain}"


def _host_rows(rng: random.Random, today: dt.date) -> dict[str, list[dict[str, object]]]:
    """Rows of the four synced host tables, keyed by object type (companies first: others refer to them)."""
    companies = []
    for index in range(118):
        suffix, industry, city, country = rng.choice(COMPANY_KINDS)
        stem = COMPANY_STEMS[index % len(COMPANY_STEMS)]
        name = f"{stem} {rng.choice(('', 'Group ', 'Systems ', 'Partners '))}{suffix}".replace("  ", " ")
        domain = f"{stem.lower()}{index}.example"
        companies.append(
            {"name": name, "industry": industry, "city": city, "country": country, "website": f"https://{domain}"}
        )
    companies += [
        {"name": n, "industry": "Services", "city": "London", "country": "United Kingdom", "website": None}
        for n in PUNCTUATED_NAMES["Account"]
    ]
    n_companies = len(companies)
    customers = []
    for _ in range(598):
        name = _person(rng)
        customers.append(
            {
                "name": name,
                "email": _email(name, "mail.example", rng),
                "phone": f"+39 02 {rng.randint(1000000, 9999999)}",
                "company_id": rng.randint(1, n_companies),
            }
        )
    customers += [{"name": n, "email": None, "phone": None, "company_id": 1} for n in PUNCTUATED_NAMES["Contact"]]
    prospects = []
    for _ in range(498):
        name = _person(rng)
        prospects.append(
            {
                "name": name,
                "company_name": f"{rng.choice(COMPANY_STEMS)} {rng.choice(COMPANY_KINDS)[0]}",
                "email": _email(name, "prospect.example", rng),
                "source": rng.choice(PROSPECT_SOURCES),
                "status": rng.choice(PROSPECT_STATUSES),
            }
        )
    prospects += [
        {"name": n, "company_name": None, "email": None, "source": "Web form", "status": "New"}
        for n in PUNCTUATED_NAMES["Lead"]
    ]
    deals = []
    for _ in range(248):
        company_id = rng.randint(1, n_companies)
        deals.append(
            {
                "name": f"{rng.choice(DEAL_KINDS)} – {companies[company_id - 1]['name']}",
                "company_id": company_id,
                "amount": Decimal(rng.randrange(2_000, 250_000, 500)),
                "stage": rng.choice(DEAL_STAGES),
                "close_date": today + dt.timedelta(days=rng.randint(-30, 120)),
            }
        )
    deals += [
        {"name": n, "company_id": 1, "amount": Decimal("9900"), "stage": "Propose", "close_date": today}
        for n in PUNCTUATED_NAMES["Opportunity"]
    ]
    return {"Account": companies, "Contact": customers, "Lead": prospects, "Opportunity": deals}


def _insert_host_records(conn: Connection, rng: random.Random, today: dt.date) -> dict[str, list[tuple[str, str]]]:
    """Insert the host's records (no tracking: Core inserts); return ``(id, label)`` per object, oldest first."""
    model_of = {object_type: model for model, object_type in SYNCED_MODELS.items()}
    records: dict[str, list[tuple[str, str]]] = {}
    for object_type, rows in _host_rows(rng, today).items():
        table = model_of[object_type].__table__
        conn.execute(sa.insert(table), rows)
        records[object_type] = [
            (str(row.id), row.name) for row in conn.execute(sa.select(table.c.id, table.c.name).order_by(table.c.id))
        ]
    return records


def _insert_users(conn: Connection) -> None:
    conn.execute(
        sa.insert(User.__table__),
        [
            {
                "username": name,
                "password_hash": generate_password_hash(password),
                "is_operator": operator,
                "timezone": tz,
            }
            for name, password, operator, tz in DEMO_USERS
        ],
    )


# -- history ----------------------------------------------------------------------------------


def office_curve(hour: dt.datetime) -> float:
    """Share of the peak rate in the UTC hour starting at ``hour``: busy office hours, quiet nights and weekends."""
    local = hour.replace(tzinfo=dt.timezone.utc).astimezone(OFFICE_TIMEZONE)
    by_hour = {7: 0.3, 8: 0.75, 9: 1.0, 10: 1.0, 11: 0.95, 12: 0.7, 13: 0.8, 14: 1.0, 15: 1.0, 16: 0.9, 17: 0.7,
               18: 0.45, 19: 0.25, 20: 0.15, 21: 0.1}  # fmt: skip
    share = by_hour.get(local.hour, 0.05)
    return share * (0.25 if local.weekday() >= 5 else 1.0)


def _count(rng: random.Random, mean: float) -> int:
    """A Poisson-like count around ``mean``."""
    if mean <= 0:
        return 0
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


def _hours(start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
    hour = start
    while hour < end:
        yield hour
        hour += HOUR


def _moment_in(rng: random.Random, hour: dt.datetime, now: dt.datetime) -> dt.datetime:
    """A random instant in the hour starting at ``hour``, never after ``now``."""
    span = min(HOUR, now - hour).total_seconds()
    return hour + dt.timedelta(seconds=rng.uniform(0, span))


def _latency_ms(rng: random.Random, busy: float) -> int:
    """Seconds to minutes from change to sync, longer when busy; a few records wait hours."""
    median_seconds = 4 + 90 * busy
    seconds = rng.lognormvariate(math.log(median_seconds), 0.9)
    if rng.random() < 0.005:
        seconds += rng.uniform(3600, 6 * 3600)
    return int(seconds * 1000)


def _events(
    rng: random.Random, records: dict[str, list[tuple[str, str]]], start: dt.datetime, now: dt.datetime, scale: float
) -> list[dict[str, object]]:
    rows = []
    for hour in _hours(start, now):
        busy = office_curve(hour)
        for flow in FLOWS:
            ids = records[flow.object_type]
            # Inserts concern the newer records; updates any of them.
            pool = ids[len(ids) // 2 :] if flow.operation == "insert" else ids
            for _ in range(_count(rng, flow.peak_per_hour * busy * scale)):
                rows.append(
                    {
                        "object_type": flow.object_type,
                        "record_id": rng.choice(pool)[0],
                        "operation": flow.operation,
                        "direction": flow.direction,
                        "synced_at": _moment_in(rng, hour, now),
                        "latency_ms": _latency_ms(rng, busy),
                    }
                )
    return rows


class _History:
    """Errors and the queue rows they leave behind, kept consistent with each other."""

    def __init__(
        self, recorder: Recorder, rng: random.Random, records: dict[str, list[tuple[str, str]]], now: dt.datetime
    ) -> None:
        self.recorder = recorder
        self.rng = rng
        self.records = records
        self.now = now
        self.errors: list[dict[str, object]] = []
        self.queue: dict[tuple[str, str, str], dict[str, object]] = {}

    def error(self, object_type: str, record: tuple[str, str], operation: str, direction: str, at: dt.datetime,
              code: str, message: str, attempt: int, state: str) -> None:  # fmt: skip
        changed = None
        if state != ErrorState.OPEN.value:
            changed = min(self.now, at + dt.timedelta(minutes=self.rng.uniform(2, 240)))
        self.errors.append(
            {
                "object_type": object_type, "record_id": record[0], "record_label": record[1],
                "operation": operation, "direction": direction, "error_code": code, "error_message": message,
                "occurred_at": at, "attempt": attempt, "state": state, "state_changed_at": changed,
            }
        )  # fmt: skip

    def enqueue(self, object_type: str, record: tuple[str, str], operation: str, direction: str,
                queued_at: dt.datetime, *, attempts: int = 0, parked: bool = False,
                not_before: dt.datetime | None = None) -> bool:  # fmt: skip
        """Add a queue row unless the record already waits in that direction."""
        key = (object_type, record[0], direction)
        if key in self.queue:
            return False
        row = self.recorder.queue_row(Change(object_type, record[0], operation, direction, record[1]), queued_at)
        changes = 1 if operation == "insert" else self.rng.choice((1, 1, 1, 2, 3))
        row.update(
            changed_at=min(self.now, queued_at + dt.timedelta(minutes=self.rng.uniform(0, 20) * (changes - 1))),
            change_count=changes,
            attempts=attempts,
            state=QueueState.PARKED.value if parked else QueueState.PENDING.value,
            not_before=not_before or queued_at,
        )
        self.queue[key] = row
        return True

    def candidates(self, object_type: str, operation: str) -> list[tuple[str, str]]:
        """Records an operation can concern: inserts are about the newest third."""
        ids = self.records[object_type]
        return ids[-(len(ids) // 3) :] if operation == "insert" else ids

    def pick_record(self, object_type: str, operation: str) -> tuple[str, str]:
        return self.rng.choice(self.candidates(object_type, operation))

    def settled_errors(self, start: dt.datetime, scale: float) -> None:
        """Failures spread over the history that were since resolved or ignored."""
        rng = self.rng
        permanent = 0
        for hour in _hours(start, self.now - 6 * HOUR):
            for flow in FLOWS:
                for _ in range(_count(rng, flow.peak_per_hour * office_curve(hour) * scale * 0.012)):
                    record = self.pick_record(flow.object_type, flow.operation)
                    code, message, retry = pick_error(rng, flow.object_type, flow.operation)
                    at = _moment_in(rng, hour, self.now)
                    # Throttled records went through on a later try; of the others,
                    # every third was ignored and the rest fixed and resynced.
                    ignored = not retry and permanent % 3 == 0
                    state = ErrorState.IGNORED.value if ignored else ErrorState.RESOLVED.value
                    self.error(flow.object_type, record, flow.operation, flow.direction, at, code, message, 1, state)
                    permanent += not retry

    def throttling_burst(self) -> None:
        """Yesterday at 10:00 in Milan, the service protection limits kicked in for twenty minutes."""
        local_now = self.now.replace(tzinfo=dt.timezone.utc).astimezone(OFFICE_TIMEZONE)
        burst_local = (local_now - dt.timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
        burst = burst_local.astimezone(dt.timezone.utc).replace(tzinfo=None)
        limit = next(e for e in CATALOGUE if e.code == "0x80072322")
        for _ in range(80):
            flow = self.rng.choice(FLOWS)
            record = self.pick_record(flow.object_type, flow.operation)
            at = burst + dt.timedelta(seconds=self.rng.uniform(0, 1200))
            message = limit.message(flow.object_type, flow.operation, self.rng)
            self.error(flow.object_type, record, flow.operation, flow.direction, at, limit.code, message,
                       self.rng.choice((1, 1, 2)), ErrorState.RESOLVED.value)  # fmt: skip

    def free_record(self, object_type: str, operation: str, direction: str) -> tuple[str, str]:
        """A record that does not wait in ``direction`` yet."""
        while True:
            record = self.pick_record(object_type, operation)
            if (object_type, record[0], direction) not in self.queue:
                return record

    def recent_failures(self, count: int) -> None:
        """Failures of the last hours still being dealt with: open, retried or parked.

        Every code of the catalogue and every punctuated name shows up at least once.
        Every fourth permanent failure was retried by an operator first.
        """
        rng = self.rng
        punctuated = [(o, r) for o, names in PUNCTUATED_NAMES.items() for r in self.records[o] if r[1] in names]
        permanent = 0
        for index in range(max(count, len(CATALOGUE), len(punctuated))):
            if index < len(CATALOGUE):
                error = CATALOGUE[index]
            else:
                error = rng.choices(CATALOGUE, weights=[e.weight for e in CATALOGUE])[0]
            flow = rng.choice([f for f in FLOWS if f.operation in error.operations])
            object_type, operation, direction = flow.object_type, flow.operation, flow.direction
            if index < len(punctuated):
                object_type, record = punctuated[index]
                operation, direction = error.operations[-1], TO
            else:
                record = self.free_record(object_type, operation, direction)
            code, message, retry = error.code, error.message(object_type, operation, rng), error.retry
            at = self.now - dt.timedelta(minutes=rng.expovariate(1 / 240))
            if retry:
                # Throttled: still pending, its next try after the backoff.
                attempts = rng.randint(1, 4)
                self.enqueue(object_type, record, operation, direction, at - dt.timedelta(minutes=2),
                             attempts=attempts, not_before=at + self.recorder.retry_delay(attempts))  # fmt: skip
                self.error(
                    object_type, record, operation, direction, at, code, message, attempts, ErrorState.OPEN.value
                )
            elif permanent % 4 == 0:
                # An operator asked for a retry; the record waited again and failed once more.
                first = at - dt.timedelta(hours=rng.uniform(1, 20))
                self.enqueue(object_type, record, operation, direction, first, attempts=2, parked=True,
                             not_before=at + self.recorder.retry_delay(2))  # fmt: skip
                self.error(object_type, record, operation, direction, first, code, message, 1, ErrorState.RETRIED.value)
                self.error(object_type, record, operation, direction, at, code, message, 2, ErrorState.OPEN.value)
            else:
                self.enqueue(object_type, record, operation, direction, at - dt.timedelta(minutes=1), attempts=1,
                             parked=True, not_before=at + self.recorder.retry_delay(1))  # fmt: skip
                self.error(object_type, record, operation, direction, at, code, message, 1, ErrorState.OPEN.value)
            permanent += not retry

    def backlog(self, scale: float) -> None:
        """Records waiting now: mostly minutes old, some hours, a few stuck for days."""
        rng = self.rng
        for (object_type, operation, direction), size in BACKLOG.items():
            free = [
                record
                for record in self.candidates(object_type, operation)
                if (object_type, record[0], direction) not in self.queue
            ]
            for record in rng.sample(free, min(len(free), max(1, round(size * scale)))):
                roll = rng.random()
                if roll < 0.7:
                    age = dt.timedelta(minutes=rng.expovariate(1 / 12))
                elif roll < 0.96:
                    age = dt.timedelta(minutes=rng.uniform(30, 360))
                else:
                    age = dt.timedelta(hours=rng.uniform(6, 72))
                self.enqueue(object_type, record, operation, direction, self.now - age)

    def snapshots(self) -> list[dict[str, object]]:
        """Hourly backlog snapshots of the last day, drifting towards today's backlog."""
        pending = Counter(
            (row["object_type"], row["operation"], row["direction"])
            for row in self.queue.values()
            if row["state"] == QueueState.PENDING.value
        )
        rows = []
        current_hour = self.now.replace(minute=0, second=0, microsecond=0)
        for hours_back in range(24, -1, -1):
            taken_at = current_hour - hours_back * HOUR
            age_hours = (self.now - taken_at) / HOUR
            for (object_type, operation, direction), count in pending.items():
                # Linear in time: the backlog was ``ratio_6h`` times today's six hours ago.
                ratio_6h = BACKLOG_SIX_HOURS_AGO.get(object_type, 1.0)
                ratio = max(0.05, 1 + (ratio_6h - 1) * age_hours / 6) * self.rng.uniform(0.97, 1.03)
                rows.append(
                    {
                        "taken_at": taken_at,
                        "object_type": object_type,
                        "operation": operation,
                        "direction": direction,
                        "pending_count": round(count * ratio),
                    }
                )
        return rows


# -- entry points -----------------------------------------------------------------------------


def seed_demo(
    recorder: Recorder,
    conn: Connection,
    *,
    now: dt.datetime,
    rng: random.Random,
    days: int = 7,
    scale: float = 1.0,
) -> DemoSummary:
    """Write the demo data on ``conn`` (inside the caller's transaction); see the module docstring.

    Queue rows are built by the plugin's ``recorder`` (validated like any enqueue).
    ``scale`` multiplies the volumes (tests use a small one). The hourly
    rollup is not run here: it needs the data committed.
    """
    _insert_users(conn)
    records = _insert_host_records(conn, rng, now.date())
    start = (now - dt.timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    events = _events(rng, records, start, now, scale)
    history = _History(recorder, rng, records, now)
    history.settled_errors(start, scale)
    history.throttling_burst()
    history.recent_failures(max(sum(map(len, PUNCTUATED_NAMES.values())), round(90 * scale)))
    history.backlog(scale)
    for table, rows in (
        (SyncEvent.__table__, events),
        (SyncError.__table__, history.errors),
        (QueueItem.__table__, list(history.queue.values())),
        (BacklogSnapshot.__table__, history.snapshots()),
    ):
        if rows:
            conn.execute(sa.insert(table), rows)
    parked = sum(1 for row in history.queue.values() if row["state"] == QueueState.PARKED.value)
    return DemoSummary(
        records=sum(len(ids) for ids in records.values()),
        events=len(events),
        errors=len(history.errors),
        queued=len(history.queue),
        parked=parked,
    )


def ensure_demo_data(
    sync: DynamicsSync, *, seed: int = 2026, days: int = 7, scale: float = 1.0
) -> DemoSummary | None:
    """Seed the demo data if the database has no users yet; return what was written, or ``None``.

    Runs in the application context. The history is then rolled up into the hourly
    table with the plugin's own rollup, exactly as its scheduler would.
    """
    from .models import db

    with db.engine.connect() as conn:
        if conn.scalar(sa.select(sa.func.count()).select_from(User.__table__)):
            return None
    now = sync.now()
    with db.engine.begin() as conn:
        recorder = current_app.extensions["dynamics_sync"].recorder
        summary = seed_demo(recorder, conn, now=now, rng=random.Random(seed), days=days, scale=scale)
    start = (now - dt.timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    sync.rollup(start, now)
    return summary
