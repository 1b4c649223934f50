"""Checklist B (items 7-14), E (25-26) and the consent page: authorize GET/POST, errors, PKCE at the
authorization endpoint, patient picker, limited access, category sub-scopes, remembered decisions."""
from __future__ import annotations

from urllib.parse import urlencode

from tests.support.smart import FHIR_BASE, OBS_CAT, REDIRECT, pkce, query


def _setup(smart, kind="public"):
    pid = smart.patient()
    user = smart.user(pid)
    client_id, secret = smart.register(kind)
    smart.login(user)
    return pid, user, client_id, secret


def test_item07_anonymous_user_is_sent_to_login_and_back(smart):
    pid = smart.patient()
    client_id, _ = smart.register()
    r = smart.authorize(client_id)
    assert r.status_code == 302
    loc = r.headers["Location"]
    assert loc.startswith("/login?next=")
    assert query(loc)["next"].startswith("/oauth/authorize?")
    assert pid


def test_item07_item09_get_code_and_state_byte_for_byte(smart):
    pid, user, client_id, _ = _setup(smart)
    state = "a b+c/ü=&x"
    verifier, challenge = pkce()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": state,
              "scope": "launch/patient openid fhirUser offline_access patient/*.rs", "aud": FHIR_BASE + "/",
              "code_challenge": challenge, "code_challenge_method": "S256"}
    page = smart.client.get("/oauth/authorize?" + urlencode(params))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Test App" in html and "offline" in html.lower()
    r = smart.approve(page)
    assert r.status_code == 302
    assert r.headers["Location"].startswith(REDIRECT + "?")
    q = query(r.headers["Location"])
    assert q["state"] == state and q["code"] and "error" not in q


def test_item08_authorize_post(smart):
    pid, user, client_id, _ = _setup(smart)
    page = smart.authorize(client_id, method="POST")
    assert page.status_code == 200
    r = smart.approve(page)
    assert query(r.headers["Location"])["state"] == smart.state


def test_item09_code_is_single_use_and_short_lived(smart):
    from smart_auth.oauth.server import CODE_TTL_S
    pid, user, client_id, _ = _setup(smart)
    code = smart.code(client_id)
    assert CODE_TTL_S <= 600
    assert smart.exchange(client_id, code).status_code == 200
    again = smart.exchange(client_id, code)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"


def test_item10_wrong_aud_issues_no_code(smart):
    pid, user, client_id, _ = _setup(smart)
    r = smart.authorize(client_id, aud="https://other.example.org/fhir")
    assert r.status_code == 302
    q = query(r.headers["Location"])
    assert "code" not in q and q["error"] == "invalid_request" and q["state"] == smart.state


def test_item11_unknown_client_or_redirect_is_not_redirected(smart):
    pid, user, client_id, _ = _setup(smart)
    r = smart.authorize("no-such-client")
    assert r.status_code == 400 and "Location" not in r.headers
    r = smart.authorize(client_id, redirect_uri="https://evil.example.org/callback")
    assert r.status_code == 400 and "Location" not in r.headers
    r = smart.authorize(client_id, redirect_uri=REDIRECT + "/extra")
    assert r.status_code == 400 and "Location" not in r.headers


def test_item11_other_errors_redirect_with_state(smart):
    pid, user, client_id, _ = _setup(smart)
    r = smart.authorize(client_id, response_type="token")
    assert query(r.headers["Location"])["error"] == "unsupported_response_type"
    r = smart.authorize(client_id, scope="nonsense")
    assert query(r.headers["Location"])["error"] == "invalid_scope"
    page = smart.authorize(client_id)
    r = smart.approve(page, decision="deny")
    q = query(r.headers["Location"])
    assert q["error"] == "access_denied" and q["state"] == smart.state and "code" not in q


def test_item12_pkce_required_for_public_and_plain_refused(smart):
    pid, user, client_id, _ = _setup(smart)
    r = smart.authorize(client_id, code_challenge=None, code_challenge_method=None)
    assert query(r.headers["Location"])["error"] == "invalid_request"
    r = smart.authorize(client_id, code_challenge_method="plain")
    assert query(r.headers["Location"])["error"] == "invalid_request"
    r = smart.authorize(client_id, code_challenge_method=None)
    assert query(r.headers["Location"])["error"] == "invalid_request"


