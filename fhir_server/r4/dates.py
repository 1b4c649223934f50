"""FHIR date/dateTime/instant values as UTC millisecond intervals (a partial date is a range)."""
from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone

MIN_MS = -(2**62)
MAX_MS = 2**62

_RX = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _ms(dt: datetime) -> int:
    """Epoch milliseconds by integer arithmetic (a float timestamp can lose the last millisecond)."""
    return (dt - _EPOCH) // _ONE_MS


def _after(start: datetime, span: timedelta | None) -> datetime:
    """start + span, or the end of time for ranges that close after year 9999."""
    try:
        if span is not None:
            return start + span
    except OverflowError:
        pass
    return datetime.max.replace(tzinfo=start.tzinfo)


def parse_range(value: str) -> tuple[int, int] | None:
    """Return [low, high] in epoch ms covering the precision of `value`, or None if unparseable."""
    m = _RX.match(value.strip())
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    try:
        tzinfo = UTC
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            tzinfo = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
        year = int(y)
        if mo is None:
            start = datetime(year, 1, 1, tzinfo=tzinfo)
            end = _after(start, datetime(year + 1, 1, 1, tzinfo=tzinfo) - start if year < 9999 else None)
        elif d is None:
            month = int(mo)
            start = datetime(year, month, 1, tzinfo=tzinfo)
            end = _after(start, timedelta(days=calendar.monthrange(year, month)[1]))
        elif hh is None:
            start = datetime(year, int(mo), int(d), tzinfo=tzinfo)
            end = _after(start, timedelta(days=1))
        else:
            second = min(int(ss or 0), 59)
            micro = int((frac or "0")[:6].ljust(6, "0"))
            start = datetime(year, int(mo), int(d), int(hh), int(mi), second, micro, tzinfo=tzinfo)
            end = _after(start, timedelta(minutes=1) if ss is None else _ONE_MS if frac else timedelta(seconds=1))
    except (ValueError, OverflowError):  # impossible dates, offsets beyond 24 h, past year 9999
        return None
    return _ms(start), _ms(end) - 1


def now_instant() -> tuple[str, int]:
    """The current time as a FHIR instant string (ms precision, UTC) and epoch ms."""
    ms = _ms(datetime.now(UTC))
    return instant_of(ms), ms


def instant_of(ms: int) -> str:
    """The FHIR instant (ms precision, UTC) of epoch milliseconds: text and number always agree."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+00:00"


def http_date(instant: str) -> str:
    """Format a FHIR instant for Last-Modified (RFC 7231)."""
    rng = parse_range(instant)
    ts = (rng[0] if rng else 0) / 1000
    return datetime.fromtimestamp(ts, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
