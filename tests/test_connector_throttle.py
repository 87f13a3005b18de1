"""Pacing below the service protection limits (no database, no server: a clock the test moves)."""

from __future__ import annotations

import pytest

from flask_dynamics_sync.dataverse.throttle import WINDOW_MARGIN
from flask_dynamics_sync.dataverse.throttle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_requests_go_at_once_below_the_limit(clock):
    throttle = Throttle(2, 1.0, 10, clock=clock)
    with throttle.slot():
        pass

    assert throttle.wait_needed() == 0


def test_a_full_window_waits_for_its_oldest_request_to_leave_it(clock):
    throttle = Throttle(2, 1.0, 10, clock=clock)
    for _ in range(2):
        with throttle.slot():
            pass
    clock.now += 0.25

    assert throttle.wait_needed() == pytest.approx(1.0 + WINDOW_MARGIN - 0.25)


def test_a_request_counts_from_its_answer_not_from_its_send(clock):
    throttle = Throttle(1, 1.0, 10, clock=clock)
    with throttle.slot():
        clock.now += 0.8  # the server may have counted it at any moment until its answer
    clock.now += 0.7

    assert throttle.wait_needed() == pytest.approx(1.0 + WINDOW_MARGIN - 0.7)


def test_every_concurrent_slot_taken_waits_for_a_release(clock):
    throttle = Throttle(10, 1.0, 1, clock=clock)
    with throttle.slot():
        assert throttle.wait_needed() == float("inf")
    assert throttle.wait_needed() == 0


def test_a_429_pauses_every_request_until_its_retry_after(clock):
    throttle = Throttle(10, 1.0, 10, clock=clock)
    throttle.pause(5)
    throttle.pause(2)  # never shortens a pause
    clock.now += 1

    assert throttle.wait_needed() == pytest.approx(4)
