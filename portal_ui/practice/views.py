"""Practice console pages under /practice: staff only (patients and proxies get a 403 page)."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import current_app, flash, redirect, request
from werkzeug.wrappers import Response

from fhir_server import PATIENT_CATEGORIES
from smart_auth.accounts import practice as accounts_practice
from smart_auth.accounts.errors import AccountError

from .. import documents as portal_documents
from ..context import Names, fhir
from ..errors import error_page
from ..fhir_data import PortalError
from . import FormError, catalog, documents, inbox, patients, results
from .console import LIMITS, accounts, bp, page, staff


# ---- landing ------------------------------------------------------------------------------------
@bp.get("")
def home() -> Any:
    s = staff()
    box = inbox.inbox(fhir(), s.ctx, Names())  # type: ignore[arg-type]
    return page("home", tab="home", box=box, two_step=bool(s.user.totp_secret))


# ---- patients -------------------------------------------------------------------------------------
@bp.get("/patients")
def patient_list() -> Any:
    s, a = staff(), request.args
    filters = {k: a.get(k, "") for k in ("name", "birth_date", "identifier")}
    try:
        rows, nxt, prev = patients.find(fhir(), s.ctx, filters["name"], filters["birth_date"], filters["identifier"],
                                        a.get("cursor") or None)
    except FormError as err:
        return page("patients", 422, tab="patients", rows=[], reg_status={}, filters=filters, errors=err.errors)
    status = accounts_practice.statuses(accounts(), [r.id for r in rows])
    def url(cursor: str | None) -> str:
        return "/practice/patients?" + urlencode({**{k: v for k, v in filters.items() if v},
                                                  **({"cursor": cursor} if cursor else {})})
    return page("patients", tab="patients", rows=rows, reg_status=status, filters=filters, errors={},
                next_url=url(nxt) if nxt else None, prev_url=url(prev) if prev else None, first_url=url(None),
                first=not a.get("cursor"))


@bp.route("/patients/new", methods=["GET", "POST"])
def patient_new() -> Any:
    s = staff()
    if request.method == "GET":
        return page("patient_new", tab="patients", form={}, errors={}, sexes=patients.SEXES)
    try:
        pid = patients.create(fhir(), s.ctx, request.form)
    except FormError as err:
        return page("patient_new", 422, tab="patients", form=request.form, errors=err.errors, sexes=patients.SEXES)
    flash("The patient was added. Send the registration invite when you are ready.", "success")
    return redirect(f"/practice/patients/{pid}")


def _patient_page(pid: str, status: int = 200, **extra: Any) -> tuple[str, int]:
    s = staff()
    patient = patients.get(fhir(), s.ctx, pid)
    reg = accounts_practice.registration(accounts(), pid)
    labs = results.patient_results(fhir(), s.ctx, pid, limit=10)
    docs, _more = portal_documents.recent(fhir(), s.ctx, pid)
    return page("patient", status, tab="patients", patient=patient, reg=reg, labs=labs, docs=docs, **extra)


@bp.get("/patients/<pid>")
def patient(pid: str) -> Any:
    return _patient_page(pid)


@bp.post("/patients/<pid>/invite")
def invite(pid: str) -> Any:
    s = staff()
    patients.get(fhir(), s.ctx, pid)
    try:
        r = accounts().invitations.invite_patient(patient_id=pid, by=s.author)
    except AccountError as err:
        return _patient_page(pid, 422, invite_error=err.message)
    flash(f"{'A new invite was sent' if r.resent else 'The invite was sent'} to {r.email}; the link is valid for "
          f"4 days{' and the earlier link no longer works' if r.resent else ''}.", "success")
    return redirect(f"/practice/patients/{pid}")


# ---- results --------------------------------------------------------------------------------------
def _result_form(pid: str, status: int = 200, form: Any = None, errors: dict[str, str] | None = None) -> Any:
    s = staff()
    return page("result_new", status, tab="patients", patient=patients.get(fhir(), s.ctx, pid), form=form or {},
                errors=errors or {}, tests=catalog.lab_tests())


@bp.route("/patients/<pid>/results/new", methods=["GET", "POST"])
def result_new(pid: str) -> Any:
    if request.method == "GET":
        return _result_form(pid, form={"test": request.args.get("test", "")})
    s = staff()
    who = patients.get(fhir(), s.ctx, pid)
    try:
        oid = results.post(fhir(), s.ctx, pid, s.author, request.form, who.gender)
    except FormError as err:
        return _result_form(pid, 422, request.form, err.errors)
    flash("The result was posted. The patient sees it in Health now.", "success")
    return redirect(f"/practice/patients/{pid}/results/{oid}")


def _result_page(pid: str, oid: str, status: int = 200, **extra: Any) -> Any:
    s = staff()
    who = patients.get(fhir(), s.ctx, pid)
    result = results.get(fhir(), s.ctx, pid, oid)
    return page("result", status, tab="patients", patient=who, result=result,
                versions=results.versions(fhir(), s.ctx, result), form=extra.pop("form", {}),
                errors=extra.pop("errors", {}), **extra)


@bp.get("/patients/<pid>/results/<oid>")
def result(pid: str, oid: str) -> Any:
    return _result_page(pid, oid)


@bp.post("/patients/<pid>/results/<oid>/correct")
def result_correct(pid: str, oid: str) -> Any:
    s = staff()
    who = patients.get(fhir(), s.ctx, pid)
    try:
        results.correct(fhir(), s.ctx, pid, oid, s.author, request.form, who.gender)
    except FormError as err:
        return _result_page(pid, oid, 422, form=request.form, errors=err.errors)
    flash("The result was corrected (status: amended). The patient sees the corrected value and the note.", "success")
    return redirect(f"/practice/patients/{pid}/results/{oid}")


@bp.post("/patients/<pid>/results/<oid>/withdraw")
def result_withdraw(pid: str, oid: str) -> Any:
    s = staff()
    try:
        results.withdraw(fhir(), s.ctx, pid, oid, s.author, request.form.get("withdraw_reason", ""))
    except FormError as err:
        return _result_page(pid, oid, 422, form=request.form, errors=err.errors)
    flash("The result was marked as entered in error. It no longer counts as the patient's latest result.", "success")
    return redirect(f"/practice/patients/{pid}/results/{oid}")


# ---- documents ------------------------------------------------------------------------------------
def _document_form(pid: str, status: int = 200, form: Any = None, errors: dict[str, str] | None = None) -> Any:
    s = staff()
    limit = int(current_app.config["UPLOAD_MAX_BYTES"])
    return page("document_new", status, tab="patients", patient=patients.get(fhir(), s.ctx, pid), form=form or {},
                errors=errors or {}, types=[(d.code, d.name) for d in catalog.document_types()], limit=documents.size_text(limit),
                accepted=documents.ACCEPTED)


@bp.route("/patients/<pid>/documents/new", methods=["GET", "POST"])
def document_new(pid: str) -> Any:
    if request.method == "GET":
        return _document_form(pid)
    s = staff()
    patients.get(fhir(), s.ctx, pid)
    upload = request.files.get("file")
    data = upload.read(int(current_app.config["UPLOAD_MAX_BYTES"]) + 1) if upload else None
    try:
        documents.upload(fhir(), s.ctx, pid, s.author, request.form.to_dict(), (upload.filename or "") if upload else "",
                         data, int(current_app.config["UPLOAD_MAX_BYTES"]))
    except FormError as err:
        return _document_form(pid, 422, request.form, err.errors)
    flash("The document was uploaded. The patient sees it among their documents now.", "success")
    return redirect(f"/practice/patients/{pid}")


# ---- inbox and messages ---------------------------------------------------------------------------
@bp.get("/inbox")
def inbox_page() -> Any:
    s, a = staff(), request.args
    category = a.get("category", "") if a.get("category", "") in PATIENT_CATEGORIES else ""
    state = a.get("state", "open") if a.get("state", "open") in inbox.STATES else "open"
    number = int(a["page"]) if a.get("page", "").isdigit() else 1
    box = inbox.inbox(fhir(), s.ctx, Names(), category, state, number)  # type: ignore[arg-type]
    return page("inbox", tab="inbox", box=box, category=category, state=state, states=inbox.STATES, **LIMITS)


def _conversation(mid: str, status: int = 200, **extra: Any) -> Any:
    s = staff()
    conv = inbox.conversation(fhir(), s.ctx, mid, Names())  # type: ignore[arg-type]
    inbox.mark_read(fhir(), s.ctx, conv.opened)
    who = patients.get(fhir(), s.ctx, conv.patient_id)
    return page("conversation", status, tab="inbox", conv=conv, patient=who, form=extra.pop("form", {}),
                errors=extra.pop("errors", {}), **LIMITS, **extra)


@bp.get("/messages/<mid>")
def message(mid: str) -> Any:
    return _conversation(mid)


@bp.post("/messages/<mid>/reply")
def reply(mid: str) -> Any:
    s = staff()
    try:
        new_id = inbox.reply(fhir(), s.ctx, mid, s.author, request.form.get("message", ""))
    except FormError as err:
        return _conversation(mid, 422, form=request.form, errors=err.errors)
    except PortalError as err:
        return _conversation(mid, err.status, reply_error=err.message)
    flash("Your reply was sent to the patient; the message is marked done.", "success")
    return redirect(f"/practice/messages/{new_id}")


@bp.post("/messages/<mid>/state")
def message_state(mid: str) -> Any:
    s = staff()
    done = request.form.get("state") == "done"
    inbox.set_done(fhir(), s.ctx, mid, done)
    flash("Marked done." if done else "Opened again: the message is back among the open ones.", "success")
    return redirect(f"/practice/messages/{mid}")


@bp.get("/messages/new")
def message_pick() -> Any:
    s, a = staff(), request.args
    name, birth = a.get("name", ""), a.get("birth_date", "")
    rows: list[Any] = []
    errors: dict[str, str] = {}
    if name.strip() or birth.strip():
        try:
            rows, _n, _p = patients.find(fhir(), s.ctx, name, birth, "", None)
        except FormError as err:
            errors = err.errors
    return page("message_pick", 422 if errors else 200, tab="inbox", rows=rows, errors=errors,
                filters={"name": name, "birth_date": birth}, searched=bool(name.strip() or birth.strip()))


@bp.route("/patients/<pid>/messages/new", methods=["GET", "POST"])
def message_new(pid: str) -> Any:
    s = staff()
    who = patients.get(fhir(), s.ctx, pid)
    if request.method == "GET":
        return page("message_new", tab="inbox", patient=who, form={}, errors={}, **LIMITS)
    try:
        new_id = inbox.new_message(fhir(), s.ctx, pid, s.author, request.form)
    except FormError as err:
        return page("message_new", 422, tab="inbox", patient=who, form=request.form, errors=err.errors, **LIMITS)
    flash(f"Your message was sent to {who.name}.", "success")
    return redirect(f"/practice/messages/{new_id}")


def too_large(_err: Exception) -> Response | tuple[str, int]:
    """A file over the upload limit: a page that says so (registered for the app by portal_ui)."""
    return error_page(413, "The file is larger than the practice's upload limit. Nothing was stored; "
                           "go back and choose a smaller file.")