def test_item12_confidential_client_may_skip_pkce(smart):
    pid, user, client_id, secret = _setup(smart, "secret")
    page = smart.authorize(client_id, code_challenge=None, code_challenge_method=None)
    code = query(smart.approve(page).headers["Location"])["code"]
    r = smart.exchange(client_id, code, secret, code_verifier=None)
    assert r.status_code == 200


def test_item13_patient_picker_for_patient_who_is_also_a_proxy(smart):
    pid = smart.patient("Own")
    child = smart.patient("Child", "Kid")
    user = smart.user(pid)
    rp = smart.proxy(user, child)
    client_id, _ = smart.register()
    smart.login(user)
    page = smart.authorize(client_id)
    html = page.get_data(as_text=True)
    assert 'name="patient_id"' in html and "Whose record" in html
    r = smart.approve(page, patient_id=child)
    tok = smart.exchange(client_id, query(r.headers["Location"])["code"]).get_json()
    assert tok["patient"] == child
    from joserfc import jwt
    claims = jwt.decode(tok["id_token"], _key(smart)).claims
    assert claims["fhirUser"].endswith(f"RelatedPerson/{rp}")
    assert smart.get(f"Patient/{child}", tok["access_token"]).status_code == 200
    assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 404


def _key(smart):
    from joserfc import jwk
    return jwk.KeySet.import_key_set(smart.client.get("/oauth/jwks").get_json())


def test_item13_item40_limited_access_untick_types(smart):
    pid, user, client_id, _ = _setup(smart)
    smart.observation(pid)
    scope = "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Observation.rs " \
            "patient/Condition.rs patient/AllergyIntolerance.rs"
    page = smart.authorize(client_id, scope)
    r = smart.approve(page, type=["Patient", "Observation", "Condition"])
    tok = smart.exchange(client_id, query(r.headers["Location"])["code"]).get_json()
    granted = tok["scope"].split()
    assert {"patient/Patient.rs", "patient/Observation.rs", "patient/Condition.rs"} <= set(granted)
    assert "patient/AllergyIntolerance.rs" not in granted
    at = tok["access_token"]
    assert smart.get(f"Observation?patient={pid}", at).status_code == 200
    assert smart.get(f"Patient?_id={pid}", at).status_code == 200
    assert smart.get(f"AllergyIntolerance?patient={pid}", at).status_code == 403


def test_item13_offline_access_disclosed_and_can_be_declined(smart):
    pid, user, client_id, _ = _setup(smart)
    page = smart.authorize(client_id)
    assert "keep access" in page.get_data(as_text=True)
    r = smart.approve(page, offline="")
    tok = smart.exchange(client_id, query(r.headers["Location"])["code"]).get_json()
    assert "offline_access" not in tok["scope"].split() and "refresh_token" not in tok


def test_item43_category_sub_scopes_offered_instead_of_resource_level(smart):
    pid, user, client_id, _ = _setup(smart)
    lab, vital = smart.observation(pid, "laboratory"), smart.observation(pid, "vital-signs", "8867-4")
    scope = "launch/patient openid fhirUser patient/Condition.rs patient/Observation.rs patient/Patient.rs"
    page = smart.authorize(client_id, scope)
    html = page.get_data(as_text=True)
    assert "Only Lab results" in html and "Only Problem list" in html
    r = smart.approve(page, cat_Observation=[f"{OBS_CAT}|laboratory"],
                      cat_Condition=["http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item"])
    tok = smart.exchange(client_id, query(r.headers["Location"])["code"]).get_json()
    granted = tok["scope"].split()
    assert f"patient/Observation.rs?category={OBS_CAT}|laboratory" in granted
    assert "patient/Observation.rs" not in granted and "patient/Condition.rs" not in granted
    assert "patient/Patient.rs" in granted
    ids = {e["resource"]["id"] for e in smart.get(f"Observation?patient={pid}", tok["access_token"])
           .get_json().get("entry", [])}
    assert ids == {lab}
    assert smart.get(f"Observation/{vital}", tok["access_token"]).status_code == 403


def test_item42_granular_scopes_requested_are_granted_verbatim(smart):
    pid, user, client_id, _ = _setup(smart)
    scope = (f"launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs?category={OBS_CAT}|laboratory "
             f"patient/Observation.rs?category={OBS_CAT}|social-history")
    tok = smart.exchange(client_id, smart.code(client_id, scope)).get_json()
    assert tok["scope"] == scope


