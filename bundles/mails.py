"""The mail a recipient of Send Record gets: who sent it, their notes and the link; no health data, no password."""
from __future__ import annotations

from datetime import datetime
from html import escape


def record_mail(sender_name: str, notes: str, link: str, expires_at: datetime) -> tuple[str, str, str]:
    """(subject, text, html) of the notification mail."""
    until = expires_at.strftime("%B %d, %Y").replace(" 0", " ")
    subject = f"{sender_name} sent you a health record through CareSpace"
    note_text = f"\nNotes from {sender_name}:\n{notes.strip()}\n" if notes.strip() else ""
    text = (f"{sender_name} sent you a health record through CareSpace, the patient portal of their practice.\n"
            f"{note_text}\n"
            f"Open the record: {link}\n\n"
            f"The record is encrypted. To open it you need the password {sender_name} chose; they will give it to "
            f"you by another channel (for example by phone), never by email.\n"
            f"The link works until {until}. {sender_name} can withdraw it before then.\n\n"
            "For programs: the same link with the header 'Accept: application/jose' returns the record as a JWE "
            "(PBES2-HS512+A256KW, A256GCM) that any JOSE library decrypts with the password.\n\n"
            "If you were not expecting this, you can ignore this email.\n")
    note_html = (f"<p><strong>Notes from {escape(sender_name)}:</strong></p>"
                 f"<blockquote style=\"white-space:pre-wrap\">{escape(notes.strip())}</blockquote>") if notes.strip() else ""
    html = (f"<p>{escape(sender_name)} sent you a health record through CareSpace, the patient portal of their "
            f"practice.</p>{note_html}"
            f"<p><a href=\"{escape(link)}\">Open the record</a></p>"
            f"<p>The record is encrypted. To open it you need the password {escape(sender_name)} chose; they will "
            "give it to you by another channel (for example by phone), never by email.</p>"
            f"<p>The link works until {escape(until)}. {escape(sender_name)} can withdraw it before then.</p>"
            "<p><small>For programs: the same link with the header <code>Accept: application/jose</code> returns "
            "the record as a JWE (PBES2-HS512+A256KW, A256GCM) that any JOSE library decrypts with the password."
            "</small></p><p><small>If you were not expecting this, you can ignore this email.</small></p>")
    return subject, text, html
