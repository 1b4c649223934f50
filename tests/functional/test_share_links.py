"""Share by link (SMART Health Links) over the Flask test client, on both backends.

The receiver here is written from the SMART Health Links specification only: it decodes the
`shlink:/` payload, POSTs the manifest request, and decrypts each file (JWE `dir`, A256GCM) with
jwcrypto, an independent JOSE implementation; fhirclient's R4 models check the Bundle.
"""
from __future__ import annotations

import base64
import html as htmllib
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhirclient.models.bundle import Bundle
from jwcrypto import jwe, jwk
from sqlalchemy import update

from bundles.models import ShareLink
from carespace.demo_clinical import add_clinical_demo
from tests.support import portal_data as pd
from tests.support.qr import decode_svg

PASSCODE = "tulip-42"
RECIPIENT = "Dr. Lee, Riverside Clinic"


@pytest.fixture
def patient(app: Any, fhir: Any) -> tuple[str, int]:
    pid = pd.add_patient(fhir, "Pat", "Sharer", "1970-05-04")
    add_clinical_demo(fhir, pid)
    uid = pd.add_user(app, "pat@example.com", "Pat Sharer", "1970-05-04", pid)
    return pid, uid


@pytest.fixture
def signed_in(app: Any, client: Any, patient: tuple[str, int]) -> tuple[str, int]:
    pd.sign_in(app, client, patient[1])
    return patient


def make_link(client: Any, **fields: Any) -> Any:
    data: dict[str, Any] = {"csrf_token": pd.csrf(client, "/health/share-link"), "label": "For Dr. Lee",
                            "share": "all", "start": "", "end": "", "passcode": PASSCODE, "expires": "30",
                            "action": "create", **fields}
    return client.post("/health/share-link", data=data)


def shlink_of(resp: Any) -> str:
    assert resp.status_code == 200, resp.get_data(as_text=True)[:2000]
    m = re.search(r'<textarea id="shlink"[^>]*>([^<]+)</textarea>', resp.get_data(as_text=True))
    assert m
    return htmllib.unescape(m.group(1)).strip()


# ---- the receiver, from the spec ----
def decode(shlink: str) -> dict[str, Any]:
    """The payload of a SMART Health Link: `shlink:/` then base64url JSON (a viewer prefix ends in `#`)."""
    text = shlink.split("#", 1)[-1]
    assert text.startswith("shlink:/")
    body = text[len("shlink:/"):]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))  # type: ignore[no-any-return]


def path_of(url: str) -> str:
    assert url.startswith("http://localhost/")
    return url[len("http://localhost"):]


def request_manifest(anon: Any, payload: dict[str, Any], **body: Any) -> Any:
    return anon.post(path_of(payload["url"]), data=json.dumps({"recipient": RECIPIENT, **body}),
                     content_type="application/json")


def open_file(compact: str, key: str) -> dict[str, Any]:
    """Decrypt a file with jwcrypto: alg dir, enc A256GCM, the 32-byte key from the payload."""
    token = jwe.JWE()
    token.deserialize(compact, key=jwk.JWK(kty="oct", k=key))
    assert token.jose_header["alg"] == "dir" and token.jose_header["enc"] == "A256GCM"
    assert token.jose_header["cty"] == "application/fhir+json"
    bundle = json.loads(token.payload)
    Bundle(bundle, strict=True)
    return bundle  # type: ignore[no-any-return]


def receive(anon: Any, shlink: str, **body: Any) -> dict[str, Any]:
    payload = decode(shlink)
    r = request_manifest(anon, payload, **body)
    assert r.status_code == 200, r.get_data(as_text=True)
    files = r.get_json()["files"]
    assert len(files) == 1 and files[0]["contentType"] == "application/fhir+json"
    if "embedded" in files[0]:
        return open_file(files[0]["embedded"], payload["key"])
    got = anon.get(path_of(files[0]["location"]))
    assert got.status_code == 200 and got.mimetype == "application/jose"
    return open_file(got.get_data(as_text=True), payload["key"])


def types_of(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["resourceType"] for e in bundle["entry"]]


