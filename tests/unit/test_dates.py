"""FHIR dates as millisecond ranges: each precision, time zones, calendars and garbage."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from fhir_server.r4.dates import http_date, instant_of, now_instant, parse_range


def ms(*args: int, tz: timezone = UTC) -> int:
    """Epoch milliseconds computed with integer arithmetic (independent of the module under test)."""
    return (datetime(*args, tzinfo=tz) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@pytest.mark.parametrize("value,low,high", [
    ("2020", ms(2020, 1, 1), ms(2021, 1, 1)),
    ("2020-02", ms(2020, 2, 1), ms(2020, 3, 1)),  # leap February
    ("2021-02", ms(2021, 2, 1), ms(2021, 3, 1)),
    ("2020-12", ms(2020, 12, 1), ms(2021, 1, 1)),
    ("2020-02-29", ms(2020, 2, 29), ms(2020, 3, 1)),
    ("2020-03-01T10:15Z", ms(2020, 3, 1, 10, 15), ms(2020, 3, 1, 10, 16)),
    ("2020-03-01T10:15:30Z", ms(2020, 3, 1, 10, 15, 30), ms(2020, 3, 1, 10, 15, 31)),
    ("2020-03-01T10:15:30.250Z", ms(2020, 3, 1, 10, 15, 30) + 250, ms(2020, 3, 1, 10, 15, 30) + 251),
    ("2020-03-01T10:15:30+02:00", ms(2020, 3, 1, 8, 15, 30), ms(2020, 3, 1, 8, 15, 31)),
    ("2020-03-01T00:30:00-05:30", ms(2020, 3, 1, 6, 0, 0), ms(2020, 3, 1, 6, 0, 1)),
    ("2020-03-01T10:15:30", ms(2020, 3, 1, 10, 15, 30), ms(2020, 3, 1, 10, 15, 31)),  # no zone: UTC
    ("1850-07-04", ms(1850, 7, 4), ms(1850, 7, 5)),
    ("0001", ms(1, 1, 1), ms(2, 1, 1)),
])
def test_each_precision_is_the_range_it_covers(value: str, low: int, high: int) -> None:
    """A partial date covers its whole year/month/day/minute/second; high is inclusive (end - 1 ms)."""
    assert parse_range(value) == (low, high - 1)


@pytest.mark.parametrize("value", ["2020-13", "2020-00", "2020-02-30", "2021-02-29", "2020-04-31", "2020-01-01T24:00Z",
                                   "2020-01-01T10:60Z", "2020-1-1", "20200101", "2020-01-01T10", "garbage", "",
                                   "2020-01-01T10:00:00+2:00", "0000", "2020-01-01 10:00", "２０２０"])
def test_garbage_is_none(value: str) -> None:
    """Impossible or malformed dates are not silently rounded."""
    assert parse_range(value) is None


def test_instant_text_and_milliseconds_always_agree() -> None:
    """The stored meta.lastUpdated text parses back to exactly the indexed millisecond."""
    for n in (0, 1, 999, 1000, 1_700_000_000_123, 1_795_642_043_348, -1, -86_400_001):
        text = instant_of(n)
        assert parse_range(text) == (n, n)
        assert text.endswith("+00:00") and len(text.split(".")[1]) == 9
    text, now = now_instant()
    assert parse_range(text) == (now, now)
    assert abs(now - ms(*datetime.now(UTC).timetuple()[:6])) < 2000


def test_http_date_for_last_modified() -> None:
    """Last-Modified is RFC 7231 (IMF-fixdate) in GMT, to the second."""
    assert http_date("2020-03-01T10:15:30.999+02:00") == "Sun, 01 Mar 2020 08:15:30 GMT"
    assert http_date("1999-12-31T23:59:59Z") == "Fri, 31 Dec 1999 23:59:59 GMT"


def test_far_edges_and_offsets_beyond_a_day() -> None:
    """Year 9999 ranges close at the end of time; offsets beyond 24 h are garbage, not a crash."""
    assert parse_range("9999-12-31") == (ms(9999, 12, 31), ms(9999, 12, 31, 23, 59, 59) + 998)
    assert parse_range("9999-12")[0] == ms(9999, 12, 1)  # type: ignore[index]
    assert parse_range("2020-01-01T10:00:00+25:00") is None
    assert parse_range("2020-01-01T10:00:00+23:59") == (ms(2019, 12, 31, 10, 1), ms(2019, 12, 31, 10, 1) + 999)
