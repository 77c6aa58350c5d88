"""Scheduled events (SAM `Schedule` / `ScheduleV2`): fire on their rate/cron, or on demand.

Nothing fires at startup: the first run of `rate(1 hour)` is one hour after start, as after a
deploy. `fire()` runs one now (the local cloud exposes it as `fire_schedule()` and
`POST /_local/schedules/{FunctionLogicalId}`). A failing run is retried per the template's
RetryPolicy.MaximumRetryAttempts, then sent to its DeadLetterConfig queue if it is local.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

from .stack import ScheduleSpec

log = logging.getLogger("localcloud")

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$", re.I)
_AT = re.compile(r"^at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)}


def rate_seconds(expression: str) -> int | None:
    match = _RATE.match(expression.strip())
    if not match:
        return None
    unit = match.group(2).lower().rstrip("s")
    return int(match.group(1)) * _UNIT_SECONDS[unit]


def _parse_field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip().upper()
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(part, names)
            end = high if step != 1 else start
        if not (low <= start <= high and low <= end <= high):
            raise ValueError(f"cron field value out of range: {text}")
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, names: dict[str, int] | None) -> int:
    if names and text in names:
        return names[text]
    if not text.isdigit():
        raise ValueError(f"unsupported cron token {text!r}")
    return int(text)


def next_cron(expression: str, after: dt.datetime) -> dt.datetime | None:
    """Next time (strictly after `after`) an AWS six-field cron expression fires."""
    match = _CRON.match(expression.strip())
    if not match:
        return None
    fields = match.group(1).split()
    if len(fields) != 6:
        raise ValueError(f"AWS cron needs 6 fields: {expression}")
    minutes = _parse_field(fields[0], 0, 59)
    hours = _parse_field(fields[1], 0, 23)
    dom_any = fields[2] in ("*", "?")
    dow_any = fields[4] in ("*", "?")
    days = _parse_field(fields[2], 1, 31)
    months = _parse_field(fields[3], 1, 12, _MONTHS)
    weekdays = _parse_field(fields[4], 1, 7, _DAYS)
    years = None if fields[5] in ("*", "?") else _parse_field(fields[5], 1970, 2199)
    start = (after + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
    day = start.replace(hour=0, minute=0)
    for _ in range(366 * 5):
        aws_dow = (day.weekday() + 1) % 7 + 1  # Monday=0 -> 2; Sunday=6 -> 1
        day_ok = (dom_any or day.day in days) and (dow_any or aws_dow in weekdays)
        if day_ok and day.month in months and (years is None or day.year in years):
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    candidate = day.replace(hour=hour, minute=minute)
                    if candidate >= start:
                        return candidate
        day += dt.timedelta(days=1)
    return None


def next_fire(expression: str, now: dt.datetime) -> dt.datetime | None:
    """When a schedule should next fire after `now` (UTC), or None (manual only)."""
    seconds = rate_seconds(expression)
    if seconds is not None:
        return now + dt.timedelta(seconds=seconds)
    at = _AT.match(expression.strip())
    if at:
        when = dt.datetime.fromisoformat(at.group(1)).replace(tzinfo=dt.UTC)
        return when if when > now else None
    return next_cron(expression, now)


def scheduled_event(spec: ScheduleSpec, function_arn: str, region: str, account: str) -> Any:
    """The event a schedule delivers: its Input if set, else an EventBridge-style event."""
    if spec.input is not None:
        return spec.input
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if spec.kind == "ScheduleV2":
        source = "aws.scheduler"
        resource = f"arn:aws:scheduler:{region}:{account}:schedule/default/{spec.name}"
    else:
        source = "aws.events"
        resource = f"arn:aws:events:{region}:{account}:rule/{spec.name}"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": source,
        "account": account,
        "time": now,
        "region": region,
        "resources": [resource],
        "detail": {},
    }


class Scheduler(threading.Thread):
    def __init__(
        self,
        schedules: list[ScheduleSpec],
        fire: Callable[[ScheduleSpec], Any],
    ) -> None:
        super().__init__(name="localcloud-scheduler", daemon=True)
        self.schedules = [s for s in schedules if s.enabled]
        self._fire = fire
        self._stop_event = threading.Event()
        now = dt.datetime.now(dt.UTC)
        self.next_runs: dict[int, dt.datetime | None] = {}
        for index, spec in enumerate(self.schedules):
            try:
                self.next_runs[index] = next_fire(spec.expression, now)
            except ValueError as exc:
                log.warning("%s: %s; fire it manually", spec.name, exc)
                self.next_runs[index] = None

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.is_set():
            pending = {i: t for i, t in self.next_runs.items() if t is not None}
            if not pending:
                self._stop_event.wait(3600)
                continue
            index = min(pending, key=lambda i: pending[i])
            wait = (pending[index] - dt.datetime.now(dt.UTC)).total_seconds()
            if wait > 0 and self._stop_event.wait(min(wait, 60)):
                break
            if wait > 60:
                continue
            spec = self.schedules[index]
            self.next_runs[index] = next_fire(spec.expression, dt.datetime.now(dt.UTC))
            threading.Thread(
                target=self._safe_fire, args=(spec,), name=f"schedule-{spec.name}", daemon=True
            ).start()

    def _safe_fire(self, spec: ScheduleSpec) -> None:
        try:
            self._fire(spec)
        except Exception:
            log.exception("schedule %s failed", spec.name)


def dead_letter_body(event: Any) -> str:
    return json.dumps(event)
