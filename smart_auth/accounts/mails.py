"""The account mails: links only, never health information."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Mail:
    subject: str
    text: str
    html: str
    link: str


def _html(paragraphs: list[str], link: str, label: str, after: list[str]) -> str:
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    button = (f'<p><a href="{escape(link)}" style="display:inline-block;padding:10px 16px;background:#0b5cad;'
              f'color:#fff;text-decoration:none;border-radius:4px">{escape(label)}</a></p>')
    return f"<html><body>{body}{button}{''.join(f'<p>{escape(p)}</p>' for p in after)}</body></html>"


def invite_mail(link: str, name: str, for_patient: str | None = None) -> Mail:
    """The registration invite: "Complete Your Registration", valid 4 days, single use."""
    greeting = f"Hello {name}," if name else "Hello,"
    if for_patient:
        intro = (f"{for_patient} has given you access to their CareSpace patient portal account. "
                 "To accept, register for CareSpace.")
    else:
        intro = "Our practice has invited you to CareSpace, our patient portal. Please register to set your password."
    validity = ("This link is valid for 4 days and can be used only once. If you did not register within 4 days, "
                "please ask our practice to resend the invite.")
    text = (f"{greeting}\n\n{intro}\n\nComplete Your Registration:\n{link}\n\n{validity}\n\n"
            "If you were not expecting this email, you can ignore it.\n")
    return Mail("Complete Your Registration for CareSpace", text,
                _html([greeting, intro], link, "Complete Your Registration",
                      [validity, "If you were not expecting this email, you can ignore it."]), link)


def reset_mail(link: str, name: str) -> Mail:
    """The password reset link: valid 1 hour, single use."""
    greeting = f"Hello {name}," if name else "Hello,"
    intro = "Someone (hopefully you) asked to reset the password of your CareSpace account."
    validity = ("This link is valid for 1 hour and can be used only once. If you did not ask for it, ignore this "
                "email: your password stays the same.")
    text = f"{greeting}\n\n{intro}\n\nReset your password:\n{link}\n\n{validity}\n"
    return Mail("Reset your CareSpace password", text,
                _html([greeting, intro], link, "Reset your password", [validity]), link)


def attempts_mail(link: str, name: str) -> Mail:
    """Sign-ins to the account were refused and some are now paused: say what the owner can do."""
    greeting = f"Hello {name}," if name else "Hello,"
    intro = ("Someone tried to sign in to your CareSpace account several times with a wrong password or date of "
             "birth, so we have paused sign-ins from that browser for a few minutes.")
    advice = ("If it was you, wait a few minutes and try again; a browser you have signed in with before can "
              "sign in as usual. If it was not you, your account is still safe, and you can choose a new "
              "password to be sure.")
    text = f"{greeting}\n\n{intro}\n\n{advice}\n\nChoose a new password:\n{link}\n"
    return Mail("Sign-in attempts on your CareSpace account", text,
                _html([greeting, intro, advice], link, "Choose a new password", []), link)
