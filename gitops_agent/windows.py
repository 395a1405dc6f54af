"""Maintenance windows: when a node may start the rollout of a new revision (the config's `schedule:`).

Pure: every function takes `now` (an aware datetime, the injected clock) and a `Schedule`; nothing reads
the system clock, Git or Podman. The only module that imports `croniter`. `config` builds a `Schedule`
with `window()` and `schedule()`, which raise `ConfigError` naming the key; the rollout asks `is_open`
before it starts a node, and `status` shows `waiting_line`.

Semantics (README "Maintenance windows"):
- An allow window opens at every time its cron expression matches, read as wall-clock time in the
  schedule's time zone, and stays open for `duration` of real elapsed time (a 3 h window over a DST
  change is still 3 h long).
- A wall-clock start that does not exist (in the hour skipped when clocks go forward) opens at the
  first instant after the gap (02:30 on that night opens at 03:00), as cron does. A start that
  happens twice (the hour repeated when clocks go back) opens once, at the first of the two.
- Deny windows are read the same way and win over allow windows.
- A schedule without allow windows is open whenever no deny window is; no schedule at all: always open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from .errors import ConfigError

DRIFT_REPAIR = ("always", "inWindow")
_HORIZON = timedelta(days=366)  # next_open looks this far ahead; a schedule that never opens says so
_MAX_STEPS = 10_000


@dataclass(frozen=True)
class Window:
    """One window: opens when `cron` matches (wall-clock time in the schedule's zone), open for `duration`."""

    cron: str
    duration: timedelta


@dataclass(frozen=True)
class Schedule:
    """The config's `schedule:` section: allow and deny windows in one named time zone."""

    time_zone: str = "UTC"
    """An IANA zone name (`Europe/Berlin`); cron expressions are read as wall-clock time there."""
    allow: tuple[Window, ...] = ()
    deny: tuple[Window, ...] = ()
    drift_repair: str = "always"
    """always: drift of the revision a node runs is repaired at any time; inWindow: only in an open window."""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def window(cron: str, seconds: float, where: str) -> Window:
    """A checked window: a five-field cron expression and a positive duration in seconds."""
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ConfigError(f"{where}.cron: {cron!r} is not a cron expression "
                          "(five fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * *')")
    if seconds <= 0:
        raise ConfigError(f"{where}.duration: must be greater than zero")
    return Window(cron, timedelta(seconds=seconds))


def schedule(time_zone: str, allow: tuple[Window, ...], deny: tuple[Window, ...], drift_repair: str,
             where: str) -> Schedule:
    """A checked schedule: the time zone must be known to the system's tz database."""
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}.timeZone: {time_zone!r} is not a known time zone "
                          "(an IANA name such as Europe/Berlin or UTC)") from None
    if drift_repair not in DRIFT_REPAIR:
        raise ConfigError(f"{where}.driftRepair: must be one of {', '.join(DRIFT_REPAIR)}")
    return Schedule(time_zone, allow, deny, drift_repair)


_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
           "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


def cron_problem(expr: str) -> str:
    """Why `expr` is not a CronJob schedule Kubernetes and this agent both read ("" when it is one): five
    fields or one of the @yearly ... @hourly macros; the zone goes in `timeZone`, not in the expression."""
    if expr.startswith(("TZ=", "CRON_TZ=")):
        return "a time zone in the schedule is not supported (as in Kubernetes): set spec.timeZone instead"
    cron = _MACROS.get(expr.strip(), expr)
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        return (f"{expr!r} is not a cron schedule (five fields: minute hour day-of-month month day-of-week, "
                "e.g. '0 2 * * *', or @hourly, @daily, @weekly, @monthly, @yearly)")
    try:
        croniter(cron, datetime(2000, 1, 1)).get_next(datetime)  # 31 February: valid fields, no time ever
    except CroniterBadDateError:
        return f"{expr!r} matches no date (a day that its months do not have)"
    return ""


def known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def cron_next(expr: str, time_zone: str, after: datetime) -> datetime:
    """The first time strictly after `after` (aware) that the cron `expr` (checked by `cron_problem`) matches,
    read as wall-clock time in `time_zone`, with the DST rules of the windows above."""
    return _next_start(Window(_MACROS.get(expr.strip(), expr), timedelta(0)), ZoneInfo(time_zone), after)


