"""EventBridge Scheduler expressions: one strict parser for the config check and the cost model.

`runs_per_month` is what the cost model multiplies by; it raises `ScheduleError` for anything EventBridge
Scheduler would refuse (or that would never fire), so `mastofargate.toml` is checked with the very code that
later prices it, before any file is written, instead of crashing the cost step afterwards.

The grammar is EventBridge Scheduler's: `rate(N unit)` with N >= 1 (unit singular for 1, plural otherwise),
`cron(minutes hours day-of-month month day-of-week year)` with `?` in exactly one of the two day fields, and
`at(yyyy-mm-ddThh:mm:ss)` (once; no monthly runs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from mastofargate.prices import HOURS_PER_MONTH

DAYS_PER_MONTH = HOURS_PER_MONTH / 24

_DOW = {d: i + 1 for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_MONTHS = {
    m: i + 1 for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"))
}
_UNIT_MINUTES = {"minute": 1, "hour": 60, "day": 1440}
ALLOWED = (
    "rate(N minutes|hours|days) with N >= 1 ('minute', 'hour', 'day' when N is 1), or cron(minutes hours "
    "day-of-month month day-of-week year) with '?' in exactly one of day-of-month and day-of-week"
)


class ScheduleError(ValueError):
    """An expression EventBridge Scheduler would refuse; the message names the part that is wrong."""


def runs_per_month(expression: str) -> float:
    """How often an EventBridge Scheduler expression fires in an average month; ScheduleError when invalid."""
    text = expression.strip()
    m = re.fullmatch(r"rate\((\d+) ([a-z]+)\)", text)
    if m:
        return HOURS_PER_MONTH * 60 / _rate_minutes(int(m.group(1)), m.group(2), expression)
    m = re.fullmatch(r"at\((.*)\)", text)
    if m:
        try:
            datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            raise ScheduleError(f"{expression!r}: at() takes yyyy-mm-ddThh:mm:ss") from None
        return 0.0  # runs once
    m = re.fullmatch(r"cron\((.*)\)", text)
    if not m:
        raise ScheduleError(f"{expression!r} is not a rate(), cron() or at() expression")
    return _cron_runs(m.group(1).split(), expression)


def _rate_minutes(value: int, unit: str, expression: str) -> int:
    base = unit.removesuffix("s")
    if base not in _UNIT_MINUTES:
        raise ScheduleError(f"{expression!r}: unit {unit!r} is not minute(s), hour(s) or day(s)")
    if value < 1:
        raise ScheduleError(f"{expression!r}: the rate must be at least 1 {base}")
    wanted = base if value == 1 else base + "s"
    if unit != wanted:
        raise ScheduleError(f"{expression!r}: EventBridge wants '{value} {wanted}'")
    return value * _UNIT_MINUTES[base]


def _cron_runs(fields: list[str], expression: str) -> float:
    if len(fields) != 6:
        raise ScheduleError(f"{expression!r}: cron() takes 6 fields, {len(fields)} given")
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ScheduleError(f"{expression!r}: exactly one of day-of-month ({dom}) and day-of-week ({dow}) must be '?'")
    per_day = len(_values("minutes", minute, 0, 59, expression)) * len(_values("hours", hour, 0, 23, expression))
    _values("year", year, 1970, 2199, expression)
    months = 1.0 if month == "*" else len(_values("month", month, 1, 12, expression, _MONTHS)) / 12
    if dom != "?":
        days = 1.0 if dom in ("L", "LW") or dom.endswith("W") else None
        if days is None:
            days = min(len(_values("day-of-month", dom, 1, 31, expression)), DAYS_PER_MONTH)
        elif dom.endswith("W") and dom != "LW":
            _values("day-of-month", dom[:-1], 1, 31, expression)
    else:
        days = _dow_days(dow, expression)
    return per_day * days * months


def _dow_days(dow: str, expression: str) -> float:
    """Days a month the day-of-week field fires: 'n#k' and 'nL' (or 'L') fire once a month."""
    m = re.fullmatch(r"([A-Z0-9]+)#([1-5])", dow.upper())
    if m:
        _values("day-of-week", m.group(1), 1, 7, expression, _DOW)
        return 1.0
    if dow.upper() == "L":
        return 1.0
    if dow.upper().endswith("L"):
        _values("day-of-week", dow[:-1], 1, 7, expression, _DOW)
        return 1.0
    return len(_values("day-of-week", dow, 1, 7, expression, _DOW)) * DAYS_PER_MONTH / 7


def _values(
    name: str, field: str, lo: int, hi: int, expression: str, names: Mapping[str, int] | None = None
) -> set[int]:
    """The values one cron field matches: '*', 'a', 'a,b', 'a-b', '*/s', 'a/s', 'a-b/s', names (MON, JAN)."""
    out: set[int] = set()
    for part in field.upper().split(","):
        rng, slash, step_text = part.partition("/")
        step = _number(name, step_text, 1, hi - lo + 1, expression) if slash else 1
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            first, _, last = rng.partition("-")
            a, b = _number(name, first, lo, hi, expression, names), _number(name, last, lo, hi, expression, names)
            if a > b:
                raise ScheduleError(f"{expression!r}: {name} range {rng!r} runs backwards")
        else:
            a = _number(name, rng, lo, hi, expression, names)
            b = hi if slash else a
        out.update(range(a, b + 1, step))
    return out


def _number(name: str, text: str, lo: int, hi: int, expression: str, names: Mapping[str, int] | None = None) -> int:
    if names and text in names:
        return names[text]
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise ScheduleError(f"{expression!r}: {name} value {text!r} is not a number from {lo} to {hi}")
    return int(text)
