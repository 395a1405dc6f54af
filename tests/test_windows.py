"""Maintenance windows (gitops_agent/windows.py): pure, from literals, with the clock injected as `now`.

Europe/Berlin's DST changes in 2026: clocks go forward on 29 March at 02:00 CET (01:00 UTC) and back on
25 October at 03:00 CEST (01:00 UTC).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops_agent import config
from gitops_agent.errors import ConfigError
from gitops_agent.status import _rollout as status_rollout
from gitops_agent.web import page
from gitops_agent.windows import Schedule, Window, closes_at, is_open, next_open, schedule, waiting_line, window

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)  # type: ignore[arg-type, misc]


def nightly(cron: str = "0 2 * * *", hours: float = 3, deny: tuple[Window, ...] = ()) -> Schedule:
    return Schedule("Europe/Berlin", (Window(cron, timedelta(hours=hours)),), deny)


def test_no_schedule_is_always_open() -> None:
    """Without a schedule every moment is open and the window opens now."""
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert is_open(None, now)
    assert next_open(None, now) == now
    assert closes_at(None, now) is None


def test_a_window_is_open_from_its_start_for_its_duration() -> None:
    """02:00 + 3 h in Berlin: open at 02:00 and 04:59, closed at 05:00 and 01:59."""
    plan = nightly()
    assert not is_open(plan, berlin(2026, 12, 2, 1, 59))
    assert is_open(plan, berlin(2026, 12, 2, 2, 0))
    assert is_open(plan, berlin(2026, 12, 2, 4, 59, 59))
    assert not is_open(plan, berlin(2026, 12, 2, 5, 0))
    assert closes_at(plan, berlin(2026, 12, 2, 3, 0)) == berlin(2026, 12, 2, 5, 0)
    back_to_back = nightly("0 2,3 * * *", 1)  # 02:00-03:00 and 03:00-04:00: one window until 04:00
    assert closes_at(back_to_back, berlin(2026, 12, 2, 2, 30)) == berlin(2026, 12, 2, 4, 0)
    assert closes_at(nightly("* * * * *", 1), berlin(2026, 12, 2, 2, 30)) is None  # never closes


def test_the_same_instant_in_another_zone_gives_the_same_answer() -> None:
    """`now` may come in any zone: 01:30 UTC in December is 02:30 in Berlin, inside the window."""
    plan = nightly()
    assert is_open(plan, datetime(2026, 12, 2, 1, 30, tzinfo=UTC))
    assert not is_open(plan, datetime(2026, 12, 2, 4, 0, tzinfo=UTC))


def test_a_window_spanning_midnight() -> None:
    """22:00 + 4 h: open at 23:30 and at 01:30 the next day, closed at 02:00; next_open from the
    afternoon is 22:00 the same day."""
    plan = nightly("0 22 * * *", 4)
    assert is_open(plan, berlin(2026, 12, 2, 23, 30))
    assert is_open(plan, berlin(2026, 12, 3, 1, 30))
    assert not is_open(plan, berlin(2026, 12, 3, 2, 0))
    assert next_open(plan, berlin(2026, 12, 3, 15, 0)) == berlin(2026, 12, 3, 22, 0)


def test_a_window_on_weekdays_only_and_a_long_one() -> None:
    """Saturdays only (day-of-week 6); a window longer than the gap between starts stays open between them."""
    saturday = nightly("0 1 * * 6", 2)
    assert next_open(saturday, berlin(2026, 12, 2, 12, 0)) == berlin(2026, 12, 5, 1, 0)  # Wed -> Sat
    assert not is_open(saturday, berlin(2026, 12, 6, 1, 30))
    overlapping = nightly("0 * * * *", 2)
    assert all(is_open(overlapping, berlin(2026, 12, 2, h, m)) for h in range(24) for m in (0, 59))


def test_deny_overrides_allow() -> None:
    """A deny window inside an allow window closes it; the window reopens when the deny window ends."""
    deny = (Window("0 3 * * *", timedelta(minutes=30)),)
    plan = nightly(deny=deny)
    assert is_open(plan, berlin(2026, 12, 2, 2, 59))
    assert not is_open(plan, berlin(2026, 12, 2, 3, 0))
    assert not is_open(plan, berlin(2026, 12, 2, 3, 29))
    assert is_open(plan, berlin(2026, 12, 2, 3, 30))
    assert next_open(plan, berlin(2026, 12, 2, 3, 10)) == berlin(2026, 12, 2, 3, 30)
    assert closes_at(plan, berlin(2026, 12, 2, 2, 10)) == berlin(2026, 12, 2, 3, 0)


def test_a_deny_window_over_several_allow_windows() -> None:
    """Christmas freeze: 24 December 00:00 for 3 days denies the nightly windows of the 24th to the 26th;
    the first open moment after it is the 27th at 02:00."""
    freeze = (Window("0 0 24 12 *", timedelta(days=3)),)
    plan = nightly(deny=freeze)
    assert not is_open(plan, berlin(2026, 12, 25, 2, 30))
    assert next_open(plan, berlin(2026, 12, 23, 12, 0)) == berlin(2026, 12, 27, 2, 0)


def test_deny_only_schedule_is_open_outside_its_deny_windows() -> None:
    """Without allow windows the schedule is open except in its deny windows."""
    plan = Schedule("UTC", (), (Window("0 8 * * 1-5", timedelta(hours=10)),))  # office hours
    assert not is_open(plan, datetime(2026, 12, 2, 12, 0, tzinfo=UTC))  # a Wednesday
    assert is_open(plan, datetime(2026, 12, 2, 19, 0, tzinfo=UTC))
    assert next_open(plan, datetime(2026, 12, 2, 9, 0, tzinfo=UTC)) == datetime(2026, 12, 2, 18, 0, tzinfo=UTC)


def test_a_schedule_that_never_opens() -> None:
    """An allow window entirely covered by a deny window never opens: next_open says None, the line says so."""
    plan = nightly(deny=(Window("0 0 * * *", timedelta(hours=26)),))  # longer than any day, DST included
    now = berlin(2026, 12, 2, 12, 0)
    assert not is_open(plan, now)
    assert next_open(plan, now) is None
    assert waiting_line(plan, now) == "waiting for window (none opens in the next 366 days)"


def test_spring_forward_a_start_in_the_skipped_hour_opens_right_after_the_gap() -> None:
    """On 29 March 02:30 does not exist in Berlin: the window opens at 03:00 CEST (01:00 UTC) and lasts its
    real duration (1 h: until 04:00 CEST); on the next day it opens at 02:30 again."""
    plan = nightly("30 2 * * *", 1)
    opens = next_open(plan, berlin(2026, 3, 28, 12, 0))
    assert opens == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert is_open(plan, datetime(2026, 3, 29, 1, 59, tzinfo=UTC))
    assert not is_open(plan, datetime(2026, 3, 29, 2, 0, tzinfo=UTC))
    assert not is_open(plan, datetime(2026, 3, 29, 0, 59, tzinfo=UTC))  # 01:59 CET, just before the gap
    assert next_open(plan, datetime(2026, 3, 29, 2, 0, tzinfo=UTC)) == berlin(2026, 3, 30, 2, 30)


def test_spring_forward_a_window_across_the_gap_keeps_its_real_duration() -> None:
    """01:00 + 3 h on 29 March: the clock shows 05:00 CEST when it closes (3 h of real time)."""
    plan = nightly("0 1 * * *", 3)
    assert is_open(plan, berlin(2026, 3, 29, 4, 59))
    assert not is_open(plan, berlin(2026, 3, 29, 5, 0))
    assert closes_at(plan, berlin(2026, 3, 29, 1, 30)) == berlin(2026, 3, 29, 5, 0)


def test_fall_back_a_start_in_the_repeated_hour_opens_once_at_the_first() -> None:
    """On 25 October 02:30 happens twice in Berlin (CEST, then CET): a 30 min window opens at the first
    (00:30 UTC) only; the second 02:30 (01:30 UTC) is outside it."""
    plan = nightly("30 2 * * *", 0.5)
    first, second = berlin(2026, 10, 25, 2, 30, fold=0), berlin(2026, 10, 25, 2, 30, fold=1)
    assert first.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    # (aware datetimes in the repeated hour never compare equal across zones: compare in UTC)
    assert next_open(plan, berlin(2026, 10, 24, 12, 0)) == first.astimezone(UTC)
    assert is_open(plan, first)
    assert is_open(plan, berlin(2026, 10, 25, 2, 59, fold=0))
    assert not is_open(plan, second)
    assert not is_open(plan, berlin(2026, 10, 25, 2, 45, fold=1))
    assert next_open(plan, second) == berlin(2026, 10, 26, 2, 30)


def test_fall_back_a_window_across_the_repeated_hour_keeps_its_real_duration() -> None:
    """01:00 + 3 h on 25 October: the clock shows 03:00 CET when it closes (3 h of real time, one hour twice)."""
    plan = nightly("0 1 * * *", 3)
    assert is_open(plan, berlin(2026, 10, 25, 2, 59, fold=1).astimezone(UTC))
    assert not is_open(plan, berlin(2026, 10, 25, 3, 0))
    assert closes_at(plan, berlin(2026, 10, 25, 1, 30)) == berlin(2026, 10, 25, 3, 0)


def test_waiting_line() -> None:
    """The status line names the local opening time, the zone and how long until then; the date when
    the window is more than a day away."""
    plan = nightly()
    assert waiting_line(plan, berlin(2026, 12, 1, 22, 48)) == \
        "waiting for window (opens 02:00 Europe/Berlin, in 3 h 12 min)"
    assert waiting_line(plan, berlin(2026, 12, 2, 1, 59, 15)) == \
        "waiting for window (opens 02:00 Europe/Berlin, in 45 s)"
    saturday = nightly("0 2 * * 6")
    assert waiting_line(saturday, berlin(2026, 12, 2, 0, 0)) == \
        "waiting for window (opens 2026-12-05 02:00 Europe/Berlin, in 3 d 2 h)"


def test_now_must_be_aware() -> None:
    """A naive `now` is a programming error, not a guess about the zone."""
    with pytest.raises(ValueError, match="aware"):
        is_open(nightly(), datetime(2026, 12, 2, 2, 0))


def test_bad_windows_are_config_errors_naming_the_key() -> None:
    """A bad cron expression, duration, zone or driftRepair is a ConfigError naming where it is."""
    with pytest.raises(ConfigError, match=r"schedule\.allow\[0\]\.cron: 'every night' is not a cron"):
        window("every night", 60, "schedule.allow[0]")
    with pytest.raises(ConfigError, match=r"not a cron"):
        window("0 0 2 * * *", 60, "w")  # six fields (seconds): not the standard five
    with pytest.raises(ConfigError, match=r"w\.duration: must be greater than zero"):
        window("0 2 * * *", 0, "w")
    with pytest.raises(ConfigError, match=r"schedule\.timeZone: 'Mars/Olympus' is not a known time zone"):
        schedule("Mars/Olympus", (), (), "always", "schedule")
    with pytest.raises(ConfigError, match=r"driftRepair: must be one of always, inWindow"):
        schedule("UTC", (), (), "sometimes", "schedule")


def _config(extra: dict[str, object], node: dict[str, object] | None = None) -> config.AgentConfig:
    raw: dict[str, object] = {"source": {"url": "/tmp/repo"}, "nodes": [{"name": "a"}, {"name": "b", **(node or {})}]}
    return config.from_mapping({**raw, **extra})


def test_config_schedule_top_level_and_per_node() -> None:
    """`schedule:` at the top applies to every node; a node's own `schedule:` replaces it for that node."""
    top = {"timeZone": "Europe/Berlin", "allow": [{"cron": "0 2 * * *", "duration": "3h"}],
           "deny": [{"cron": "0 0 24 12 *", "duration": "72h"}], "driftRepair": "inWindow"}
    cfg = _config({"schedule": top}, {"schedule": {"allow": [{"cron": "0 4 * * 6", "duration": "30m"}]}})
    a, b = cfg.nodes
    assert a.schedule == Schedule("Europe/Berlin", (Window("0 2 * * *", timedelta(hours=3)),),
                                  (Window("0 0 24 12 *", timedelta(hours=72)),), "inWindow")
    assert b.schedule == Schedule("UTC", (Window("0 4 * * 6", timedelta(minutes=30)),), (), "always")
    assert _config({}).nodes[0].schedule is None


