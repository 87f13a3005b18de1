"""The Sync Status figures (status_data) on the known data set, on every database.

The data set is described in ``conftest.status_dataset``; the clock stands at
Tuesday 2026-03-10 14:20 UTC, so the last full hour is 13:00-14:00 and the
metrics window is 2026-03-09 14:00 to 2026-03-10 14:00.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from flask_dynamics_sync import Direction
from flask_dynamics_sync import status_data
from flask_dynamics_sync import status_json
from flask_dynamics_sync.models import HourlyThroughput
from flask_dynamics_sync.status_data import BacklogRow
from flask_dynamics_sync.status_data import LastHourRow
from flask_dynamics_sync.status_data import Trend

from .conftest import NOW
from .conftest import hourly_row
from .conftest import insert_rows

pytestmark = pytest.mark.usefixtures("status_dataset")


def at(hour: int, minute: int = 0, day: int = 10) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, minute)


@pytest.fixture
def conn(sync):
    with sync.engine.connect() as connection:
        yield connection


# -- backlog ----------------------------------------------------------------------------


def test_backlog_lists_every_configured_object_in_order_with_pending_counts_and_oldest_age(conn, sync):
    backlog = status_data.backlog(conn, sync.settings, NOW)

    assert backlog.rows == (
        BacklogRow("Lead", "Lead", 2, 2, at(11, 20), 10800.0),
        BacklogRow("Contact", "Contact", 0, 1, at(13, 35), 2700.0),
        BacklogRow("Account", "Account", 0, 0, None, None),
        BacklogRow("Opportunity", "Opportunity", 1, 0, at(14, 10), 600.0),
    )


def test_backlog_totals_add_up_and_keep_the_overall_oldest(conn, sync):
    total = status_data.backlog(conn, sync.settings, NOW).total

    assert (total.object_type, total.inserts, total.updates, total.total) == (None, 3, 3, 6)
    assert (total.oldest_queued_at, total.oldest_age_seconds) == (at(11, 20), 10800.0)


def test_backlog_ages_follow_the_injected_clock(conn, sync, clock):
    later = clock.advance(hours=1)

    assert status_data.backlog(conn, sync.settings, later).row("Lead").oldest_age_seconds == 14400.0


def test_backlog_follows_configured_order_and_labels_and_lists_unconfigured_waiting_objects_last(conn, sync):
    settings = dataclasses.replace(sync.settings, objects={"Contact": "Contacts", "Lead": "Leads"})

    backlog = status_data.backlog(conn, settings, NOW)

    assert [(r.object_type, r.label, r.inserts, r.updates) for r in backlog.rows] == [
        ("Contact", "Contacts", 0, 1),
        ("Lead", "Leads", 2, 2),
        ("Opportunity", "Opportunity", 1, 0),
    ]
    assert backlog.total.total == 6


def test_backlog_split_by_direction_for_the_gauges(conn):
    groups = status_data.backlog_groups(conn, by_direction=True)

    assert sorted((g.object_type, g.operation.value, g.direction.value, g.pending) for g in groups) == [
        ("Contact", "update", "to_dynamics", 1),
        ("Lead", "insert", "to_dynamics", 2),
        ("Lead", "update", "from_dynamics", 1),
        ("Lead", "update", "to_dynamics", 1),
        ("Opportunity", "insert", "to_dynamics", 1),
    ]


# -- details ----------------------------------------------------------------------------


def test_details_split_pending_inserts_and_updates(conn, sync):
    details = status_data.object_details(conn, sync.settings, NOW, "Lead")

    assert (details.backlog.inserts, details.backlog.updates) == (2, 2)


def test_details_name_the_oldest_insert_and_update_records(conn, sync):
    details = status_data.object_details(conn, sync.settings, NOW, "Lead")

    insert, update = details.oldest_insert, details.oldest_update
    assert (insert.record_id, insert.label, insert.queued_at, insert.age_seconds, insert.direction) == (
        "L-1", "Ada Lovelace", at(11, 20), 10800.0, Direction.TO_DYNAMICS,
    )
    assert (update.record_id, update.label, update.queued_at, update.age_seconds) == (
        "L-3", "Grace Hopper", at(12, 20), 7200.0,
    )


def test_details_of_an_object_without_pending_updates_has_no_oldest_update(conn, sync):
    details = status_data.object_details(conn, sync.settings, NOW, "Opportunity")

    assert details.oldest_update is None
    assert (details.oldest_insert.record_id, details.oldest_insert.claimed) == ("O-1", True)


def test_details_leave_parked_records_to_the_errors_view(conn, sync):
    details = status_data.object_details(conn, sync.settings, NOW, "Account")

    assert (details.backlog.total, details.oldest_insert, details.oldest_update) == (0, None, None)


# -- last hour --------------------------------------------------------------------------


def test_last_hour_counts_records_synced_per_object_in_the_last_full_hour(conn, sync):
    last = status_data.last_hour(conn, sync.settings, NOW)

    assert (last.start, last.end) == (at(13), at(14))
    assert last.rows == (
        LastHourRow("Lead", "Lead", 60, 2),
        LastHourRow("Contact", "Contact", 7, 0),
        LastHourRow("Account", "Account", 0, 0),
        LastHourRow("Opportunity", "Opportunity", 0, 0),
    )
    assert (last.total.synced, last.total.failed) == (67, 2)


@pytest.mark.parametrize(
    ("now", "hour", "lead"),
    [
        (at(14, 0), at(13), 60),
        (dt.datetime(2026, 3, 10, 14, 59, 59), at(13), 60),
        (at(15, 0), at(14), 3),
    ],
    ids=["14:00:00", "14:59:59", "15:00:00"],
)
def test_the_last_full_hour_changes_exactly_on_the_hour(conn, sync, now, hour, lead):
    last = status_data.last_hour(conn, sync.settings, now)

    assert (last.start, last.rows[0].synced) == (hour, lead)


def test_events_a_second_apart_across_the_hour_land_in_different_hours(app, conn, sync, db, clock):
    from flask_dynamics_sync.models import SyncEvent
    from flask_dynamics_sync.rollup import roll_up

    insert_rows(db, SyncEvent, [
        {"object_type": "Account", "record_id": "x", "operation": "insert", "direction": "to_dynamics",
         "synced_at": dt.datetime(2026, 3, 10, 14, 59, 59), "latency_ms": 5},
        {"object_type": "Account", "record_id": "y", "operation": "insert", "direction": "to_dynamics",
         "synced_at": dt.datetime(2026, 3, 10, 15, 0, 0), "latency_ms": 5},
    ])
    with sync.engine.begin() as rollup_conn:
        roll_up(rollup_conn, now=at(16, 5), window_hours=3, start=at(14), end=at(16))

    at_15 = status_data.last_hour(conn, sync.settings, at(15, 0))
    at_16 = status_data.last_hour(conn, sync.settings, at(16, 0))
    assert (at_15.start, at_15.rows[2].synced) == (at(14), 1)
    assert (at_16.start, at_16.rows[2].synced) == (at(15), 1)


# -- history ----------------------------------------------------------------------------


def test_history_covers_seven_days_of_hours_ending_with_the_current_one(conn, sync):
    history = status_data.throughput_history(conn, sync.settings, NOW)

    assert (len(history.hours), history.hours[0], history.hours[-1]) == (168, at(15, day=3), at(14))
    assert history.partial_last is True


def test_history_is_per_object_and_direction_with_zero_filled_hours(conn, sync):
    history = status_data.throughput_history(conn, sync.settings, NOW)

    lead_to = history.series[("Lead", Direction.TO_DYNAMICS)]
    lead_from = history.series[("Lead", Direction.FROM_DYNAMICS)]
    assert lead_to[-4:] == (0, 99, 55, 3)
    assert lead_from[-4:] == (0, 0, 5, 0)
    assert (lead_to[-25], lead_to[-26], sum(lead_to)) == (21, 500, 678)
    assert set(history.series) == {(o, d) for o in ("Lead", "Contact", "Account", "Opportunity") for d in Direction}


# -- metrics ----------------------------------------------------------------------------


def test_metrics_max_min_average_over_the_last_24_full_hours(conn, sync):
    metrics = status_data.backlog_metrics(conn, sync.settings, NOW)

    assert (metrics.window_start, metrics.window_end) == (at(14, day=9), at(14))
    assert [(r.object_type, r.max_per_hour, r.min_per_hour, r.avg_per_hour) for r in metrics.rows] == [
        ("Lead", 99, 0, 7.5),
        ("Contact", 7, 0, 7 / 24),
        ("Account", 0, 0, 0.0),
        ("Opportunity", 0, 0, 0.0),
    ]
    total = metrics.total
    assert (total.max_per_hour, total.min_per_hour, total.avg_per_hour) == (99, 0, 187 / 24)


def test_metrics_time_to_drain_is_backlog_over_average_per_hour(conn, sync):
    metrics = status_data.backlog_metrics(conn, sync.settings, NOW)

    assert [(r.object_type, r.backlog, r.drain_hours) for r in metrics.rows] == [
        ("Lead", 4, 4 / 7.5),
        ("Contact", 1, 1 / (7 / 24)),
        ("Account", 0, 0.0),  # nothing waits
        ("Opportunity", 1, None),  # nothing synced: it cannot be estimated
    ]
    assert metrics.total.drain_hours == pytest.approx(6 / (187 / 24))


def test_metrics_status_compares_with_the_latest_snapshot_at_least_six_hours_old(conn, sync):
    metrics = status_data.backlog_metrics(conn, sync.settings, NOW)

    assert metrics.compared_with == at(7, 20)
    assert [(r.object_type, r.backlog, r.backlog_6h_ago, r.status) for r in metrics.rows] == [
        ("Lead", 4, 4, Trend.NORMAL),
        ("Contact", 1, 0, Trend.GROWING),
        ("Account", 0, 0, Trend.NORMAL),
        ("Opportunity", 1, 2, Trend.NORMAL),
    ]
    assert (metrics.total.backlog, metrics.total.backlog_6h_ago, metrics.total.status) == (6, 6, Trend.NORMAL)


def test_a_snapshot_exactly_six_hours_old_is_the_one_compared_with(conn, sync):
    exactly = status_data.backlog_metrics(conn, sync.settings, at(13, 20))
    a_minute_less = status_data.backlog_metrics(conn, sync.settings, at(13, 19))

    assert (exactly.compared_with, exactly.row("Lead").backlog_6h_ago) == (at(7, 20), 4)
    assert (a_minute_less.compared_with, a_minute_less.row("Lead").backlog_6h_ago) == (at(5, 20), 9)


def test_without_a_snapshot_six_hours_back_the_status_is_normal_and_the_comparison_missing(conn, sync):
    metrics = status_data.backlog_metrics(conn, sync.settings, at(11, 19))

    assert metrics.compared_with is None
    assert [(r.object_type, r.backlog_6h_ago, r.status) for r in metrics.rows] == [
        ("Lead", None, Trend.NORMAL),
        ("Contact", None, Trend.NORMAL),
        ("Account", None, Trend.NORMAL),
        ("Opportunity", None, Trend.NORMAL),
    ]


def test_metrics_say_when_the_rollup_ran_and_runs_next(conn, sync):
    rollup = status_data.backlog_metrics(conn, sync.settings, NOW).rollup

    assert (rollup.last_finished_at, rollup.next_run_at, rollup.last_status) == (
        dt.datetime(2026, 3, 10, 14, 0, 30), at(15), "ok",
    )


def test_metrics_reuse_the_page_history_and_backlog(conn, sync):
    report = status_data.status_report(conn, sync.settings, NOW)

    assert report.metrics == status_data.backlog_metrics(conn, sync.settings, NOW)


def test_a_late_hourly_row_changes_the_figures_on_the_next_read(conn, sync, db):
    insert_rows(db, HourlyThroughput, [hourly_row(at(13), "Account", "insert", "to_dynamics", 12)])

    assert status_data.last_hour(conn, sync.settings, NOW).total.synced == 79


# -- JSON -------------------------------------------------------------------------------


def test_the_json_document_carries_every_panel(conn, sync):
    document = status_json.report_jsonable(status_data.status_report(conn, sync.settings, NOW))

    assert document["generated_at"] == "2026-03-10T14:20:00Z"
    assert document["backlog"]["rows"][0] == {
        "object_type": "Lead", "label": "Lead", "inserts": 2, "updates": 2, "total": 4,
        "oldest_queued_at": "2026-03-10T11:20:00Z", "oldest_age_seconds": 10800.0,
    }
    assert document["backlog"]["total"]["total"] == 6
    assert (document["last_hour"]["start"], document["last_hour"]["end"]) == ("2026-03-10T13:00:00Z", "2026-03-10T14:00:00Z")
    assert document["last_hour"]["total"] == {"object_type": None, "label": "", "synced": 67, "failed": 2}
    assert document["metrics"]["rows"][1] == {
        "object_type": "Contact", "label": "Contact", "backlog": 1, "backlog_6h_ago": 0,
        "max_per_hour": 7, "min_per_hour": 0, "avg_per_hour": 7 / 24, "drain_hours": 1 / (7 / 24),
        "status": "growing",
    }
    assert (document["metrics"]["computed_at"], document["metrics"]["next_at"]) == (
        "2026-03-10T14:00:30Z", "2026-03-10T15:00:00Z",
    )
    assert len(document["history"]["hours"]) == 168
    assert document["history"]["series"][0]["synced"][-3:] == [99, 55, 3]
