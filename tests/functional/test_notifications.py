"""Notifications over a real SMTP server: each trigger from each writer (console, FHIR API, transaction,
batch, import), batching, corrections, preferences, one-click unsubscribe (RFC 8058), revocation, SMTP
down then up, several processes sending each mail once, and no health information in any mail."""
from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from carespace import close_app
from carespace.importer import run_import
from carespace.models import OutboxMail, PendingNotice
from tests.conftest import _new_db_url, make_app
from tests.support import portal_data as pd
from tests.support import practice as pr
from tests.support.smart import Smart, basic
from tests.support.smtp import Received, SmtpServer

LAB = "http://terminology.hl7.org/CodeSystem/observation-category"
PRACTICE = "frontdesk@practice.example"
# Words of the posted data that must never appear in a mail: test names and codes, values, units,
# document titles, message subjects and texts, a diagnosis, the patient's name.
SECRETS = ["Zincoprotoporphyrin", "Kumquat", "7.77", "umol/molHb", "Persimmon", "Quokka", "Pat Portal",
           "Ferritin-Zeta", "31.25", "Cardiology-Xylo", "Refill-Marmalade", "Take-two-Tamarind", "Lichen-Vulpes",
           "Portal", "12345-6", "Potassium", "2823-3", "mmol"]


WORLD_ADDRESSES = ("pat@example.com", "kin@example.com", "olga@example.com", PRACTICE)


@pytest.fixture
def world(backend: str, pg_cluster: Any, tmp_path: Path, smtp_server: SmtpServer) -> Iterator[dict[str, Any]]:
    """A practice with SMTP, a patient with an account, a proxy, a staff member signed in to `client`."""
    app = make_app(_new_db_url(backend, pg_cluster, tmp_path), tmp_path / "instance", SMTP_URL=smtp_server.url,
                   NOTIFY_WINDOW_S=0, PRACTICE_EMAIL=PRACTICE, MAIL_WORKER=False)
    fhir = app.extensions["fhir_service"]
    client = app.test_client()
    staff_uid, dr = pr.add_staff(app, fhir)
    pid = pr.patient(fhir, email="pat@example.com")
    patient_uid = pd.add_user(app, "pat@example.com", "Pat Portal", "1970-05-04", pid)
    proxy_uid = pd.add_proxy(app, fhir, pid, "kin@example.com", "Kim Kin", "1990-01-01")
    other = pr.patient(fhir, given="Olga", family="Other")
    other_uid = pd.add_user(app, "olga@example.com", "Olga Other", "1960-01-01", other)
    pd.sign_in(app, client, staff_uid)
    yield {"start": len(smtp_server.messages), "app": app, "fhir": fhir, "client": client, "pid": pid, "dr": dr, "patient": patient_uid,
           "proxy": proxy_uid, "other": other, "other_uid": other_uid, "staff": staff_uid, "smtp": smtp_server}
    close_app(app)


def deliver(w: dict[str, Any]) -> int:
    """Let the batching window pass (it is 0 here) and send what the outbox holds."""
    n = int(w["app"].extensions["notifier"].deliver_due())
    assert w["app"].extensions["mailer"].flush(10)
    return n


def mails(w: dict[str, Any], after: int) -> list[Received]:
    """This world's mails since index `after` (0: since the world began; the SMTP server is the session's)."""
    since = max(after, w["start"])
    return [m for m in w["smtp"].messages[since:] if any(a in m.to for a in WORLD_ADDRESSES)]


def to(found: list[Received], address: str) -> list[Received]:
    return [m for m in found if address in m.to]


def everything_in(m: Received) -> str:
    """Every header and every part of a mail, decoded."""
    heads = "\n".join(f"{k}: {v}" for k, v in m.message.items())
    parts = [p.get_content() for p in m.message.walk() if not p.is_multipart()]
    return heads + "\n" + "\n".join(str(p) for p in parts)


def no_phi(found: list[Received]) -> None:
    for m in found:
        blob = everything_in(m)
        for word in SECRETS:
            assert word.lower() not in blob.lower(), (word, blob)


