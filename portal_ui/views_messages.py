"""Messages tab: inbox from the practice, reading, replying once, composing, and sent messages."""
from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, render_template, request

from fhir_server import MAX_MESSAGE_CHARS, MAX_SUBJECT_CHARS, PATIENT_CATEGORIES
from smart_auth.accounts import session as auth

from . import messages
from .blueprint import bp
from .context import Names, fhir, viewer

LIMITS = {"message_max": MAX_MESSAGE_CHARS, "subject_max": MAX_SUBJECT_CHARS, "categories": PATIENT_CATEGORIES}


@bp.get("/messages")
@auth.login_required
def inbox() -> str:
    v = viewer()
    box = messages.mailbox(fhir(), v.ctx, v.patient_id, Names())  # type: ignore[arg-type]
    return render_template("portal/messages.html", active_tab="messages", box=box)


@bp.get("/messages/<message_id>")
@auth.login_required
def message(message_id: str) -> str:
    v = viewer()
    msg = messages.open_message(fhir(), v.ctx, v.patient_id, message_id, Names())  # type: ignore[arg-type]
    return render_template("portal/message.html", active_tab="messages", msg=msg, errors={}, form={}, **LIMITS)


@bp.get("/messages/<message_id>/reply")
@auth.login_required
def reply_form(message_id: str) -> Any:
    return redirect(f"/messages/{message_id}#reply")


@bp.post("/messages/<message_id>/reply")
@auth.login_required
def reply(message_id: str) -> Any:
    v = viewer()
    try:
        messages.reply(fhir(), v.ctx, v.patient_id, v.author, message_id, request.form.get("message", ""))
    except messages.ComposeError as err:
        msg = messages.open_message(fhir(), v.ctx, v.patient_id, message_id, Names())  # type: ignore[arg-type]
        return render_template("portal/message.html", active_tab="messages", msg=msg, errors=err.errors,
                               form=request.form, **LIMITS), 422
    flash("Your reply was sent.", "success")
    return redirect(f"/messages/{message_id}")


@bp.route("/messages/compose", methods=["GET", "POST"])
@auth.login_required
def compose() -> Any:
    v = viewer()
    if request.method == "GET":
        return render_template("portal/compose.html", active_tab="messages", errors={}, form={}, **LIMITS)
    box = messages.mailbox(fhir(), v.ctx, v.patient_id)
    to = messages.practice_recipient(fhir(), v.ctx, v.patient_id, current_app.config.get("PORTAL_PRACTICE_REF"), box)
    try:
        new_id = messages.compose(fhir(), v.ctx, v.patient_id, v.author, request.form, to)
    except messages.ComposeError as err:
        return render_template("portal/compose.html", active_tab="messages", errors=err.errors, form=request.form,
                               **LIMITS), 422
    flash("Your message was sent to your care team.", "success")
    return redirect(f"/messages/{new_id}")
