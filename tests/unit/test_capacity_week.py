"""Capacity learning on synthetic weeks of usage: a busy weekday owner, a night-idle
desktop and a meeting-heavy laptop. Checks the learned slots, the forecasts, the memory
ceiling and the pause decisions, and that the week survives a restart (JSON on disk)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from herd.capacity.learner import (
    MEETING,
    CapacityBeat,
    CapacityLearner,
    memory_ceiling,
)
from herd.capacity.sensors import HostLoad, Reading
from herd.capacity.week import SLOTS, UNKNOWN, WeekModel, load_week, slot_of

MONDAY = 1_704_067_200.0  # 2024-01-01 00:00 UTC, a Monday
HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
GIB = 1024**3
TOTAL = 16 * GIB
STEP = 300.0  # a sample every 5 minutes


class NoSensors:
    def read(self, now: float, host: HostLoad) -> Reading:
        raise AssertionError("these tests feed readings to step()")


Owner = Callable[[int, int, int], Reading]  # (day 0 = Monday, hour, minute) -> reading


def learner(path: Path | None = None) -> CapacityLearner:
    return CapacityLearner("n1", NoSensors(), path, interval=STEP, utc_offset_s=0)


def live(lrn: CapacityLearner, owner: Owner, weeks: int, start: float = MONDAY) -> float:
    """Play ``weeks`` of the owner's routine; returns the time after the last sample."""
    t = start
    end = start + weeks * WEEK
    while t < end:
        offset = int(t - MONDAY) % int(WEEK)
        day, rest = divmod(offset, int(DAY))
        lrn.step(owner(day, rest // 3600, rest % 3600 // 60), t, TOTAL, budget=False)
        t += STEP
    return t


def at(day: int, hour: int, minute: int = 0, week: int = 3) -> float:
    return MONDAY + week * WEEK + day * DAY + hour * HOUR + minute * 60


def slot(day: int, hour: int) -> int:
    return day * 24 + hour


def idle() -> Reading:
    return Reading(owner_cpu=0.02, owner_memory=0.2)


# --- the owners ------------------------------------------------------------------------------
def busy_weekdays(day: int, hour: int, minute: int) -> Reading:
    if day < 5 and 9 <= hour < 17:
        return Reading(owner_cpu=0.7, owner_memory=0.5)
    return Reading(owner_cpu=0.03, owner_memory=0.2)


def night_idle_desktop(day: int, hour: int, minute: int) -> Reading:
    if 18 <= hour < 23:  # games in the evening: the GPU is the owner's
        return Reading(owner_cpu=0.3, owner_memory=0.4, owner_gpu=0.9)
    if 8 <= hour < 18:
        return Reading(owner_cpu=0.15, owner_memory=0.3, owner_gpu=0.05)
    return Reading(owner_cpu=0.01, owner_memory=0.1, owner_gpu=0.0)


def meeting_laptop(day: int, hour: int, minute: int) -> Reading:
    in_call = day in (1, 3) and 10 <= hour < 12  # Tuesday and Thursday stand-ups
    work = day < 5 and 9 <= hour < 17
    return Reading(
        owner_cpu=0.35 if in_call else 0.15 if work else 0.02,
        owner_memory=0.4 if work else 0.2,
        camera=in_call,
        microphone=in_call,
        on_battery=False,
        battery_percent=90.0,
    )


# --- a busy weekday owner --------------------------------------------------------------------
def test_busy_weekday_owner_slots_are_learned() -> None:
    lrn = learner()
    live(lrn, busy_weekdays, weeks=3)
    week = lrn.week
    assert week.slots[slot(0, 10)].cpu == pytest.approx(0.7, abs=0.01)
    assert week.slots[slot(0, 10)].memory == pytest.approx(0.5, abs=0.01)
    assert week.slots[slot(0, 10)].availability == pytest.approx(0.3, abs=0.01)
    assert week.slots[slot(4, 16)].availability == pytest.approx(0.3, abs=0.01)
    for day, hour in ((5, 10), (6, 15), (1, 3), (2, 20)):  # weekends, nights, evenings
        assert week.slots[slot(day, hour)].availability == pytest.approx(0.97, abs=0.01)
    assert all(s.hours == pytest.approx(3.0) for s in week.slots)  # 3 weeks, 1 h each
    grid = week.availability_bytes()
    assert len(grid) == SLOTS and grid[slot(0, 10)] == 30 and grid[slot(5, 10)] == 97


def test_busy_weekday_owner_forecast_and_ceiling_before_work() -> None:
    lrn = learner()
    live(lrn, busy_weekdays, weeks=3)
    monday = lrn.step(idle(), at(0, 8, 30), TOTAL, budget=False)
    assert not monday.paused
    assert monday.availability == pytest.approx(0.98, abs=0.01)  # free now ...
    assert monday.availability_next == pytest.approx(0.3, abs=0.01)  # ... busy at 9
    # the ceiling makes room for the owner's 50 % at 9 and weighs the low forecast
    assert monday.availability_next is not None
    assert monday.memory_ceiling == memory_ceiling(TOTAL, 0.5, monday.availability_next, False)
    saturday = lrn.step(idle(), at(5, 8, 30), TOTAL, budget=False)
    assert saturday.availability_next == pytest.approx(0.97, abs=0.01)
    assert saturday.memory_ceiling > 3 * monday.memory_ceiling
    assert saturday.memory_ceiling == memory_ceiling(TOTAL, 0.2, 0.97, False)


def test_a_slot_not_learned_yet_forecasts_nothing() -> None:
    lrn = learner()
    first = lrn.step(idle(), at(2, 14, week=0), TOTAL, budget=False)
    assert first.availability_next is None
    assert first.report.week[slot(2, 15)] == UNKNOWN
    assert first.memory_ceiling == memory_ceiling(TOTAL, 0.2, first.availability, False)


def test_a_changed_routine_is_relearned_within_weeks() -> None:
    lrn = learner()
    live(lrn, busy_weekdays, weeks=4)
    live(lrn, lambda d, h, m: Reading(0.03, 0.2), weeks=3, start=MONDAY + 4 * WEEK)
    assert lrn.week.slots[slot(0, 10)].cpu < 0.7 * 0.7**3 + 0.05  # each week keeps 70 %


# --- a night-idle desktop --------------------------------------------------------------------
def test_night_idle_desktop_nights_are_free_evenings_are_not() -> None:
    lrn = learner()
    live(lrn, night_idle_desktop, weeks=2)
    week = lrn.week
    for day in range(7):
        assert week.slots[slot(day, 3)].availability >= 0.98
        assert week.slots[slot(day, 20)].gpu == pytest.approx(0.9, abs=0.01)
        assert week.slots[slot(day, 20)].availability == pytest.approx(0.1, abs=0.01)
    night = lrn.step(Reading(0.01, 0.1, 0.0), at(2, 2, 10), TOTAL, budget=False)
    assert night.report.workload == "idle"
    assert night.availability_next is not None and night.availability_next >= 0.98
    assert night.memory_ceiling >= 0.97 * (TOTAL * (1 - 0.1 - 0.1))  # nearly all it may use


def test_night_idle_desktop_a_game_is_heavy_at_once() -> None:
    lrn = learner()
    live(lrn, night_idle_desktop, weeks=1)
    beat = lrn.step(Reading(0.3, 0.4, 0.9), at(2, 19, 5, week=1), TOTAL, budget=False)
    assert beat.report.workload == "heavy"
    assert beat.availability <= 0.1 + 1e-9
    assert not beat.paused  # hard pauses are for meetings and a low battery


# --- a meeting-heavy laptop -------------------------------------------------------------------
def test_meeting_laptop_pauses_in_a_call_and_resumes_after() -> None:
    lrn = learner()
    live(lrn, meeting_laptop, weeks=2)
    before = lrn.step(meeting_laptop(1, 9, 55), at(1, 9, 55, week=2), TOTAL, budget=False)
    assert not before.paused and before.pause_reason == ""
    assert before.availability_next == pytest.approx(0.0, abs=0.01)  # a call at 10, always
    during = lrn.step(meeting_laptop(1, 10, 30), at(1, 10, 30, week=2), TOTAL, budget=False)
    assert during.paused and during.pause_reason == MEETING
    assert during.availability == 0.0
    assert during.report.meeting is True
    after = lrn.step(meeting_laptop(1, 12, 0), at(1, 12, 0, week=2), TOTAL, budget=False)
    assert not after.paused and after.pause_reason == ""
    assert after.availability == pytest.approx(0.5)  # the call's load is still in the window
    for minute in range(5, 35, 5):  # ... and is handed back once the window has calmed down
        after = lrn.step(meeting_laptop(1, 12, minute), at(1, 12, minute, week=2), TOTAL, False)
    assert after.report.workload == "light" and after.availability == pytest.approx(0.85)
    assert lrn.week.slots[slot(1, 10)].meeting == pytest.approx(1.0)
    assert lrn.week.slots[slot(0, 10)].meeting == 0.0
    assert lrn.week.slots[slot(3, 11)].availability == 0.0


def test_the_meeting_flag_alone_pauses() -> None:
    beat = learner().step(Reading(0.0, 0.1, meeting_flag=True), MONDAY, TOTAL, budget=False)
    assert beat.paused and beat.pause_reason == MEETING


def test_meeting_laptop_on_battery_halves_then_pauses_when_low() -> None:
    lrn = learner()
    live(lrn, meeting_laptop, weeks=1)
    t = at(2, 14, week=1)

    def power(on_battery: bool, pct: float, dt: float) -> CapacityBeat:
        reading = Reading(0.05, 0.3, on_battery=on_battery, battery_percent=pct)
        return lrn.step(reading, t + dt, TOTAL, False)

    on_ac = power(False, 60, 0)
    unplugged = power(True, 60, 5)
    assert not unplugged.paused
    assert unplugged.availability == pytest.approx(on_ac.availability * 0.5, abs=0.01)
    low = power(True, 15, 10)
    assert low.paused and low.pause_reason == "on battery at 15%"
    assert not power(False, 15, 15).paused  # plugged in again


def test_throttling_and_a_present_user_lower_availability() -> None:
    base = learner().step(Reading(0.1, 0.3), MONDAY, TOTAL, False).availability
    hot = learner().step(Reading(0.1, 0.3, throttled=True), MONDAY, TOTAL, False).availability
    typing = learner().step(Reading(0.1, 0.3, user_idle_s=3.0), MONDAY, TOTAL, False)
    away = learner().step(Reading(0.1, 0.3, user_idle_s=900.0), MONDAY, TOTAL, False)
    assert hot == pytest.approx(base * 0.6, abs=0.01)
    assert typing.availability == pytest.approx(base * 0.85, abs=0.01)
    assert away.availability == base


# --- the ceiling --------------------------------------------------------------------------------
def test_memory_ceiling_follows_availability_and_never_means_no_ceiling() -> None:
    assert memory_ceiling(TOTAL, 0.2, 1.0, budget=False) == int(TOTAL * 0.7)
    assert memory_ceiling(TOTAL, 0.2, 0.0, budget=False) == int(TOTAL * 0.7 * 0.25)
    assert memory_ceiling(GIB, 0.9, 1.0, budget=True) == GIB  # a budget leaves room already
    assert memory_ceiling(TOTAL, 0.95, 1.0, budget=False) == 1  # 0 would mean "no ceiling"
    assert memory_ceiling(0, 0.2, 1.0, budget=False) == 0  # memory unknown: no ceiling


def test_beat_fills_the_heartbeat_fields() -> None:
    beat: CapacityBeat = learner().step(Reading(0.1, 0.3), MONDAY + 10 * HOUR, TOTAL, False)
    fields = beat.heartbeat_fields()
    assert set(fields) == {
        "paused",
        "pause_reason",
        "availability",
        "availability_next",
        "memory_ceiling",
        "capacity",
    }
    assert fields["capacity"].slot == slot(0, 10)


# --- persistence ------------------------------------------------------------------------------
def test_the_week_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "capacity" / "n1.json"
    lrn = learner(path)
    live(lrn, busy_weekdays, weeks=2)
    lrn.save(MONDAY + 2 * WEEK)
    assert sorted(p.name for p in path.parent.iterdir()) == ["n1.json"]  # no temp file left
    data = json.loads(path.read_text())
    assert data["node"] == "n1" and len(data["slots"]) == SLOTS
    assert data["slots"][slot(0, 10)]["slot"] == "Mon 10h"
    assert data["slots"][slot(0, 10)]["cpu"] == pytest.approx(0.7, abs=0.01)
    again = learner(path)  # a restarted node
    for old, new in zip(lrn.week.slots, again.week.slots, strict=True):
        assert new.cpu == pytest.approx(old.cpu, abs=1e-4)
        assert new.hours == pytest.approx(old.hours, abs=1e-4)
    beat = again.step(idle(), at(0, 8, 30, week=2), TOTAL, budget=False)
    assert beat.availability_next == pytest.approx(0.3, abs=0.01)


def test_an_unreadable_week_is_kept_aside_and_learning_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "n1.json"
    path.write_text('{"format": 1, "slots": [1, 2]}')
    week = load_week(path)
    assert all(not s.learned for s in week.slots)
    assert not path.exists() and (tmp_path / "n1.json.corrupt").exists()
    path.write_text("not json")
    assert load_week(path).slots[0].hours == 0.0


def test_a_week_refuses_bad_values() -> None:
    data = WeekModel().to_json("n1", MONDAY)
    data["slots"][0]["cpu"] = "high"
    with pytest.raises(ValueError, match="cpu"):
        WeekModel.from_json(data)


def test_slots_follow_local_time() -> None:
    assert slot_of(MONDAY, 0) == 0
    assert slot_of(MONDAY + 10 * HOUR + 59 * 60, 0) == 10
    assert slot_of(MONDAY, 2 * HOUR) == 2  # two hours east of UTC
    assert slot_of(MONDAY, -HOUR) == 6 * 24 + 23  # Sunday 23h the day before