def lab(pid: str, status: str = "final", name: str = "Zincoprotoporphyrin", value: float = 7.77,
        code: str = "12345-6") -> dict[str, Any]:
    return {"resourceType": "Observation", "status": status, "subject": {"reference": f"Patient/{pid}"},
            "category": [{"coding": [{"system": LAB, "code": "laboratory"}]}],
            "code": {"text": name, "coding": [{"system": "http://loinc.org", "code": code, "display": name}]},
            "effectiveDateTime": "2026-11-30", "valueQuantity": {"value": value, "unit": "umol/molHb"},
            "note": [{"text": "Kumquat diagnosis: Quokka"}]}


def from_practice(pid: str, dr: str, subject: str = "Refill-Marmalade", text: str = "Take-two-Tamarind") -> dict[str, Any]:
    return {"resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{pid}"},
            "recipient": [{"reference": f"Patient/{pid}"}], "sender": {"reference": f"Practitioner/{dr}"},
            "sent": "2026-12-01T10:00:00Z", "topic": {"text": subject}, "payload": [{"contentString": text}]}


def document(pid: str, title: str = "Cardiology-Xylo") -> dict[str, Any]:
    return {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": f"Patient/{pid}"},
            "description": title, "type": {"text": title},
            "content": [{"attachment": {"contentType": "text/plain", "title": title, "data": "UGVyc2ltbW9u"}}]}


def backend_token(w: dict[str, Any], scope: str = "system/*.cruds") -> dict[str, str]:
    """A real backend-services token (the EHR): client_credentials with a client secret."""
    smart = Smart(w["app"], w["client"])
    client_id, secret = smart.register("secret", grant_types=["client_credentials"], redirect_uris=[], scope=scope)
    r = w["client"].post("/oauth/token", data={"grant_type": "client_credentials", "scope": scope},
                         headers=basic(client_id, secret or ""))
    assert r.status_code == 200, r.get_data(as_text=True)
    return {"Authorization": f"Bearer {r.get_json()['access_token']}"}


def kinds_line(m: Received) -> str:
    """The sentence saying what kinds of thing are new."""
    return next(line.strip() for line in m.text.splitlines() if line.startswith("There is"))


# ---- each trigger from each writer -------------------------------------------------------------------
def test_console_result_document_and_message_mail_the_patient_and_the_proxy(world: dict[str, Any]) -> None:
    client, pid, after = world["client"], world["pid"], len(world["smtp"].messages)
    path = f"/practice/patients/{pid}/results/new"
    r = client.post(path, data={"csrf_token": pr.token(client, path), "test": "2823-3", "value": "31.25",
                                "date": "2026-11-30"})
    assert r.status_code == 302, r.get_data(as_text=True)[-2000:]
    assert deliver(world) == 2  # the patient and the proxy
    first = mails(world, after)
    assert sorted(m.to[0] for m in first) == ["kin@example.com", "pat@example.com"]
    assert all("new test results" in kinds_line(m) for m in first)
    after = len(world["smtp"].messages)
    path = f"/practice/patients/{pid}/documents/new"
    r = client.post(path, data={"csrf_token": pr.token(client, path), "title": "Cardiology-Xylo", "type": "11502-2",
                                "date": "2026-11-01", "file": (io.BytesIO(b"%PDF-1.4\n%Persimmon\n%%EOF"), "x.pdf")},
                    content_type="multipart/form-data")
    assert r.status_code == 302, r.get_data(as_text=True)[-2000:]
    path = f"/practice/patients/{pid}/messages/new"
    r = client.post(path, data={"csrf_token": pr.token(client, path), "category": "rx", "subject": "Refill-Marmalade",
                                "message": "Take-two-Tamarind"})
    assert r.status_code == 302
    assert deliver(world) == 2
    second = mails(world, after)
    assert len(second) == 2  # document and message within one window: one mail each
    assert all(kinds_line(m) == "There is a new message and a new document waiting for you in CareSpace."
               for m in second)
    assert to(mails(world, 0), "olga@example.com") == []  # another patient hears nothing
    no_phi(first + second)


