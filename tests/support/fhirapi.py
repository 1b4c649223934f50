"""Small helpers for driving the FHIR API through the Flask test client in functional tests."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

FHIR_JSON = "application/fhir+json"


def ok(resp: Any, status: int = 200) -> dict[str, Any]:
    """The JSON body of a response, asserting its status (with the body in the failure message)."""
    assert resp.status_code == status, f"{resp.status_code} != {status}: {resp.get_data(as_text=True)[:2000]}"
    body = resp.get_json()
    assert isinstance(body, dict)
    return body


def matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]


def included(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "include"]


def outcomes(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "outcome"]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((x["url"] for x in bundle.get("link", []) if x["relation"] == relation), None)


def total(client: Any, url: str) -> int:
    """The server's count for a search (via _summary=count)."""
    sep = "&" if "?" in url else "?"
    body = ok(client.get(url + sep + "_summary=count"))
    assert "entry" not in body or not matches(body)
    return int(body["total"])


def search_all(client: Any, url: str, relation: str = "next") -> list[dict[str, Any]]:
    """Every match of a search, following `relation` links to the end; fails on a repeated resource."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    next_url: str | None = url
    pages = 0
    while next_url:
        bundle = ok(client.get(next_url))
        for r in matches(bundle):
            key = (r["resourceType"], r["id"])
            assert key not in seen, f"{key} repeated on page {pages + 1}"
            seen.add(key)
            out.append(r)
        next_url = link(bundle, relation)
        pages += 1
        assert pages < 1000, "paging does not end"
    return out


def q(value: str) -> str:
    """URL-encode one search value (keeps | , : as FHIR expects them readable but safe)."""
    return quote(value, safe="|,:")


def create(client: Any, resource: dict[str, Any], **headers: str) -> dict[str, Any]:
    """POST a resource and return the stored representation."""
    return ok(client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=headers), 201)


def count_type(client: Any, rtype: str) -> int:
    return total(client, f"/fhir/{rtype}")
