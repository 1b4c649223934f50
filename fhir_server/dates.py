"""FHIR date/dateTime/instant values as UTC millisecond intervals (a partial date is a range)."""
from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone

MIN_MS = -(2**62)
MAX_MS = 2**62

_RX = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000) if dt.year >= 1 else MIN_MS


def parse_range(value: str) -> tuple[int, int] | None:
    """Return [low, high] in epoch ms covering the precision of `value`, or None if unparseable."""
    m = _RX.match(value.strip())
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    tzinfo = UTC
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        tzinfo = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    try:
        year = int(y)
        if mo is None:
            start = datetime(year, 1, 1, tzinfo=tzinfo)
            end = datetime(year + 1, 1, 1, tzinfo=tzinfo) if year < 9999 else datetime.max.replace(tzinfo=tzinfo)
        elif d is None:
            month = int(mo)
            start = datetime(year, month, 1, tzinfo=tzinfo)
            end = start + timedelta(days=calendar.monthrange(year, month)[1])
        elif hh is None:
            start = datetime(year, int(mo), int(d), tzinfo=tzinfo)
            end = start + timedelta(days=1)
        else:
            second = min(int(ss or 0), 59)
            micro = int((frac or "0")[:6].ljust(6, "0"))
            start = datetime(year, int(mo), int(d), int(hh), int(mi), second, micro, tzinfo=tzinfo)
            if ss is None:
                end = start + timedelta(minutes=1)
            elif frac:
                end = start + timedelta(milliseconds=1)
            else:
                end = start + timedelta(seconds=1)
    except ValueError:
        return None
    return _ms(start), _ms(end) - 1


def now_instant() -> tuple[str, int]:
    """The current time as a FHIR instant string (ms precision, UTC) and epoch ms."""
    now = datetime.now(UTC)
    ms = int(now.timestamp() * 1000)
    return instant_of(ms), ms


def instant_of(ms: int) -> str:
    """The FHIR instant (ms precision, UTC) of epoch milliseconds: text and number always agree."""
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+00:00"


def http_date(instant: str) -> str:
    """Format a FHIR instant for Last-Modified (RFC 7231)."""
    rng = parse_range(instant)
    ts = (rng[0] if rng else 0) / 1000
    return datetime.fromtimestamp(ts, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