def test_fhir_api_writes_from_the_ehr_notify_the_same_way(world: dict[str, Any]) -> None:
    client, pid, after = world["client"], world["pid"], len(world["smtp"].messages)
    auth = backend_token(world)
    assert client.post("/fhir/Observation", json=lab(pid), headers=auth).status_code == 201
    assert deliver(world) == 2
    assert len(to(mails(world, after), "pat@example.com")) == 1
    after = len(world["smtp"].messages)
    assert client.post("/fhir/DocumentReference", json=document(pid), headers=auth).status_code == 201
    assert client.post("/fhir/Communication", json=from_practice(world["pid"], world["dr"]),
                       headers=auth).status_code == 201
    assert deliver(world) == 2
    found = mails(world, after)
    assert [kinds_line(m) for m in to(found, "pat@example.com")] == [
        "There is a new message and a new document waiting for you in CareSpace."]
    no_phi(mails(world, 0))


def test_a_transaction_of_50_results_is_one_mail_per_person(world: dict[str, Any]) -> None:
    client, pid, after = world["client"], world["pid"], len(world["smtp"].messages)
    entries = [{"fullUrl": f"urn:uuid:00000000-0000-0000-0000-{n:012d}", "resource": lab(pid, value=7.77 + n),
                "request": {"method": "POST", "url": "Observation"}} for n in range(50)]
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
                    headers=backend_token(world))
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    assert deliver(world) == 2
    found = mails(world, after)
    assert len(to(found, "pat@example.com")) == 1 and len(to(found, "kin@example.com")) == 1
    assert deliver(world) == 0  # nothing left pending


def test_a_batch_is_one_mail_per_person_within_the_window(world: dict[str, Any]) -> None:
    client, pid, after = world["client"], world["pid"], len(world["smtp"].messages)
    entries = [{"resource": lab(pid), "request": {"method": "POST", "url": "Observation"}},
               {"resource": document(pid), "request": {"method": "POST", "url": "DocumentReference"}},
               {"resource": {"resourceType": "Observation"}, "request": {"method": "POST", "url": "Observation"}}]
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": entries},
                    headers=backend_token(world))
    assert r.status_code == 200
    assert [e["response"]["status"][:3] for e in r.get_json()["entry"]] == ["201", "201", "422"]
    assert deliver(world) == 2
    [mine] = to(mails(world, after), "pat@example.com")
    assert kinds_line(mine) == "There is new test results and a new document waiting for you in CareSpace."


def test_a_message_from_the_patient_mails_the_practice_without_health_information(world: dict[str, Any]) -> None:
    app, after = world["app"], len(world["smtp"].messages)
    pat = app.test_client()
    pd.sign_in(app, pat, world["patient"])
    r = pat.post("/messages/compose", data={"csrf_token": pd.csrf(pat), "category": "health",
                                            "subject": "Lichen-Vulpes", "message": "Persimmon Quokka"})
    assert r.status_code == 302, r.get_data(as_text=True)[-1500:]
    assert deliver(world) == 1
    [mail] = mails(world, after)
    assert mail.to == [PRACTICE] and mail.subject == "New message from a patient in CareSpace"
    assert "http://localhost/practice/inbox" in mail.links()
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    no_phi([mail])
    home = world["client"].get("/practice").get_data(as_text=True)
    assert "1 unread" in home  # the console shows the unread count


def test_no_practice_address_means_no_practice_mail(backend: str, pg_cluster: Any, tmp_path: Path,
                                                    smtp_server: SmtpServer) -> None:
    app = make_app(_new_db_url(backend, pg_cluster, tmp_path), tmp_path / "instance", SMTP_URL=smtp_server.url,
                   NOTIFY_WINDOW_S=0, MAIL_WORKER=False)
    try:
        fhir = app.extensions["fhir_service"]
        pid = pr.patient(fhir)
        uid = pd.add_user(app, "solo@example.com", "Solo Pat", "1970-05-04", pid)
        pat = app.test_client()
        pd.sign_in(app, pat, uid)
        r = pat.post("/messages/compose", data={"csrf_token": pd.csrf(pat), "category": "rx", "subject": "S",
                                                "message": "T"})
        assert r.status_code == 302
        assert app.extensions["notifier"].deliver_due() == 0
        with app.extensions["carespace.sessions"]() as s:
            assert s.execute(select(func.count()).select_from(PendingNotice)).scalar() == 0
    finally:
        close_app(app)


