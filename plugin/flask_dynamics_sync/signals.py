"""Blinker signals the host can connect to, like Flask's own signals.

Both are sent with the Flask application as sender, after the database
transaction that produced them has committed::

    from flask_dynamics_sync.signals import errors_digest, error_threshold_reached

    @errors_digest.connect_via(app)
    def post_digest(sender, digest, **extra):
        chat.post(f"{digest.failed_records} records failed since {digest.since:%H:%M} UTC")

    @error_threshold_reached.connect_via(app)
    def page_on_call(sender, alert, **extra):
        pager.trigger(f"{alert.count} x {alert.error_code} in {alert.window_minutes} min")

A receiver that raises is logged and does not stop the other receivers nor the e-mail.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

errors_digest = _signals.signal("dynamics-sync-errors-digest")
"""The daily digest: sent once a day by the ``notify`` job (and ``flask dynamics-sync notify``).

Keyword argument ``digest``: a :class:`flask_dynamics_sync.notifications.ErrorsDigest`
of the records that failed in the last 24 hours. Sent even when nothing failed
(``digest.failed_records == 0``), so a receiver can confirm the sync is healthy.
"""

error_threshold_reached = _signals.signal("dynamics-sync-error-threshold-reached")
"""An error code crossed ``DYNAMICS_SYNC_ALERT_THRESHOLD`` errors within ``DYNAMICS_SYNC_ALERT_WINDOW_MINUTES``.

Keyword argument ``alert``: a :class:`flask_dynamics_sync.notifications.ThresholdAlert`.
Sent when the count crosses the threshold, not again while it stays above it.
"""