def details(app: Any, pid: str) -> str:
    app.extensions["audit_log"].flush()
    events = app.extensions["fhir_service"].search(pd.SYS, "AuditEvent", [("patient", pid), ("_count", "500")])[1]
    return " ".join(t for _, _, t in events.matches)


# ---- tests ----
def test_pages_require_login(client: Any) -> None:
    for path in ("/health/share-link", "/health/share-links"):
        r = client.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/login?next="), path


def test_health_offers_share_by_link_and_the_form_is_labelled(client: Any, signed_in: tuple[str, int]) -> None:
    assert 'href="/health/share-link">Share by link</a>' in client.get("/health").get_data(as_text=True)
    html = client.get("/health/share-link").get_data(as_text=True)
    for field, label in [("label", "Label"), ("start", "Start date"), ("end", "End date"), ("passcode", "Passcode"),
                         ("no_passcode", "Share without a passcode"), ("expires", "Expires"),
                         ("share-all", "All my records")]:
        assert f'<label for="{field}">{label}</label>' in html and f'id="{field}"' in html, field
    assert "anyone who sees the QR code" in html and re.search(r'<th scope="row">Labs</th><td>27</td>', html)


def test_payload_per_spec_and_a_receiver_from_the_spec_opens_it(app: Any, client: Any,
                                                                signed_in: tuple[str, int]) -> None:
    pid, _ = signed_in
    r = make_link(client)
    page = r.get_data(as_text=True)
    assert r.headers["Cache-Control"] == "private, no-store" and "only time CareSpace shows this link" in page
    shlink = shlink_of(r)
    payload = decode(shlink)
    assert set(payload) <= {"url", "key", "exp", "flag", "label", "v"} and payload["flag"] == "P"
    assert payload["label"] == "For Dr. Lee" and len(payload["key"]) == 43
    assert len(base64.urlsafe_b64decode(payload["key"] + "=")) == 32
    token = payload["url"].rsplit("/", 1)[1]
    assert payload["url"].startswith("http://localhost/shl/manifest/") and len(base64.urlsafe_b64decode(token + "=")) == 32
    assert len(payload["url"]) <= 128
    in_30_days = (datetime.now(UTC) + timedelta(days=30)).timestamp()
    assert abs(payload["exp"] - in_30_days) < 120
    viewer = f"http://localhost/shl#{shlink}"
    assert f'value="{viewer}"' in page

    anon = app.test_client()
    bundle = receive(anon, shlink, passcode=PASSCODE)
    types = types_of(bundle)
    assert types[0] == "Patient" and bundle["entry"][0]["resource"]["id"] == pid
    assert types.count("Observation") == 27 and types.count("DocumentReference") == 9 and "AuditEvent" not in types

    # the server keeps neither the key nor the passcode, only ciphertext
    from carespace.db import metadatas
    with app.extensions["carespace.engine"].connect() as conn:
        for md in metadatas():
            for table in md.sorted_tables:
                for row in conn.execute(table.select()):
                    dumped = json.dumps([str(v) for v in row])
                    assert payload["key"] not in dumped and PASSCODE not in dumped and token not in dumped, table.name


def test_qr_code_decodes_to_the_viewer_link(client: Any, signed_in: tuple[str, int]) -> None:
    r = make_link(client)
    shlink = shlink_of(r)
    svg = re.search(r"<svg.*?</svg>", r.get_data(as_text=True), re.S)
    assert svg and "<script" not in svg.group(0) and " style=" not in svg.group(0)
    assert decode_svg(svg.group(0)) == f"http://localhost/shl#{shlink}"


def test_kinds_and_dates_narrow_what_is_shared(app: Any, client: Any, signed_in: tuple[str, int]) -> None:
    today = datetime.now(UTC).date()
    start = (today - timedelta(days=35)).isoformat()
    bundle = receive(app.test_client(), shlink_of(make_link(client, share="kinds", kind=["Documents"], start=start,
                                                            end=today.isoformat())), passcode=PASSCODE)
    types = types_of(bundle)
    assert types == ["Patient", "DocumentReference", "DocumentReference", "DocumentReference"]
    r = make_link(client, share="kinds")
    assert r.status_code == 400 and "Choose at least one kind of record" in r.get_data(as_text=True)