# ---- what does not notify ------------------------------------------------------------------------------
def test_corrections_and_updates_do_not_notify_but_a_result_becoming_final_does(world: dict[str, Any]) -> None:
    fhir, pid = world["fhir"], world["pid"]
    oid = fhir.create(pd.SYS, "Observation", lab(pid)).stored.id
    assert deliver(world) == 2
    after = len(world["smtp"].messages)
    current = fhir.read(pd.SYS, "Observation", oid).json()
    fhir.update(pd.SYS, "Observation", oid, {**current, "status": "amended", "valueQuantity": {"value": 8.1}})
    current = fhir.read(pd.SYS, "Observation", oid).json()
    fhir.update(pd.SYS, "Observation", oid, {**current, "status": "entered-in-error"})
    doc = fhir.create(pd.SYS, "DocumentReference", document(pid)).stored.id
    assert deliver(world) == 2
    after = len(world["smtp"].messages)
    current = fhir.read(pd.SYS, "DocumentReference", doc).json()
    fhir.update(pd.SYS, "DocumentReference", doc, {**current, "status": "entered-in-error"})
    fhir.create(pd.SYS, "Observation", lab(pid, status="preliminary"))
    fhir.create(pd.SYS, "Observation", {**lab(pid), "category": [{"coding": [{"system": LAB, "code": "vital-signs"}]}]})
    assert deliver(world) == 0 and mails(world, after) == []
    prelim = fhir.create(pd.SYS, "Observation", lab(pid, status="preliminary")).stored.id
    current = fhir.read(pd.SYS, "Observation", prelim).json()
    fhir.update(pd.SYS, "Observation", prelim, {**current, "status": "final"})
    assert deliver(world) == 2


def test_import_tells_nobody_unless_asked(world: dict[str, Any], tmp_path: Path) -> None:
    pid, after = world["pid"], len(world["smtp"].messages)
    path = tmp_path / "history.ndjson"
    path.write_text("\n".join(json.dumps({**lab(pid), "id": f"hist-{n}"}) for n in range(3)) + "\n")
    run_import(world["fhir"], [path], out=io.StringIO())
    assert deliver(world) == 0 and mails(world, after) == []
    path.write_text(json.dumps({**lab(pid), "id": "hist-new"}) + "\n")
    run_import(world["fhir"], [path], out=io.StringIO(), notify=True)
    assert deliver(world) == 2


def test_the_cli_import_takes_notify() -> None:
    from carespace.cli import build_parser
    args = build_parser().parse_args(["import", "--notify", "x.ndjson"])
    assert args.notify is True and build_parser().parse_args(["import", "x.ndjson"]).notify is False


# ---- batching ------------------------------------------------------------------------------------------
def test_additions_within_the_window_make_one_mail(world: dict[str, Any]) -> None:
    app, fhir, pid, after = world["app"], world["fhir"], world["pid"], len(world["smtp"].messages)
    app.extensions["notifier"].window_s = 300
    fhir.create(pd.SYS, "Observation", lab(pid))
    assert deliver(world) == 0  # the window has not passed
    app.config["CLOCK_OFFSET_S"] = 200
    fhir.create(pd.SYS, "Communication", from_practice(pid, world["dr"]))
    assert deliver(world) == 0
    app.config["CLOCK_OFFSET_S"] = 301  # 5 minutes after the first addition
    assert deliver(world) == 2
    [mine] = to(mails(world, after), "pat@example.com")
    assert kinds_line(mine) == "There is a new message and new test results waiting for you in CareSpace."


def test_the_background_sender_mails_after_the_window(world: dict[str, Any]) -> None:
    app, after = world["app"], len(world["smtp"].messages)
    notifier, mailer = app.extensions["notifier"], app.extensions["mailer"]
    notifier.worker_enabled = mailer.worker_enabled = True
    notifier.window_s = 0.5
    try:
        world["fhir"].create(pd.SYS, "DocumentReference", document(world["pid"]))
        world["smtp"].wait_for("pat@example.com", "You have something new in CareSpace", after=after)
    finally:
        notifier.stop()
        mailer.stop()