def test_consent_is_remembered_per_app_and_user(smart):
    pid, user, client_id, _ = _setup(smart)
    scope = "launch/patient openid offline_access patient/Patient.rs patient/Observation.rs"
    first = smart.approve(smart.authorize(client_id, scope), type=["Patient"])
    assert "code" in query(first.headers["Location"])
    again = smart.authorize(client_id, scope)
    assert again.status_code == 302 and "code" in query(again.headers["Location"])
    tok = smart.exchange(client_id, query(again.headers["Location"])["code"]).get_json()
    assert "patient/Observation.rs" not in tok["scope"].split() and "patient/Patient.rs" in tok["scope"].split()
    forced = smart.authorize(client_id, scope, prompt="consent")
    html = forced.get_data(as_text=True)
    assert forced.status_code == 200
    assert 'value="Patient" checked' in html and 'value="Observation" >' in html
    other = smart.user(smart.patient("Other"))
    smart.login(other)
    assert smart.authorize(client_id, scope).status_code == 200


def test_item25_item26_ehr_launch_from_connected_apps(smart):
    pid, user, _, _ = _setup(smart)
    client_id, _ = smart.register(launch_uri="https://app.example.org/launch", name="Launchable App")
    page = smart.client.get("/apps")
    assert "Launch Launchable App" in page.get_data(as_text=True)
    import re
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    r = smart.client.post("/apps/launch", data={"client_id": client_id, "csrf_token": csrf})
    assert r.status_code == 302
    q = query(r.headers["Location"])
    assert r.headers["Location"].startswith("https://app.example.org/launch?")
    assert q["iss"] == FHIR_BASE and q["launch"]
    resp = smart.authorize(client_id, "launch openid fhirUser offline_access patient/*.rs", launch=q["launch"])
    if resp.status_code == 200:
        resp = smart.approve(resp)
    tok = smart.exchange(client_id, query(resp.headers["Location"])["code"]).get_json()
    assert tok["patient"] == pid and tok["need_patient_banner"] is True
    assert smart.client.get(tok["smart_style_url"].removeprefix("http://localhost")).is_json
    assert "launch" in tok["scope"].split()


def test_item25_bad_launch_handle_is_refused(smart):
    pid, user, client_id, _ = _setup(smart)
    r = smart.authorize(client_id, "launch openid patient/*.rs", launch="forged")
    assert query(r.headers["Location"])["error"] == "invalid_request"


def test_consent_page_has_labels_and_needs_csrf(smart):
    pid, user, client_id, _ = _setup(smart)
    page = smart.authorize(client_id)
    html = page.get_data(as_text=True)
    import re
    for field_id in re.findall(r'<input type="(?:checkbox|radio)" id="([^"]+)"', html):
        assert f'<label for="{field_id}"' in html
    form = smart.consent_form(page)
    form["csrf_token"] = "wrong"
    assert smart.client.post("/oauth/consent", data=form).status_code == 400


def test_item26_practitioner_ehr_launch_binds_any_patient(smart):
    import re
    pid = smart.patient()
    prac = smart.fhir.create(smart.sys, "Practitioner", {"resourceType": "Practitioner"}).stored.id
    staff = smart.user(None, role="staff", fhir_user=f"Practitioner/{prac}")
    client_id, secret = smart.register("secret", launch_uri="https://app.example.org/launch", name="Clinician App")
    smart.login(staff)
    page = smart.client.get("/apps").get_data(as_text=True)
    assert "Patient ID" in page
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = smart.client.post("/apps/launch", data={"client_id": client_id, "csrf_token": csrf, "patient_id": "nope"})
    assert r.headers["Location"] == "/apps"
    r = smart.client.post("/apps/launch", data={"client_id": client_id, "csrf_token": csrf, "patient_id": pid})
    launch = query(r.headers["Location"])["launch"]
    resp = smart.authorize(client_id, "launch openid fhirUser offline_access user/*.rs", launch=launch)
    if resp.status_code == 200:
        resp = smart.approve(resp)
    tok = smart.exchange(client_id, query(resp.headers["Location"])["code"], secret).get_json()
    assert tok["patient"] == pid and tok["scope"] == "launch openid fhirUser offline_access user/*.rs"
    assert smart.get(f"Patient/{pid}", tok["access_token"]).status_code == 200
    assert smart.get(f"Practitioner/{prac}", tok["access_token"]).status_code == 200
