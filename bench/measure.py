"""Timing helpers: robust statistics for a noisy 2-core machine and a keep-alive loopback HTTP client."""
from __future__ import annotations

import http.client
import statistics
import time
from collections.abc import Callable
from typing import Any


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def p95_ms(samples: list[float]) -> float:
    """95th percentile (nearest rank)."""
    ordered = sorted(samples)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)] * 1000


def summary(samples: list[float]) -> dict[str, float]:
    return {"median_ms": round(median_ms(samples), 3), "p95_ms": round(p95_ms(samples), 3), "n": len(samples)}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


class Client:
    """One persistent HTTP/1.1 connection, as a browser or SMART app keeps to the server."""

    def __init__(self, url: str) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.headers = {"Accept": "application/fhir+json"}

    def authorize(self, token: str | None) -> None:
        """Send `token` as the Bearer token of every later request."""
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str) -> tuple[float, int, bytes]:
        """(seconds, status, body) of one GET, timed from sending the request to the last body byte."""
        for attempt in (1, 2):
            start = time.perf_counter()
            try:
                self.conn.request("GET", path, headers=self.headers)
                resp = self.conn.getresponse()
                body = resp.read()
                return time.perf_counter() - start, resp.status, body
            except (http.client.RemoteDisconnected, ConnectionError):
                self.conn.close()  # the server dropped an idle keep-alive connection: reconnect once
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def ok(self, path: str) -> tuple[float, bytes]:
        secs, status, body = self.get(path)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
        return secs, body

    def close(self) -> None:
        self.conn.close()