# ---- preferences, unsubscribe, revocation -------------------------------------------------------------
def test_preferences_on_the_account_page(world: dict[str, Any]) -> None:
    app, fhir, pid = world["app"], world["fhir"], world["pid"]
    pat = app.test_client()
    pd.sign_in(app, pat, world["patient"])
    page = pat.get("/account").get_data(as_text=True)
    assert page.count(" checked>") == 3  # on by default
    r = pat.post("/account/notifications", data={"csrf_token": pd.csrf(pat, "/account"), "messages": "on"})
    assert r.status_code == 302 and r.headers["Location"] == "/account"
    assert pat.get("/account").get_data(as_text=True).count(" checked>") == 1
    assert pat.post("/account/notifications", data={"messages": "on"}).status_code == 400  # CSRF
    after = len(world["smtp"].messages)
    fhir.create(pd.SYS, "Observation", lab(pid))
    fhir.create(pd.SYS, "DocumentReference", document(pid))
    deliver(world)
    assert to(mails(world, after), "pat@example.com") == []  # results and documents are off
    assert len(to(mails(world, after), "kin@example.com")) == 1  # the proxy chose nothing: all on
    fhir.create(pd.SYS, "Communication", from_practice(pid, world["dr"]))
    deliver(world)
    assert [kinds_line(m) for m in to(mails(world, after), "pat@example.com")] == [
        "There is a new message waiting for you in CareSpace."]