def test_config_schedule_errors() -> None:
    """Unknown keys and bad values of `schedule:` are refused with their place in the file."""
    with pytest.raises(ConfigError, match="driftRepair"):
        _config({"schedule": {"driftRepair": "never"}})
    with pytest.raises(ConfigError, match=r"nodes\[1\]\.schedule\.allow\[0\]\.cron"):
        _config({}, {"schedule": {"allow": [{"cron": "61 * * * *", "duration": "1h"}]}})
    with pytest.raises(ConfigError, match="window"):
        _config({"schedule": {"window": []}})


_ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC")  # Lord Howe: a 30 min DST shift


@settings(max_examples=25, deadline=None)
@given(st.datetimes(datetime(2026, 1, 1), datetime(2027, 1, 1)), st.sampled_from(_ZONES),
       st.sampled_from(["30 2 * * *", "0 1 * * 0", "*/20 * * * *", "15 23 * * 1-5"]),
       st.integers(5, 240), st.booleans())
def test_next_open_is_open_and_the_minutes_before_it_are_closed(naive: datetime, zone: str, cron: str,
                                                                 minutes: int, with_deny: bool) -> None:
    """For any moment of 2026, in zones with DST changes of 1 h and 30 min: next_open is open, every whole
    7th minute from now until then is closed, and closes_at of an open moment is closed."""
    now = naive.replace(tzinfo=UTC)
    deny = (Window("0 2 * * 6", timedelta(hours=5)),) if with_deny else ()
    plan = Schedule(zone, (Window(cron, timedelta(minutes=minutes)),), deny)
    opens = next_open(plan, now)
    assert opens is not None and opens >= now and is_open(plan, opens)
    moment = now
    while moment < opens and moment - now < timedelta(days=1):
        assert not is_open(plan, moment)
        moment += timedelta(minutes=7)
    closes = closes_at(plan, opens)
    if closes is None:  # back-to-back windows (*/20 for 20 min or more) that never close
        assert cron == "*/20 * * * *" and minutes >= 20 and not with_deny
    else:
        assert closes > opens and not is_open(plan, closes) and is_open(plan, closes - timedelta(seconds=1))


