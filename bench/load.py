"""`python -m bench.load`: a practice's mixed traffic against a real `carespace serve`, then checks.

Users, each a thread with its own HTTP connection and a short think time between requests, for a fixed time:

- patients sign in through the login form and open Health, Messages and a message, signing out and in again
  now and then;
- SMART apps (a confidential app each patient authorized through the real authorize and consent pages) read
  the patient, search labs and read a result with their token, refresh it (rotation) and run the code flow
  again (remembered consent);
- the EHR (a Backend Services client, private_key_jwt) creates lab results, amends them and sends messages,
  searches, and asks for a new token now and then.

Afterwards every write is read back through the API (the last value and version written), the server is
stopped cleanly (its queued AuditEvents are written) and the AuditEvents are counted per client: every
access by an app or the EHR and every portal page must be recorded. The table gives p50/p95/p99 per
request kind. Exit status 1 on any error (5xx, unexpected status, connection failure), lost write,
missing AuditEvent or traceback in the server log. Loopback only; bounded by --seconds and --users.

    .venv/bin/python -m bench.load --backend sqlite --users 60 --seconds 60
    .venv/bin/python -m bench.load --backend both --users 100 --seconds 60 --json bench/results/load.json
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
ATYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
APP_SCOPE = "launch/patient openid fhirUser offline_access patient/*.rs"
EHR_SCOPE = "system/*.cruds"
REDIRECT = "http://127.0.0.1:9/callback"  # never followed: the driver reads the code from the Location header
LOINC = "http://loinc.org"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
MSG_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
TIMEOUT_S = 30


# ---- the practice ---------------------------------------------------------------------------------------------
@dataclass
class PatientLogin:
    patient_id: str
    email: str
    birth_date: str
    password: str


@dataclass
class World:
    """What the load runs against: the served URL, the patients, the app and the EHR client."""

    url: str
    patients: list[PatientLogin]
    app_id: str
    app_secret: str
    ehr_id: str
    ehr_key: Any
    practitioner: str


def prepare(db_url: str, folder: Path, url: str, n_patients: int) -> World:
    """Load the demo practice and `n_patients` more patients with accounts, labs, documents and messages;
    register the SMART app and the EHR's backend client. Done in this process before the server starts."""
    from joserfc import jwk
    from sqlalchemy import select

    from carespace import close_app, create_app, db
    from carespace.demo_clinical import add_clinical_demo, practice
    from fhir_server import AccessContext
    from smart_auth.accounts.demo import DEMO_PASSWORD, load_demo
    from smart_auth.accounts.models import PatientAccess, User
    from smart_auth.oauth.service import register_client

    app = create_app({"INSTANCE_DIR": str(folder), "DATABASE_URL": db_url, "BASE_URL": url, "MAIL_WORKER": False})
    try:
        db.upgrade(app.extensions["carespace.engine"])
        fhir = app.extensions["fhir_service"]
        logins = load_demo(fhir)
        _org, dr = practice(fhir)
        sys_ctx = AccessContext.system("load")
        out = [PatientLogin(str(lg.email), str(lg.email), str(lg.birth_date), DEMO_PASSWORD)
               for lg in logins if lg.note == "patient"]
        extra = []
        for n in range(len(out), n_patients):
            birth = f"19{50 + n % 50:02d}-0{1 + n % 9}-1{n % 10}"
            pid = fhir.create(sys_ctx, "Patient", {
                "resourceType": "Patient", "name": [{"given": [f"Load{n}"], "family": "Patient"}],
                "birthDate": birth, "gender": "female" if n % 2 else "male"}).stored.id
            add_clinical_demo(fhir, pid)
            extra.append(PatientLogin(pid, f"load{n}@example.org", birth, DEMO_PASSWORD))
        with app.extensions["carespace.write_sessions"]() as s:
            users = {u.email: u for u in s.execute(select(User)).scalars()}
            hashed = users[out[0].email].password_hash  # one argon2 hash for every load patient
            for p in out:
                p.patient_id = str(users[p.email].fhir_user).split("/", 1)[1]
            for p in extra:
                user = User(email=p.email, name=f"{p.email.split('@')[0]} Patient", birth_date=p.birth_date,
                            role="patient", fhir_user=f"Patient/{p.patient_id}", session_epoch=0, status="active",
                            password_hash=hashed)
                s.add(user)
                s.flush()
                s.add(PatientAccess(user_id=user.id, patient_id=p.patient_id, relationship="self", status="active"))
            out += extra
            app_client = register_client(s, name="Load test app", kind="secret", redirect_uris=[REDIRECT])
            key = jwk.ECKey.generate_key("P-384", private=True)
            kid = secrets.token_hex(8)
            public = {"keys": [dict(key.as_dict(private=False), kid=kid, alg="ES384", key_ops=["verify"])]}
            ehr = register_client(s, name="Load test EHR", kind="jwks", jwks=json.dumps(public), redirect_uris=[],
                                  scope=EHR_SCOPE, grant_types=["client_credentials"])
            s.commit()
        key.kid_for_load = kid  # type: ignore[attr-defined]
        assert app_client.client_secret is not None
        return World(url, out[:max(n_patients, 1)], app_client.client_id, app_client.client_secret, ehr.client_id,
                     key, dr)
    finally:
        close_app(app)


