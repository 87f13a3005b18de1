"""The Sync Status pages over HTTP: backlog, Last Hour, details, metrics, JSON, Prometheus, embedding.

English, UTC (no Flask-Babel time zone selector); the data set is
``conftest.status_dataset`` and the clock stands at 2026-03-10 14:20 UTC.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import jinja2
import pytest
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from .conftest import add_strict_csp
from .conftest import csp_nonce

STATUS = "/admin/dynamics/status/"

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    """A light DOM node, enough to read tables and cards."""

    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        """The text content, every run of whitespace (narrow no-break spaces too) as one space."""
        raw = "".join(c if isinstance(c, str) else c.text() for c in self.children)
        return re.sub(r"\s+", " ", raw).strip()

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        def matches(node: Node, key: str, value: str) -> bool:
            name = key.rstrip("_").replace("_", "-")
            if name == "class":
                return value in (node.attrs.get("class") or "").split()
            return node.attrs.get(name) == value

        return [
            n for n in self.iter()
            if (tag is None or n.tag == tag) and all(matches(n, k, v) for k, v in attrs.items())
        ]

    def find(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag} {attrs}>"
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = self.current = Node("#document", {}, None)

    def handle_starttag(self, tag, attrs):  # noqa: ANN001, ANN201
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):  # noqa: ANN001, ANN201
        self.current.children.append(Node(tag, dict(attrs), self.current))

    def handle_endtag(self, tag):  # noqa: ANN001, ANN201
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):  # noqa: ANN001, ANN201
        self.current.children.append(data)


def parse(html: str | bytes) -> Node:
    builder = _Builder()
    builder.feed(html.decode() if isinstance(html, bytes) else html)
    return builder.root


def table(page: Node, table_id: str) -> list[list[str]]:
    """Cell texts of the table, header and totals included."""
    return [[cell.text() for cell in row.iter() if cell.tag in ("th", "td")] for row in page.find("table", id=table_id).find_all("tr")]


def card(page: Node, field: str) -> dict[str, str]:
    """The term → description pairs of a details card."""
    terms = page.find(data_ds_field=field).find_all("dt")
    return {dt_.text(): dd.text() for dt_, dd in zip(terms, page.find(data_ds_field=field).find_all("dd"))}


@pytest.fixture
def get(client, status_dataset):
    def fetch(url: str, status: int = 200):
        response = client.get(url)
        assert response.status_code == status, response.data[:2000]
        return response

    return fetch


# -- Backlog ----------------------------------------------------------------------------


def test_the_default_view_is_the_backlog_table(get):
    page = parse(get(STATUS).data)

    assert table(page, "ds-backlog") == [
        ["Object", "Inserts", "Updates", "Oldest waiting", "Errors"],
        ["Lead", "2", "2", "3 hours", "Open errors"],
        ["Contact", "0", "1", "45 minutes", "Open errors"],
        ["Account", "0", "0", "—", "Open errors"],
        ["Opportunity", "1", "0", "10 minutes", "Open errors"],
        ["Total", "3", "3", "3 hours", "Open errors"],
    ]


def test_the_view_selector_offers_backlog_and_last_hour_with_the_current_one_selected(get):
    select = parse(get(STATUS + "?view=last_hour").data).find("select", id="ds-view")

    assert [(o.attrs["value"], o.text(), "selected" in o.attrs) for o in select.find_all("option")] == [
        ("backlog", "Backlog", False),
        ("last_hour", "Last Hour", True),
    ]
    assert select.parent.find("label").text() == "View:"


def test_an_unknown_view_shows_the_backlog(get):
    page = parse(get(STATUS + "?view=nonsense").data)

    assert page.find_all("table", id="ds-backlog") and not page.find_all("table", id="ds-last-hour")


def test_each_row_and_its_link_lead_to_the_objects_details(get):
    rows = parse(get(STATUS).data).find("table", id="ds-backlog").find_all("tr", class_="ds-row")

    assert [(r.attrs["data-ds-href"], r.find("a").attrs["href"]) for r in rows] == [
        (f"{STATUS}details/{name}", f"{STATUS}details/{name}") for name in ("Lead", "Contact", "Account", "Opportunity")
    ]


# -- Last Hour --------------------------------------------------------------------------


def test_last_hour_shows_records_synced_per_object_and_na_for_inserts_and_updates(get):
    page = parse(get(STATUS + "?view=last_hour").data)

    assert table(page, "ds-last-hour") == [
        ["Object", "Inserts", "Updates", "Records synced", "Failed attempts", "Errors"],
        ["Lead", "N/A", "N/A", "60", "2", "Open errors"],
        ["Contact", "N/A", "N/A", "7", "0", "Open errors"],
        ["Account", "N/A", "N/A", "0", "0", "Open errors"],
        ["Opportunity", "N/A", "N/A", "0", "0", "Open errors"],
        ["Total", "N/A", "N/A", "67", "2", "Open errors"],
    ]


def test_last_hour_names_the_hour_in_the_viewers_clock(get):
    text = parse(get(STATUS + "?view=last_hour").data).find("p", class_="ds-hour").text()

    assert text == "Records synced in the last full hour: 1:00 – 2:00 PM"


def test_last_hour_in_another_time_zone(make_app, db_url, status_dataset):
    app = make_app(db_url, config={"DYNAMICS_SYNC_TIMEZONE": "Asia/Kolkata"})
    text = parse(app.test_client().get(STATUS + "?view=last_hour").data).find("p", class_="ds-hour").text()

    assert text == "Records synced in the last full hour: 6:30 – 7:30 PM"


def test_details_links_keep_the_last_hour_view(get):
    row = parse(get(STATUS + "?view=last_hour").data).find("tr", class_="ds-row")

    assert row.attrs["data-ds-href"] == f"{STATUS}details/Lead?view=last_hour"


# -- details ----------------------------------------------------------------------------


def test_details_show_pending_inserts_and_updates_separately(get):
    page = parse(get(STATUS + "details/Lead").data)

    assert page.find(data_ds_field="pending-inserts").text() == "2"
    assert page.find(data_ds_field="pending-updates").text() == "2"


def test_details_show_the_oldest_insert_and_update_records(get):
    page = parse(get(STATUS + "details/Lead").data)

    assert card(page, "oldest-insert") == {
        "Record ID": "L-1",
        "Label": "Ada Lovelace",
        "Direction": "To Dynamics",
        "Waiting since": "3 hours ago",
        "Failed attempts": "0",
    }
    assert card(page, "oldest-update")["Record ID"] == "L-3"
    assert card(page, "oldest-update")["Waiting since"] == "2 hours ago"


def test_details_say_when_nothing_waits_and_when_a_record_is_being_synced(get):
    page = parse(get(STATUS + "details/Opportunity").data)

    assert page.find(data_ds_field="oldest-update").find(class_="card-body").text() == "Nothing waiting."
    assert card(page, "oldest-insert")["Failed attempts"] == "0 Being synced now"


def test_details_show_the_objects_metrics_and_history(get):
    page = parse(get(STATUS + "details/Contact").data)

    assert table(page, "ds-metrics")[1] == ["Contact", "1", "0", "7", "0", "0.3", "3 hours", "Growing"]
    assert [f.find("figcaption").text() for f in page.find_all("figure")] == [
        "Contact · Last 24 hours",
        "Contact · Last 7 days",
    ]


def test_details_of_an_unknown_object_are_not_found(get):
    get(STATUS + "details/Unicorn", status=404)


def test_details_back_link_returns_to_the_same_view(get):
    page = parse(get(STATUS + "details/Lead?view=last_hour").data)

    assert page.find("a", id="ds-back").attrs["href"] == STATUS + "?view=last_hour"


# -- metrics panel ----------------------------------------------------------------------


def test_the_metrics_panel_on_the_page(get):
    page = parse(get(STATUS).data)

    assert table(page, "ds-metrics") == [
        ["Object", "Backlog", "6 hours ago", "Max per hour", "Min per hour", "Average per hour", "Time to drain", "Status"],
        ["Lead", "4", "4", "99", "0", "7.5", "32 minutes", "Normal"],
        ["Contact", "1", "0", "7", "0", "0.3", "3 hours", "Growing"],
        ["Account", "0", "0", "0", "0", "0", "—", "Normal"],
        ["Opportunity", "1", "2", "0", "0", "0", "Not draining", "Normal"],
        ["Total", "6", "6", "99", "0", "7.8", "46 minutes", "Normal"],
    ]


def test_the_metrics_panel_says_when_figures_were_computed_and_will_be_next(get):
    notes = [li.text() for li in parse(get(STATUS).data).find("ul", class_="ds-metrics-note").find_all("li")]

    assert notes[2] == "Hourly figures computed Mar 10, 2026, 2:00:30 PM. Next computation: Mar 10, 2026, 3:00:00 PM."
    assert notes[1] == "Growing: the backlog is bigger than at 3/10/26, 7:20 AM (the latest snapshot at least 6 hours old)."


# -- history ----------------------------------------------------------------------------


def test_history_charts_all_objects_over_24_hours_and_7_days_then_each_object_over_24_hours(get):
    page = parse(get(STATUS).data)

    assert [f.find("figcaption").text() for f in page.find_all("figure")] == [
        "All objects · Last 24 hours",
        "All objects · Last 7 days",
        "Lead · Last 24 hours",
        "Contact · Last 24 hours",
        "Account · Last 24 hours",
        "Opportunity · Last 24 hours",
    ]


def test_hovering_a_bar_tells_its_hour_and_counts(get):
    lead = parse(get(STATUS).data).find("figure", data_ds_object="Lead")
    bars = lead.find_all("g", class_="ds-bar")

    assert len(bars) == 24
    assert bars[-2].find("title").text() == (
        "Tue 1:00 – 2:00 PM: 60 To Dynamics: 55 From Dynamics: 5"
    )
    assert bars[-1].attrs["class"] == "ds-bar ds-partial"


# -- JSON and Prometheus ----------------------------------------------------------------


def test_json_serves_the_same_figures(get, sync):
    from flask_dynamics_sync import status_json

    response = get(STATUS + "json")

    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    with sync.engine.connect() as conn:
        expected = status_json.status_document(conn, sync.settings, sync.now())
    assert response.get_json() == expected


def test_prometheus_exposition(get):
    response = get(STATUS + "metrics")

    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    lines = response.get_data(as_text=True).splitlines()
    assert 'dynamics_sync_backlog_records{object="Lead",operation="update",direction="from_dynamics"} 1' in lines
    assert 'dynamics_sync_oldest_pending_age_seconds{object="Lead",operation="insert",direction="to_dynamics"} 10800' in lines
    assert 'dynamics_sync_last_hour_synced_records{object="Lead",operation="update",direction="to_dynamics"} 15' in lines


# -- access, embedding, safety ----------------------------------------------------------


@pytest.mark.parametrize("path", ["", "?view=last_hour", "details/Lead", "json", "metrics"])
def test_every_url_is_behind_the_hosts_access_check(make_app, db_url, path):
    app = make_app(db_url, sync_kwargs={"can_view": lambda: False})

    assert app.test_client().get(STATUS + path).status_code == 403


def test_the_view_works_at_another_admin_url_with_a_custom_base_template(make_app, db_url, status_dataset):
    theme = Bootstrap4Theme(base_template="host/base.html")
    app = make_app(db_url, admin=Admin(name="Console", url="/console", endpoint="console", theme=theme))
    app.jinja_loader = jinja2.DictLoader({
        "host/base.html": '{% extends "admin/base.html" %}{% block brand %}<span id="host-brand">ACME</span>{% endblock %}'
    })

    page = parse(app.test_client().get("/console/dynamics/status/").data)

    assert page.find(id="host-brand").text() == "ACME"
    assert page.find("tr", class_="ds-row").attrs["data-ds-href"] == "/console/dynamics/status/details/Lead"
    assert page.find("form", id="ds-view-form").attrs["action"] == "/console/dynamics/status/"


def test_the_view_works_in_a_second_admin(app, sync, client, status_dataset):
    second = Admin(app, name="Second", url="/second", endpoint="second")
    sync.add_views(second, app=app)

    page = parse(client.get("/second/dynamics/status/?view=last_hour").data)

    assert table(page, "ds-last-hour")[-1] == ["Total", "N/A", "N/A", "67", "2", "Open errors"]
    assert page.find("tr", class_="ds-row").attrs["data-ds-href"] == "/second/dynamics/status/details/Lead?view=last_hour"
    assert page.find("a", class_="ds-object-errors").attrs["href"] == "/second/dynamics/errors/?flt0_0=Lead"
    assert client.get("/second/dynamics/status/json").status_code == 200


def test_labels_and_record_data_are_escaped(make_app, db_url):
    app = make_app(db_url, config={"DYNAMICS_SYNC_OBJECTS": {"Lead": "<i>Leads</i>"}})
    with app.app_context():
        app.extensions["dynamics_sync"].extension.enqueue("Lead", "<b>1</b>", "insert", label="<script>x</script>")
        app.extensions["test_db"].session.commit()
    client = app.test_client()

    page = client.get(STATUS).get_data(as_text=True)
    details = client.get(STATUS + "details/Lead").get_data(as_text=True)

    assert "<i>Leads</i>" not in page and "&lt;i&gt;Leads&lt;/i&gt;" in page
    assert "<script>x</script>" not in details and "&lt;script&gt;x&lt;/script&gt;" in details
    assert "<b>1</b>" not in details


@pytest.mark.parametrize("path", ["", "?view=last_hour", "details/Lead"])
def test_pages_carry_the_hosts_nonce_and_no_inline_script_or_style(make_app, db_url, status_dataset, path):
    app = make_app(db_url, admin=Admin(name="CSP host", csp_nonce_generator=csp_nonce))
    add_strict_csp(app)

    response = app.test_client().get(STATUS + path)
    nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"]).group(1)
    page = parse(response.data)

    scripts = page.find_all("script")
    assert scripts and all(s.attrs.get("nonce") == nonce and s.attrs.get("src") for s in scripts)
    assert all(link.attrs.get("nonce") == nonce for link in page.find_all("link", rel="stylesheet"))
    assert not page.find_all("style")
    assert not [n.tag for n in page.iter() if "style" in n.attrs]
    assert "/static/dynamics_sync/status.js" in [s.attrs["src"] for s in scripts]