def test_bad_form_input_is_named_per_field(app: Any, client: Any, signed_in: tuple[str, int]) -> None:
    r = make_link(client, label="x" * 81, start="2024-05-01", end="2024-04-01", passcode="abc", expires="3")
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    assert "Label must be at most 80 characters." in html and "End date must be on or after the start date." in html
    assert "Passcode must be 6 to 200 characters." in html and "Choose when the link stops working." in html
    r = make_link(client, passcode="")
    assert r.status_code == 400 and "Enter a passcode, or choose to share without one." in r.get_data(as_text=True)
    r = client.post("/health/share-link", data={"label": "x", "passcode": PASSCODE})
    assert r.status_code == 400  # no CSRF token
    assert app.extensions["share_links"].links(signed_in[0]) == []


def test_no_passcode_link_and_location_files_are_single_use(app: Any, client: Any, signed_in: tuple[str, int]) -> None:
    shlink = shlink_of(make_link(client, passcode="", no_passcode="1"))
    payload = decode(shlink)
    assert "flag" not in payload
    anon = app.test_client()
    r = request_manifest(anon, payload, embeddedLengthMax=10)
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*"
    file = r.get_json()["files"][0]
    assert "embedded" not in file and file["location"].startswith("http://localhost/shl/file/")
    got = anon.get(path_of(file["location"]))
    assert got.status_code == 200 and got.mimetype == "application/jose"
    assert types_of(open_file(got.get_data(as_text=True), payload["key"]))[0] == "Patient"
    assert anon.get(path_of(file["location"])).status_code == 404  # single use
    assert anon.get("/shl/file/not-a-token").status_code == 404


def test_manifest_request_errors(app: Any, client: Any, signed_in: tuple[str, int]) -> None:
    payload = decode(shlink_of(make_link(client)))
    anon = app.test_client()
    path = path_of(payload["url"])
    for body in ({}, {"recipient": ""}, {"recipient": 5}, [], {"recipient": "x", "embeddedLengthMax": "big"},
                 {"recipient": "x", "passcode": 1234}):
        r = anon.post(path, data=json.dumps(body), content_type="application/json")
        assert r.status_code == 400 and r.get_json()["error"] == "invalid_request", body
    r = anon.post(path, data="not json", content_type="application/json")
    assert r.status_code == 400
    r = anon.post("/shl/manifest/unknown-token", json={"recipient": RECIPIENT})
    assert r.status_code == 404
    pre = anon.open(path, method="OPTIONS")
    assert pre.status_code == 204 and "POST" in pre.headers["Access-Control-Allow-Methods"]


def test_wrong_passcodes_count_down_to_a_dead_link(app: Any, client: Any, signed_in: tuple[str, int]) -> None:
    pid, _ = signed_in
    shlink = shlink_of(make_link(client))
    payload = decode(shlink)
    anon = app.test_client()
    r = request_manifest(anon, payload)  # no passcode at all counts as a wrong one
    assert r.status_code == 401 and r.get_json()["remainingAttempts"] == 9
    for left in range(8, 0, -1):
        r = request_manifest(anon, payload, passcode="guess")
        assert r.status_code == 401 and r.get_json()["remainingAttempts"] == left
    assert receive(anon, shlink, passcode=PASSCODE)["entry"]  # the right one still opens it
    r = request_manifest(anon, payload, passcode="guess")
    assert r.status_code == 401 and r.get_json()["remainingAttempts"] == 0
    r = request_manifest(anon, payload, passcode=PASSCODE)
    assert r.status_code == 404  # dead: not even the right passcode opens it
    listing = client.get("/health/share-links").get_data(as_text=True)
    assert "Stopped after too many wrong passcodes" in listing
    assert "wrong passcode, the link no longer works" in details(app, pid)


@pytest.fixture
def other_process(app: Any, tmp_path: Any) -> Any:
    """A second app on the same database: its own engine, pool and instance folder (another server process)."""
    from carespace import close_app
    from tests.conftest import make_app
    twin = make_app(app.config["DATABASE_URL"], tmp_path / "second-instance", MAIL_WORKER=False)
    yield twin
    close_app(twin)