def _aware(naive: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time in `zone` as an instant (UTC): the first of two at a repeated hour, and for a
    time skipped by a DST gap the first instant after the gap."""
    first = naive.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first
    # In a gap: fold=1 reads it with the offset after the change (an instant before the change),
    # fold=0 with the offset before it (an instant after it). Search the change between the two.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(timezone.utc)
    high, after = first, first.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def _wall(now: datetime, zone: ZoneInfo) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return now.astimezone(zone).replace(tzinfo=None)


def _last_start(win: Window, zone: ZoneInfo, now: datetime) -> datetime:
    """The latest start of `win` at or before `now` (starts are non-decreasing in real time)."""
    # Starts map to instants in wall-clock order, so the walk back starts at now's wall time; in the
    # repeated hour (fold=1) a later wall time can be an earlier instant (its first pass): start later.
    margin = timedelta(hours=3) if now.astimezone(zone).fold else timedelta(seconds=1)
    it = croniter(win.cron, _wall(now, zone) + margin)
    for _ in range(_MAX_STEPS):
        start = _aware(it.get_prev(datetime), zone)
        if start <= now:
            return start
    raise AssertionError("unreachable: a cron expression matches at least once a year")  # pragma: no cover


def _next_start(win: Window, zone: ZoneInfo, now: datetime) -> datetime:
    """The first start of `win` strictly after `now`."""
    it = croniter(win.cron, _wall(now, zone))  # an earlier wall time is never a later instant
    for _ in range(_MAX_STEPS):
        start = _aware(it.get_next(datetime), zone)
        if start > now:
            return start
    raise AssertionError("unreachable: a cron expression matches at least once a year")  # pragma: no cover


def _open_until(windows: tuple[Window, ...], zone: ZoneInfo, now: datetime) -> datetime | None:
    """The latest end among the windows open at `now`, or None when none is."""
    ends = [start + win.duration for win in windows if now < (start := _last_start(win, zone, now)) + win.duration]
    return max(ends) if ends else None


def is_open(plan: Schedule | None, now: datetime) -> bool:
    """True when a new revision may start rolling out at `now`: inside an allow window (or there is no
    allow window) and inside no deny window."""
    if plan is None:
        return True
    zone = plan.zone
    if _open_until(plan.deny, zone, now) is not None:
        return False
    return not plan.allow or _open_until(plan.allow, zone, now) is not None


def next_open(plan: Schedule | None, now: datetime) -> datetime | None:
    """The first instant at or after `now` when `is_open` holds; None if the schedule stays closed for
    the next 366 days (e.g. a deny window that never ends)."""
    if plan is None:
        return now
    zone, moment = plan.zone, now
    for _ in range(_MAX_STEPS):
        if moment - now > _HORIZON:
            return None
        denied_until = _open_until(plan.deny, zone, moment)
        if denied_until is not None:
            moment = denied_until
        elif not plan.allow or _open_until(plan.allow, zone, moment) is not None:
            return moment
        else:
            moment = min(_next_start(win, zone, moment) for win in plan.allow)
    return None  # pragma: no cover  (10 000 windows in a year)


def closes_at(plan: Schedule | None, now: datetime) -> datetime | None:
    """When the window open at `now` closes: the end of its allow windows (contiguous or overlapping ones
    taken together) or the next deny start, whichever comes first. None when the schedule is closed now,
    or stays open for the next 7 days (no allow windows and no deny window soon, or back-to-back windows)."""
    if plan is None or not is_open(plan, now):
        return None
    zone, moment = plan.zone, now
    while moment - now <= timedelta(days=7):
        ends = [_next_start(win, zone, moment) for win in plan.deny]
        allow_end = _open_until(plan.allow, zone, moment)
        if allow_end is not None:
            ends.append(allow_end)
        if not ends:
            return None
        moment = min(ends)
        if not is_open(plan, moment):
            return moment
    return None


def _span(delta: timedelta) -> str:
    """`3 h 12 min`, `45 s`, `2 d 3 h`: the two largest units, rounded down."""
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    first = next((index for index, (amount, _) in enumerate(units) if amount), len(units) - 1)
    shown = [f"{amount} {unit}" for amount, unit in units[first:first + 2] if amount]
    return " ".join(shown) or "0 s"


def waiting_line(plan: Schedule, now: datetime) -> str:
    """What `status` shows for a node held by its schedule:
    `waiting for window (opens 02:00 Europe/Berlin, in 3 h 12 min)`; the date is added when the window
    opens more than a day from now."""
    opens = next_open(plan, now)
    if opens is None:
        return f"waiting for window (none opens in the next {_HORIZON.days} days)"
    local = opens.astimezone(plan.zone)
    when = local.strftime("%H:%M") if opens - now < timedelta(days=1) else local.strftime("%Y-%m-%d %H:%M")
    return f"waiting for window (opens {when} {plan.time_zone}, in {_span(opens - now)})"