def test_status_and_the_page_show_a_held_nodes_window_line_as_of_now() -> None:
    """A node the rollout holds for its window (status `window`) gets the line as of the status's `now`, not
    the one stored by the pass that held it; without a schedule the stored line; the page shows it, escaped."""
    stale = "waiting for window (opens 02:00 Europe/Berlin, in 5 h 0 min)"
    record = {"target": "main@sha1:bbb", "previous": "main@sha1:aaa", "phase": "progressing", "cause": "git",
              "order": ["n1", "n2", "n3"], "nodes": {"n1": {"status": "done", "error": ""},
                                                     "n2": {"status": "window", "error": stale},
                                                     "n3": {"status": "window", "error": stale}}}
    shown = status_rollout(record, {"n1": None, "n2": nightly()}, berlin(2026, 12, 1, 22, 48))
    assert shown is not None
    n1, n2, n3 = shown["nodes"]
    assert "window" not in n1
    assert n2["window"] == "waiting for window (opens 02:00 Europe/Berlin, in 3 h 12 min)"
    assert n3["window"] == stale
    html = page({"condition": "Progressing", "message": "held", "rollout": shown}, [], [], 10.0, 12.0)
    assert "<b>n2</b>: waiting for window (opens 02:00 Europe/Berlin, in 3 h 12 min)" in html
    assert "<td>window</td><td>waiting for window (opens 02:00 Europe/Berlin, in 3 h 12 min)</td>" in html