def race(apps: list[Any], send: Any, racers: int = 8) -> list[Any]:
    """The same request from `racers` threads at once, alternating between the apps; their answers."""
    start = threading.Barrier(racers)
    answers: list[Any] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        client = apps[i % len(apps)].test_client()
        start.wait()
        resp = send(client)
        with lock:
            answers.append((resp.status_code, resp.get_json(silent=True)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == racers
    return answers


def test_the_countdown_holds_across_processes(app: Any, client: Any, signed_in: tuple[str, int],
                                             other_process: Any) -> None:
    payload = decode(shlink_of(make_link(client)))
    answers = race([app, other_process], lambda c: request_manifest(c, payload, passcode="a-guess"))
    assert sorted(body["remainingAttempts"] for status, body in answers if status == 401) == list(range(2, 10))
    r = request_manifest(other_process.test_client(), payload, passcode="a-guess")
    assert r.status_code == 401 and r.get_json()["remainingAttempts"] == 1


def test_a_location_is_used_once_across_processes(app: Any, client: Any, signed_in: tuple[str, int],
                                                  other_process: Any) -> None:
    payload = decode(shlink_of(make_link(client, passcode="", no_passcode="1")))
    file = request_manifest(app.test_client(), payload, embeddedLengthMax=0).get_json()["files"][0]
    answers = race([app, other_process], lambda c: c.get(path_of(file["location"])))
    assert sorted(status for status, _ in answers) == [200] + [404] * 7


def test_expired_and_revoked_links_are_gone(app: Any, client: Any, signed_in: tuple[str, int]) -> None:
    pid, _ = signed_in
    first = decode(shlink_of(make_link(client, label="First")))
    second = decode(shlink_of(make_link(client, label="Second")))
    anon = app.test_client()
    with app.extensions["carespace.sessions"].begin() as s:
        s.execute(update(ShareLink).where(ShareLink.label == "First")
                  .values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    assert request_manifest(anon, first, passcode=PASSCODE).status_code == 404
    links = app.extensions["share_links"].links(pid)
    assert [(v.row.label, v.status) for v in links] == [("Second", "active"), ("First", "expired")]
    assert links[1].row.jwe is None  # the ciphertext of an expired link is erased

    listing = client.get("/health/share-links").get_data(as_text=True)
    assert listing.count(">Revoke link</button>") == 1
    r = client.post(f"/health/share-links/{links[0].row.id}/revoke", data={})
    assert r.status_code == 400  # CSRF
    token = pd.csrf(client, "/health/share-links")
    r = client.post(f"/health/share-links/{links[0].row.id}/revoke", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["Location"] == "/health/share-links"
    assert "no longer works" in client.get("/health/share-links").get_data(as_text=True)
    assert request_manifest(anon, second, passcode=PASSCODE).status_code == 404
    assert client.post("/health/share-links/99999/revoke", data={"csrf_token": token}).status_code == 404
    assert "Share by link \u201cSecond\u201d revoked" in details(app, pid)


def test_list_shows_opens_and_who_and_the_access_log_has_each_access(app: Any, client: Any,
                                                                     signed_in: tuple[str, int]) -> None:
    pid, _ = signed_in
    shlink = shlink_of(make_link(client))
    anon = app.test_client()
    receive(anon, shlink, passcode=PASSCODE)
    receive(anon, shlink, passcode=PASSCODE)
    request_manifest(anon, decode(shlink), passcode="nope")
    listing = client.get("/health/share-links").get_data(as_text=True)
    assert "For Dr. Lee" in listing and "2 times" in listing and RECIPIENT in listing
    text = details(app, pid)
    assert text.count(f"{RECIPIENT} opened the shared records") == 2 and "wrong passcode, 9 attempts left" in text
    log = client.get("/access-log").get_data(as_text=True)
    assert "Share link recipient" in htmllib.unescape(log) and RECIPIENT in htmllib.unescape(log)


def test_a_proxy_shares_lists_and_revokes_for_the_patient(app: Any, client: Any, fhir: Any,
                                                          patient: tuple[str, int]) -> None:
    pid, owner = patient
    kid = pd.add_proxy(app, fhir, pid, "kid@example.com", "Kid Sharer", "2001-01-01")
    pd.sign_in(app, client, kid)
    shlink = shlink_of(make_link(client, label="By the kid"))
    bundle = receive(app.test_client(), shlink, passcode=PASSCODE)
    assert bundle["entry"][0]["resource"]["id"] == pid
    links = app.extensions["share_links"].links(pid)
    assert links[0].row.creator_name == "Kid Sharer" and links[0].row.creator_ref.startswith("RelatedPerson/")
    pd.sign_in(app, client, owner)  # the patient sees and can revoke it too
    listing = client.get("/health/share-links").get_data(as_text=True)
    assert "By the kid" in listing and "By Kid Sharer" in listing
    pd.sign_in(app, client, kid)
    r = client.post(f"/health/share-links/{links[0].row.id}/revoke",
                    data={"csrf_token": pd.csrf(client, "/health/share-links")})
    assert r.status_code == 303
    other_pid = pd.add_patient(fhir, "Other", "Person", "1980-01-01")
    other = pd.add_user(app, "other@example.com", "Other Person", "1980-01-01", other_pid)
    pd.sign_in(app, client, other)
    assert "By the kid" not in client.get("/health/share-links").get_data(as_text=True)


def test_long_term_link_shows_the_record_as_it_is_now(app: Any, client: Any, fhir: Any,
                                                      signed_in: tuple[str, int]) -> None:
    pid, _ = signed_in
    shlink = shlink_of(make_link(client, long_term="1"))
    assert decode(shlink)["flag"] == "LP"
    anon = app.test_client()
    before = types_of(receive(anon, shlink, passcode=PASSCODE)).count("Observation")
    fhir.create(pd.SYS, "Observation", {
        "resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3", "display": "Potassium"}]},
        "effectiveDateTime": datetime.now(UTC).date().isoformat(), "valueQuantity": {"value": 4.1, "unit": "mmol/L"}})
    r = request_manifest(anon, decode(shlink), passcode=PASSCODE)
    assert r.get_json()["status"] == "can-change"
    after = open_file(r.get_json()["files"][0]["embedded"], decode(shlink)["key"])
    assert types_of(after).count("Observation") == before + 1


def test_viewer_page_is_public_and_keeps_the_csp(client: Any) -> None:
    r = client.get("/shl")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "shl.js" in html and "<script>" not in html
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and r.headers["Referrer-Policy"] == "no-referrer"
    js = client.get("/static/bundles/shl.js")
    assert js.status_code == 200 and "AES-GCM" in js.get_data(as_text=True)


def test_a_proxys_links_stop_when_their_access_is_revoked(app: Any, client: Any, fhir: Any,
                                                          patient: tuple[str, int]) -> None:
    from sqlalchemy import select

    from smart_auth.accounts.models import PatientAccess
    pid, owner = patient
    kid = pd.add_proxy(app, fhir, pid, "kid@example.com", "Kid Sharer", "2001-01-01")
    pd.sign_in(app, client, kid)
    shlink = shlink_of(make_link(client, label="Kept by the kid", long_term="1"))
    anon = app.test_client()
    assert receive(anon, shlink, passcode=PASSCODE)["entry"]
    with app.extensions["carespace.sessions"]() as s:
        access_id = s.execute(select(PatientAccess.id).where(PatientAccess.user_id == kid)).scalar_one()
    pd.sign_in(app, client, owner)
    r = client.post(f"/manage-users/{access_id}/revoke", data={"csrf_token": pd.csrf(client, "/manage-users")})
    assert r.status_code in (302, 303)
    assert request_manifest(anon, decode(shlink), passcode=PASSCODE).status_code == 404
    links = app.extensions["share_links"].links(pid)
    assert links[0].status == "revoked" and links[0].row.jwe is None and links[0].row.wrapped_key is None
    assert "Kid Sharer no longer has shared access" in details(app, pid)