# ---- measuring --------------------------------------------------------------------------------------------------
@dataclass
class Stats:
    """Latencies and outcomes per request kind, and the writes to read back."""

    times: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    writes: dict[str, tuple[str, int]] = field(default_factory=dict)  # "Type/id" -> (marker, version)
    audited: Counter[str] = field(default_factory=Counter)  # who -> accesses that must be recorded
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, kind: str, session: requests.Session, method: str, url: str, ok: tuple[int, ...] = (200,),
             **kw: Any) -> requests.Response | None:
        start = time.perf_counter()
        try:
            resp = session.request(method, url, timeout=TIMEOUT_S, allow_redirects=False, **kw)
        except requests.RequestException as exc:
            self._bad(kind, f"{kind}: {exc.__class__.__name__}: {exc}")
            return None
        spent = time.perf_counter() - start
        with self.lock:
            self.times.setdefault(kind, []).append(spent)
            self.statuses.setdefault(kind, Counter())[resp.status_code] += 1
        if resp.status_code not in ok:
            self._bad(kind, f"{kind}: {method} {urlsplit(url).path} -> {resp.status_code} "
                            f"{resp.headers.get('Content-Type')} {resp.text[:200]!r}")
            return None
        return resp

    def _bad(self, kind: str, what: str) -> None:
        with self.lock:
            self.errors[kind] += 1
            if len(self.samples) < 30:
                self.samples.append(what)

    def audit(self, who: str) -> None:
        with self.lock:
            self.audited[who] += 1


