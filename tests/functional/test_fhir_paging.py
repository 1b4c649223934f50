"""Paging links stay correct while others write between page fetches, and cursors cannot be forged."""
from __future__ import annotations

import base64
from typing import Any

from tests.support.fhirapi import create, link, matches, ok

CODE = "http://loinc.org|2339-0"


def observation(n: int, day: int, code: str = "2339-0") -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "identifier": [{"system": "urn:n", "value": str(n)}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "effectiveDateTime": f"2021-01-{day:02d}T12:00:00Z", "valueQuantity": {"value": n}}


def number(r: dict[str, Any]) -> int:
    return int(r["identifier"][0]["value"])


def walk_while_writing(client: Any, url: str, write: Any) -> tuple[list[int], int]:
    """Follow next links, calling write(page_number) after each page; returns the numbers seen and pages."""
    seen: list[int] = []
    bundle = ok(client.get(url))
    pages = 0
    while True:
        seen += [number(r) for r in matches(bundle)]
        pages += 1
        write(pages)
        nxt = link(bundle, "next")
        if not nxt:
            return seen, pages
        bundle = ok(client.get(nxt))


def test_inserts_between_pages_never_repeat_or_skip_results(fhir_client: Any) -> None:
    """Default order: new matches appear at the end, nothing already seen repeats, nothing existing is skipped."""
    for n in range(30):
        create(fhir_client, observation(n, 1 + n % 28))
    extra = iter(range(100, 200))

    def write(page: int) -> None:
        if page <= 3:
            for _ in range(4):
                create(fhir_client, observation(next(extra), 15))
            create(fhir_client, observation(999, 15, code="other"))  # not matching

    seen, _ = walk_while_writing(fhir_client, f"/fhir/Observation?code={CODE}&_count=7", write)
    assert len(seen) == len(set(seen))
    assert set(range(30)) <= set(seen)
    assert set(seen) - set(range(30)) == set(range(100, 112))  # written before the last page was read
    assert 999 not in seen


def test_sorted_paging_survives_inserts_deletes_and_updates(fhir_client: Any) -> None:
    """_sort=-date keyset: inserts on both sides, deleting seen and updating unseen rows shift nothing."""
    made = {n: create(fhir_client, observation(n, 1 + n))["id"] for n in range(24)}  # days 1..24

    def write(page: int) -> None:
        if page == 1:
            create(fhir_client, observation(200, 28))  # newer than everything seen: before the cursor
            create(fhir_client, observation(201, 1))  # older than everything: still ahead of the cursor
            ok(fhir_client.delete(f"/fhir/Observation/{made[23]}"))  # already seen
            body = observation(5, 6)
            body["id"] = made[5]
            body["status"] = "amended"
            ok(fhir_client.put(f"/fhir/Observation/{made[5]}", json=body))

    seen, pages = walk_while_writing(fhir_client, f"/fhir/Observation?code={CODE}&_sort=-date&_count=5", write)
    assert seen[:5] == [23, 22, 21, 20, 19]
    assert len(seen) == len(set(seen))
    assert seen[5:] == list(range(18, -1, -1)) + [201]
    assert 200 not in seen and pages == 5


def test_previous_link_pages_back_after_writes(fhir_client: Any) -> None:
    """previous from page 3 returns page 2 again, unaffected by the row inserted at the end."""
    for n in range(12):
        create(fhir_client, observation(n, 1))
    url = f"/fhir/Observation?code={CODE}&_count=4"
    p1 = ok(fhir_client.get(url))
    p2 = ok(fhir_client.get(link(p1, "next")))
    create(fhir_client, observation(50, 1))
    p3 = ok(fhir_client.get(link(p2, "next")))
    back = ok(fhir_client.get(link(p3, "previous")))
    assert [number(r) for r in matches(back)] == [4, 5, 6, 7]
    first = ok(fhir_client.get(link(back, "previous")))
    assert [number(r) for r in matches(first)] == [0, 1, 2, 3]
    assert link(first, "previous") is None
    last = ok(fhir_client.get(link(p3, "next")))
    assert [number(r) for r in matches(last)] == [50] and link(last, "next") is None


def test_tampered_or_foreign_cursor_is_refused(fhir_client: Any) -> None:
    """A cursor with a flipped byte, or one from another search, is a 400 OperationOutcome."""
    for n in range(6):
        create(fhir_client, observation(n, 1))
    bundle = ok(fhir_client.get(f"/fhir/Observation?code={CODE}&_count=2"))
    nxt = link(bundle, "next")
    assert nxt
    cursor = nxt.split("_cursor=")[1].split("&")[0]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-3] ^= 1
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    bad = ok(fhir_client.get(f"/fhir/Observation?code={CODE}&_count=2&_cursor={forged}"), 400)
    assert bad["resourceType"] == "OperationOutcome"
    other = ok(fhir_client.get(f"/fhir/Observation?code=other&_count=2&_cursor={cursor}"), 400)
    assert "cursor" in other["issue"][0]["diagnostics"]
    for junk in ("x", "%%%", "AAAA", ""):
        resp = fhir_client.get(f"/fhir/Observation?code={CODE}&_cursor={junk}")
        assert resp.status_code in (200, 400) and resp.get_json()["resourceType"] in ("Bundle", "OperationOutcome")