def test_one_click_unsubscribe_works_without_signing_in_and_does_nothing_else(world: dict[str, Any]) -> None:
    app, fhir, pid, after = world["app"], world["fhir"], world["pid"], len(world["smtp"].messages)
    fhir.create(pd.SYS, "Observation", lab(pid))
    deliver(world)
    [mail] = to(mails(world, after), "pat@example.com")
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = str(mail.message["List-Unsubscribe"]).strip().strip("<>")
    assert url.startswith("http://localhost/unsubscribe?t=") and url in mail.text
    path = url.removeprefix("http://localhost")
    anon = app.test_client()
    assert anon.get(path).status_code == 200  # a confirmation page: opening the link changes nothing
    assert app.extensions["accounts"].notifications.of(world["patient"]) == dict.fromkeys(
        ("messages", "results", "documents"), True)
    tampered = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    assert anon.post(tampered, data="List-Unsubscribe=One-Click",
                     content_type="application/x-www-form-urlencoded").status_code == 400
    r = anon.post(path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 200 and "no more emails" in r.get_data(as_text=True)
    assert anon.get("/health").status_code == 302  # the link signed nobody in
    assert app.extensions["accounts"].notifications.of(world["patient"]) == dict.fromkeys(
        ("messages", "results", "documents"), False)
    after = len(world["smtp"].messages)
    fhir.create(pd.SYS, "Communication", from_practice(pid, world["dr"]))
    deliver(world)
    assert to(mails(world, after), "pat@example.com") == [] and len(to(mails(world, after), "kin@example.com")) == 1


def test_the_practice_address_unsubscribes_too(world: dict[str, Any]) -> None:
    app, pid, after = world["app"], world["pid"], len(world["smtp"].messages)
    msg = {**from_practice(pid, world["dr"]), "sender": {"reference": f"Patient/{pid}"},
           "category": [{"coding": [{"system": "urn:carespace:message-category", "code": "rx"}]}]}
    world["fhir"].create(pd.SYS, "Communication", msg)
    deliver(world)
    [mail] = to(mails(world, after), PRACTICE)
    path = str(mail.message["List-Unsubscribe"]).strip().strip("<>").removeprefix("http://localhost")
    assert app.test_client().post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    after = len(world["smtp"].messages)
    world["fhir"].create(pd.SYS, "Communication", msg)
    deliver(world)
    assert to(mails(world, after), PRACTICE) == []


def test_revoked_proxies_and_disabled_accounts_get_nothing(world: dict[str, Any]) -> None:
    app, fhir, pid, after = world["app"], world["fhir"], world["pid"], len(world["smtp"].messages)
    fhir.create(pd.SYS, "Observation", lab(pid))  # queued while the proxy still had access ...
    pd.revoke(app, world["proxy"], pid)  # ... revoked before the mail went out
    deliver(world)
    assert to(mails(world, after), "kin@example.com") == [] and len(to(mails(world, after), "pat@example.com")) == 1
    after = len(world["smtp"].messages)
    fhir.create(pd.SYS, "DocumentReference", document(pid))
    deliver(world)
    assert to(mails(world, after), "kin@example.com") == []
    from smart_auth.accounts.models import User
    with app.extensions["carespace.sessions"]() as s:
        s.execute(update(User).where(User.id == world["patient"]).values(status="disabled"))
        s.commit()
    after = len(world["smtp"].messages)
    fhir.create(pd.SYS, "DocumentReference", document(pid))
    deliver(world)
    assert mails(world, after) == []


# ---- delivery guarantees -------------------------------------------------------------------------------
def test_smtp_down_then_up_loses_nothing(backend: str, pg_cluster: Any, tmp_path: Path) -> None:
    later = SmtpServer()  # its port is chosen, nothing listens yet
    app = make_app(_new_db_url(backend, pg_cluster, tmp_path), tmp_path / "instance", SMTP_URL=later.url,
                   NOTIFY_WINDOW_S=0, MAIL_WORKER=False)
    try:
        fhir = app.extensions["fhir_service"]
        pid = pr.patient(fhir)
        pd.add_user(app, "down@example.com", "Down Pat", "1970-05-04", pid)
        fhir.create(pd.SYS, "Observation", lab(pid))
        assert app.extensions["notifier"].deliver_due() == 1
        assert app.extensions["mailer"].deliver_due() == 0  # SMTP is down: kept and retried
        [row] = app.extensions["mailer"].outbox()
        assert row["status"] == "retrying" and row["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        later.start()
        try:
            with app.extensions["carespace.sessions"]() as s:
                s.execute(update(OutboxMail).values(due_at=0))  # the retry is due
                s.commit()
            assert app.extensions["mailer"].flush(10)
            later.wait_for("down@example.com", "You have something new in CareSpace")
        finally:
            later.stop()
    finally:
        close_app(app)


def test_several_processes_send_each_mail_once(world: dict[str, Any], tmp_path: Path) -> None:
    """Two apps on one database (two server processes) deliver at the same moment: one mail each person."""
    app = world["app"]
    second = make_app(app.config["DATABASE_URL"], tmp_path / "instance", SMTP_URL=world["smtp"].url,
                      NOTIFY_WINDOW_S=0, MAIL_WORKER=False)
    try:
        fhir, pid, after = world["fhir"], world["pid"], len(world["smtp"].messages)
        for _ in range(5):
            fhir.create(pd.SYS, "Observation", lab(pid))
        start = threading.Barrier(4)
        counts: list[int] = []

        def run(notifier: Any) -> None:
            start.wait()
            counts.append(notifier.deliver_due())

        threads = [threading.Thread(target=run, args=(a.extensions["notifier"],)) for a in (app, second, app, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(counts) == 2
        assert app.extensions["mailer"].flush(10)
        assert sorted(m.to[0] for m in mails(world, after)) == ["kin@example.com", "pat@example.com"]
    finally:
        close_app(second)


def test_a_failing_notifier_never_fails_the_write(world: dict[str, Any]) -> None:
    """The write is committed before the hooks run: a broken hook is logged and the answer stays 201."""
    fhir = world["fhir"]

    def broken(_commit: Any) -> None:
        raise RuntimeError("boom")

    fhir.on_commit.insert(0, broken)
    try:
        r = world["client"].post("/fhir/Observation", json=lab(world["pid"]), headers=backend_token(world))
        assert r.status_code == 201
        assert fhir.read(pd.SYS, "Observation", r.get_json()["id"]).json()["status"] == "final"
        assert deliver(world) == 2  # the other hooks still ran
    finally:
        fhir.on_commit.remove(broken)