class User(threading.Thread):
    def __init__(self, world: World, stats: Stats, deadline: float, think: float, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.world, self.stats, self.deadline, self.think, self.rng = world, stats, deadline, think, rng
        self.http = requests.Session()
        self.base = world.url

    def pause(self) -> None:
        time.sleep(self.rng.uniform(0.5, 1.5) * self.think)

    def running(self) -> bool:
        return time.time() < self.deadline

    def run(self) -> None:
        try:
            self.work()
        except Exception as exc:  # noqa: BLE001 - a crashed user is an error of the run, not of the driver
            self.stats._bad("driver", f"{type(self).__name__} crashed: {exc.__class__.__name__}: {exc}")
        finally:
            self.http.close()  # the user leaves: its keep-alive connection closes

    def work(self) -> None:
        raise NotImplementedError


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    return m.group(1) if m else ""


class Patient(User):
    """A patient in the portal: sign in, Health, Messages, a message; sign out and in again now and then."""

    def __init__(self, who: PatientLogin, *args: Any) -> None:
        super().__init__(*args)
        self.who = who

    def sign_in(self) -> bool:
        page = self.stats.call("portal sign-in page", self.http, "GET", f"{self.base}/login")
        if page is None:
            return False
        resp = self.stats.call("portal sign-in", self.http, "POST", f"{self.base}/login", ok=(302,), data={
            "csrf_token": _csrf(page.text), "email": self.who.email, "password": self.who.password,
            "birth_date": self.who.birth_date})
        return resp is not None

    def work(self) -> None:
        n = 0
        while self.running():
            if n % 12 == 0:
                if n:
                    page = self.stats.call("portal health", self.http, "GET", f"{self.base}/health")
                    self.stats.call("portal sign-out", self.http, "POST", f"{self.base}/logout", ok=(302,),
                                    data={"csrf_token": _csrf(page.text) if page is not None else ""})
                if not self.sign_in():
                    self.pause()
                    n += 1
                    continue
            n += 1
            if self.stats.call("portal health", self.http, "GET", f"{self.base}/health") is not None:
                self.stats.audit(f"Patient/{self.who.patient_id}")
            self.pause()
            inbox = self.stats.call("portal messages", self.http, "GET", f"{self.base}/messages")
            if inbox is not None:
                self.stats.audit(f"Patient/{self.who.patient_id}")
                ids = [i for i in re.findall(r'href="/messages/([A-Za-z0-9\-.]+)"', inbox.text) if i != "compose"]
                if ids:
                    self.pause()
                    if self.stats.call("portal message", self.http, "GET",
                                       f"{self.base}/messages/{self.rng.choice(ids)}") is not None:
                        self.stats.audit(f"Patient/{self.who.patient_id}")
            self.pause()


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class App(Patient):
    """A SMART app of one patient: authorized through the real pages, then reads and searches with its token,
    refreshes it and runs the code flow again now and then."""

    token: str = ""
    refresh: str = ""

    def authorize(self) -> bool:
        verifier, challenge = _pkce()
        state = secrets.token_urlsafe(8)
        params = {"response_type": "code", "client_id": self.world.app_id, "redirect_uri": REDIRECT,
                  "scope": APP_SCOPE, "state": state, "aud": f"{self.base}/fhir", "code_challenge": challenge,
                  "code_challenge_method": "S256"}
        resp = self.stats.call("oauth authorize", self.http, "GET", f"{self.base}/oauth/authorize?{urlencode(params)}",
                               ok=(200, 302))
        if resp is not None and resp.status_code == 200:  # the consent page, the first time
            html = resp.text
            form: dict[str, Any] = {"rid": re.search(r'name="rid" value="([^"]+)"', html).group(1),  # type: ignore[union-attr]
                                    "csrf_token": _csrf(html), "decision": "allow",
                                    "type": re.findall(r'name="type" value="([^"]+)"', html), "offline": "1"}
            radios = re.findall(r'name="patient_id" value="([^"]+)"', html)
            if radios:
                form["patient_id"] = radios[0]
            resp = self.stats.call("oauth consent", self.http, "POST", f"{self.base}/oauth/consent", ok=(302,),
                                   data=form)
        if resp is None:
            return False
        q = {k: v[0] for k, v in parse_qs(urlsplit(resp.headers.get("Location", "")).query).items()}
        if q.get("state") != state or "code" not in q:
            self.stats._bad("oauth authorize", f"oauth authorize: no code in {resp.headers.get('Location')!r}")
            return False
        tok = self.stats.call("token: code exchange", self.http, "POST", f"{self.base}/oauth/token",
                              auth=(self.world.app_id, self.world.app_secret),
                              data={"grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT,
                                    "code_verifier": verifier})
        if tok is None:
            return False
        body = tok.json()
        self.token, self.refresh = body["access_token"], body.get("refresh_token", "")
        return True

    def do_refresh(self) -> None:
        resp = self.stats.call("token: refresh", self.http, "POST", f"{self.base}/oauth/token",
                               auth=(self.world.app_id, self.world.app_secret),
                               data={"grant_type": "refresh_token", "refresh_token": self.refresh})
        if resp is not None:
            body = resp.json()
            self.token, self.refresh = body["access_token"], body.get("refresh_token", self.refresh)

    def fhir(self, kind: str, path: str) -> requests.Response | None:
        resp = self.stats.call(kind, self.http, "GET", f"{self.base}/fhir/{path}",
                               headers={"Authorization": f"Bearer {self.token}", "Accept": "application/fhir+json"})
        if resp is not None:
            self.stats.audit(f"client:{self.world.app_id}")
        return resp

    def work(self) -> None:
        while self.running() and not (self.sign_in() and self.authorize()):
            self.pause()
        pid = self.who.patient_id
        n = 0
        while self.running():
            n += 1
            if n % 40 == 0:
                self.authorize()
            elif n % 10 == 0 and self.refresh:
                self.do_refresh()
            self.fhir("app read Patient", f"Patient/{pid}")
            self.pause()
            found = self.fhir("app search labs", f"Observation?patient={pid}&category=laboratory&_sort=-date&_count=20")
            ids = [e["resource"]["id"] for e in (found.json().get("entry") or [])] if found is not None else []
            self.pause()
            if ids:
                self.fhir("app read Observation", f"Observation/{self.rng.choice(ids)}")
                self.pause()


class Ehr(User):
    """The practice's EHR as a Backend Services client: lab results created and amended, messages sent."""

    token: str = ""
    token_at: float = 0.0

    def get_token(self) -> None:
        from joserfc import jwt
        now = int(time.time())
        url = f"{self.base}/oauth/token"
        key = self.world.ehr_key
        claims = {"iss": self.world.ehr_id, "sub": self.world.ehr_id, "aud": url, "exp": now + 240,
                  "jti": secrets.token_hex(16)}
        assertion = jwt.encode({"alg": "ES384", "kid": key.kid_for_load, "typ": "JWT"}, claims, key,
                               algorithms=["ES384"])
        resp = self.stats.call("token: backend services", self.http, "POST", url, data={
            "grant_type": "client_credentials", "scope": EHR_SCOPE, "client_assertion_type": ATYPE,
            "client_assertion": assertion})
        if resp is not None:
            self.token, self.token_at = resp.json()["access_token"], time.time()

    def send(self, kind: str, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        resp = self.stats.call(kind, self.http, method, f"{self.base}/fhir/{path}", ok=ok, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/fhir+json",
            "Content-Type": "application/fhir+json"}, data=json.dumps(body) if body is not None else None)
        if resp is not None:
            self.stats.audit(f"client:{self.world.ehr_id}")
            return resp.json()
        return None

    def lab(self, pid: str, marker: str, value: float, status: str = "final", fid: str | None = None) -> dict[str, Any]:
        obs: dict[str, Any] = {
            "resourceType": "Observation", "status": status,
            "identifier": [{"system": "urn:carespace:load", "value": marker}],
            "category": [{"coding": [{"system": OBS_CAT, "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": "2345-7", "display": "Glucose"}], "text": "Glucose"},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                          time.gmtime()),
            "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
            "referenceRange": [{"low": {"value": 70, "unit": "mg/dL"}, "high": {"value": 99, "unit": "mg/dL"}}]}
        if fid:
            obs["id"] = fid
        return obs

    def remember(self, created: dict[str, Any] | None, marker: str) -> None:
        if created is not None:
            with self.stats.lock:
                self.stats.writes[f"{created['resourceType']}/{created['id']}"] = (
                    marker, int(created["meta"]["versionId"]))

    def work(self) -> None:
        mine: list[tuple[str, str]] = []  # (patient, Observation id) created by this EHR user
        n = 0
        while self.running():
            if not self.token or time.time() - self.token_at > 120 or n % 25 == 0:
                self.get_token()
                if not self.token:
                    self.pause()
                    continue
            n += 1
            pid = self.rng.choice(self.world.patients).patient_id
            roll = self.rng.random()
            marker = uuid.uuid4().hex
            if roll < 0.4 or not mine:
                created = self.send("ehr create result", "POST", "Observation",
                                    self.lab(pid, marker, round(self.rng.uniform(60, 200), 1)), ok=(201,))
                self.remember(created, marker)
                if created is not None:
                    mine.append((pid, created["id"]))
            elif roll < 0.65:
                opid, fid = self.rng.choice(mine)
                updated = self.send("ehr amend result", "PUT", f"Observation/{fid}",
                                    self.lab(opid, marker, round(self.rng.uniform(60, 200), 1), "amended", fid))
                self.remember(updated, marker)
            elif roll < 0.85:
                msg = {"resourceType": "Communication", "status": "completed",
                       "identifier": [{"system": "urn:carespace:load", "value": marker}],
                       "category": [{"coding": [{"system": MSG_CATEGORY, "code": "notification"}], "text": "Health"}],
                       "subject": {"reference": f"Patient/{pid}"}, "topic": {"text": "Your results are ready"},
                       "sender": {"reference": f"Practitioner/{self.world.practitioner}"},
                       "recipient": [{"reference": f"Patient/{pid}"}],
                       "sent": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "payload": [{"contentString": f"New results are in your Health page ({marker[:8]})."}]}
                self.remember(self.send("ehr send message", "POST", "Communication", msg, ok=(201,)), marker)
            else:
                self.send("ehr search", "GET", f"Observation?patient={pid}&code={LOINC}|2345-7&_sort=-date&_count=10")
            self.pause()


# ---- the run --------------------------------------------------------------------------------------------------
def serve(folder: Path, db_url: str, port: int, threads: int, workers: int = 1,
          replica_url: str | None = None) -> subprocess.Popen[bytes]:
    """`carespace serve` with `threads` threads in each of `workers` processes, reading from `replica_url` if set."""
    env = {**os.environ, "CARESPACE_INSTANCE_DIR": str(folder), "CARESPACE_DATABASE_URL": db_url,
           "CARESPACE_BASE_URL": f"http://127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"}
    env.pop("CARESPACE_SMTP_URL", None)
    env.pop("CARESPACE_DATABASE_REPLICA_URL", None)
    if replica_url:
        env["CARESPACE_DATABASE_REPLICA_URL"] = replica_url
    log = open(folder / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "carespace", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--threads", str(threads), "--workers", str(workers)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return proc
        except requests.RequestException:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    raise RuntimeError("server did not start: " + (folder / "server.log").read_text()[-3000:])


def read_back(world: World, stats: Stats) -> list[str]:
    """Every write, read through the API: the last marker and version the EHR wrote must be what is stored (a
message may have a later version: the patient's portal marks it read)."""
    ehr = Ehr(world, stats, 0, 0, random.Random(0))
    ehr.get_token()
    if not ehr.token:
        return ["no token to read the writes back with (see the errors)"]
    lost: list[str] = []
    for ref, (marker, version) in sorted(stats.writes.items()):
        got = ehr.send("read back", "GET", ref)
        markers = [i.get("value") for i in (got or {}).get("identifier", [])]
        stored = int((got or {}).get("meta", {}).get("versionId", 0))
        # the EHR is the only writer of its results; a message is also updated by the portal when read
        if got is None or marker not in markers or stored < version or (ref.startswith("Observation/")
                                                                         and stored != version):
            lost.append(f"{ref}: wrote {marker} v{version}, read {markers} "
                        f"v{(got or {}).get('meta', {}).get('versionId')}")
    return lost


def count_audit(db_url: str) -> Counter[str]:
    """AuditEvents of accesses (type rest) per app client and per person (the portal), from the database."""
    from sqlalchemy import create_engine, text
    engine = create_engine(db_url)
    found: Counter[str] = Counter()
    with engine.connect() as conn:
        for (body,) in conn.execute(text("SELECT text FROM fhir_resource WHERE res_type = 'AuditEvent' "
                                         "AND text IS NOT NULL")):
            ev = json.loads(body)
            if ev.get("type", {}).get("code") != "rest":
                continue
            agents = ev.get("agent") or []
            client = next((a["who"]["identifier"]["value"] for a in agents
                           if a.get("who", {}).get("identifier", {}).get("system") == "urn:carespace:client"), None)
            if client:
                found[f"client:{client}"] += 1
            elif agents and agents[0].get("who", {}).get("reference"):
                found[agents[0]["who"]["reference"]] += 1
    engine.dispose()
    return found


def stop(proc: subprocess.Popen[bytes], folder: Path) -> dict[str, Any]:
    """SIGTERM (the queued AuditEvents are written), then the audit queue's figures from the server's log."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log = (folder / "server.log").read_text(errors="replace")
    queues = [json.loads(m) for m in re.findall(r"^audit queue(?: \(worker \d+\))?: (\{.*\})$", log, re.M)]
    return {"audit_queue": _summed(queues) if queues else None, "tracebacks": log.count("Traceback"),
            "log_tail": log[-2000:] if "Traceback" in log else ""}


def _summed(queues: list[dict[str, Any]]) -> dict[str, Any]:
    """The audit queues of every worker as one: events and refusals add up, waits and depths take the worst."""
    out = dict(queues[0])
    for q in queues[1:]:
        for key, value in q.items():
            if isinstance(value, (int, float)) and key in out:
                out[key] = max(out[key], value) if key.startswith("max") or key == "limit" else out[key] + value
    return out


def run(backend: str, db_url: str, users: int, seconds: float, think: float = 0.3, threads: int = 8,
        patients: int = 20, seed: int = 15, folder: Path | None = None, quiet: bool = False, workers: int = 1,
        replica_url: str | None = None, ready: Any = None) -> dict[str, Any]:
    """One load run on a fresh database; returns the figures and the problems found (empty: passed).

    `ready()`, if given, is called once the practice is prepared, before serving (a replica catches up).
    """
    from tests.support.postgres import free_port
    folder = folder or Path(tempfile.mkdtemp(prefix=f"carespace-load-{backend}-"))
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.time()
    world = prepare(db_url, folder, url, patients)
    say = (lambda msg: None) if quiet else (lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}",
                                                                file=sys.stderr, flush=True))
    say(f"{backend}: {len(world.patients)} patients ready in {time.time() - t0:.0f} s; serving on {url}")
    if ready is not None:
        ready()
    proc = serve(folder, db_url, port, threads, workers, replica_url)
    stats = Stats()
    rng = random.Random(seed)
    try:
        n_ehr = max(1, users // 5)
        n_apps = max(1, (users - n_ehr) // 2)
        n_patients = max(1, users - n_ehr - n_apps)
        start = time.time()
        deadline = start + seconds
        crowd: list[User] = []
        for i in range(n_patients):
            crowd.append(Patient(world.patients[i % len(world.patients)], world, stats, deadline, think,
                                 random.Random(rng.random())))
        for i in range(n_apps):
            crowd.append(App(world.patients[(i + 7) % len(world.patients)], world, stats, deadline, think,
                             random.Random(rng.random())))
        for _ in range(n_ehr):
            crowd.append(Ehr(world, stats, deadline, think, random.Random(rng.random())))
        rng.shuffle(crowd)
        ramp = min(10.0, seconds / 4)  # users arrive over the first quarter (at most 10 s), not all in one instant
        for u in crowd:
            u.start()
            time.sleep(ramp / len(crowd))
        for u in crowd:
            u.join(max(1.0, deadline - time.time() + TIMEOUT_S + 5))
        elapsed = time.time() - start
        say(f"{backend}: {users} users for {elapsed:.0f} s; reading back {len(stats.writes)} writes")
        lost = read_back(world, stats)
    finally:
        server = stop(proc, folder)
    audited = count_audit(db_url)
    missing = {who: (n, audited.get(who, 0)) for who, n in stats.audited.items() if audited.get(who, 0) < n}
    problems: list[str] = []
    if stats.errors:
        problems.append(f"{sum(stats.errors.values())} errors: " + "; ".join(stats.samples[:10]))
    if lost:
        problems.append(f"{len(lost)} writes not read back: " + "; ".join(lost[:5]))
    if missing:
        problems.append("accesses without their AuditEvent (made, recorded): " + json.dumps(missing))
    if server["tracebacks"]:
        problems.append(f"{server['tracebacks']} tracebacks in the server log: {server['log_tail']}")
    if server["audit_queue"] is None:
        problems.append("the server did not report its audit queue (did it exit cleanly?)")
    kinds = {}
    for kind, times in sorted(stats.times.items()):
        ms = sorted(t * 1000 for t in times)
        kinds[kind] = {"n": len(ms), "errors": stats.errors.get(kind, 0), "per_s": len(ms) / elapsed,
                       "p50": _pct(ms, 50), "p95": _pct(ms, 95), "p99": _pct(ms, 99), "max": ms[-1],
                       "statuses": dict(stats.statuses.get(kind, {}))}
    total = sum(k["n"] for k in kinds.values() if k is not kinds.get("read back"))
    return {"backend": backend, "users": users, "mix": {"patients": n_patients, "apps": n_apps, "ehr": n_ehr},
            "seconds": round(elapsed, 1), "think_s": think, "server_threads": threads, "requests": total,
            "per_s": round(total / elapsed, 1), "errors": sum(stats.errors.values()), "writes": len(stats.writes),
            "lost_writes": len(lost), "audited": dict(stats.audited), "audit_events": dict(audited),
            "audit_queue": server["audit_queue"], "kinds": kinds, "problems": problems,
            "load_avg": os.getloadavg()[0]}


def _pct(sorted_ms: list[float], p: float) -> float:
    if len(sorted_ms) == 1:
        return sorted_ms[0]
    return statistics.quantiles(sorted_ms, n=100, method="inclusive")[int(p) - 1]


def table(result: dict[str, Any]) -> str:
    """The per-kind table (markdown)."""
    lines = [f"{result['backend']}: {result['users']} users ({result['mix']['patients']} patients, "
             f"{result['mix']['apps']} apps, {result['mix']['ehr']} EHR), {result['seconds']:.0f} s, "
             f"{result['requests']:,} requests ({result['per_s']:.0f}/s), {result['errors']} errors, "
             f"{result['writes']} writes ({result['lost_writes']} lost)", "",
             "| request | n | errors | per s | p50 ms | p95 ms | p99 ms | max ms |",
             "|---|---|---|---|---|---|---|---|"]
    for kind, k in result["kinds"].items():
        lines.append(f"| {kind} | {k['n']:,} | {k['errors']} | {k['per_s']:.1f} | {k['p50']:.1f} | {k['p95']:.1f} | "
                     f"{k['p99']:.1f} | {k['max']:.0f} |")
    q = result.get("audit_queue") or {}
    made = sum(result["audited"].values())
    recorded = sum(result["audit_events"].get(w, 0) for w in result["audited"])
    lines += ["", f"audited accesses made {made:,}, AuditEvents recorded for them {recorded:,}; audit queue: "
                  f"{q.get('queued', '?'):,} events, at most {q.get('max_pending', '?')} waiting (limit "
                  f"{q.get('limit', '?'):,}), longest wait {q.get('max_lag_ms', '?')} ms, {q.get('refused', '?')} refused"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--users", type=int, default=60, help="concurrent users (1-200), default 60")
    p.add_argument("--seconds", type=float, default=60, help="how long (at most 600), default 60")
    p.add_argument("--think", type=float, default=0.3, help="mean pause between a user's requests (s)")
    p.add_argument("--threads", type=int, default=8, help="the server's threads (carespace serve --threads)")
    p.add_argument("--patients", type=int, default=20, help="patients with accounts in the practice")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    if not 1 <= args.users <= 200 or not 1 <= args.seconds <= 600:
        p.error("--users must be 1-200 and --seconds 1-600")
    results = []
    for backend in (["sqlite", "postgres"] if args.backend == "both" else [args.backend]):
        folder = Path(tempfile.mkdtemp(prefix=f"carespace-load-{backend}-"))
        cluster = None
        if backend == "postgres":
            from tests.support.postgres import Cluster
            cluster = Cluster().start()
            db_url = cluster.create_database("load")
        else:
            db_url = f"sqlite:///{folder / 'carespace.db'}"
        try:
            result = run(backend, db_url, args.users, args.seconds, args.think, args.threads, args.patients,
                         folder=folder)
        finally:
            if cluster is not None:
                cluster.stop()
        print(table(result) + "\n", flush=True)
        for problem in result["problems"]:
            print(f"PROBLEM ({backend}): {problem}", flush=True)
        results.append(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
