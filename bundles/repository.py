"""Queries over sent records, share links and retrieval counters (the caller owns the transaction)."""
from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import RetrievalCounter, SentRecord, ShareLink, ShareLinkAccess, ShareLinkFile


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def by_token(s: Session, token: str) -> SentRecord | None:
    return s.execute(select(SentRecord).where(SentRecord.token_hash == token_hash(token))).scalar_one_or_none()


def for_patient(s: Session, patient_id: str) -> list[SentRecord]:
    q = select(SentRecord).where(SentRecord.patient_id == patient_id).order_by(SentRecord.created_at.desc(),
                                                                                 SentRecord.id.desc())
    return list(s.execute(q).scalars().all())


def get_for_patient(s: Session, patient_id: str, record_id: int) -> SentRecord | None:
    return s.execute(select(SentRecord).where(SentRecord.id == record_id,
                                              SentRecord.patient_id == patient_id)).scalar_one_or_none()


def mark_opened(s: Session, record_id: int, when: datetime) -> None:
    """Count one retrieval; the first one sets first_opened_at (conditional updates: no lost counts)."""
    s.execute(update(SentRecord).where(SentRecord.id == record_id)
              .values(open_count=SentRecord.open_count + 1, last_opened_at=when))
    s.execute(update(SentRecord).where(SentRecord.id == record_id, SentRecord.first_opened_at.is_(None))
              .values(first_opened_at=when))


def erase(s: Session, record_id: int, revoked_at: datetime | None = None) -> None:
    """Drop the encrypted record (revoked or expired); with revoked_at, mark it revoked too."""
    values: dict[str, object] = {"jwe": None}
    if revoked_at is not None:
        values["revoked_at"] = revoked_at
    s.execute(update(SentRecord).where(SentRecord.id == record_id).values(**values))


def hit(s: Session, key: str, window: int) -> int:
    """Add one hit to (key, window) and return the count; older windows of the key are dropped."""
    res = s.execute(update(RetrievalCounter).where(RetrievalCounter.key == key, RetrievalCounter.window == window)
                    .values(hits=RetrievalCounter.hits + 1))
    if res.rowcount == 0:  # type: ignore[attr-defined]
        try:
            with s.begin_nested():
                s.add(RetrievalCounter(key=key, window=window, hits=1))
            s.execute(delete(RetrievalCounter).where(RetrievalCounter.key == key, RetrievalCounter.window < window))
        except IntegrityError:
            s.execute(update(RetrievalCounter).where(RetrievalCounter.key == key, RetrievalCounter.window == window)
                      .values(hits=RetrievalCounter.hits + 1))
    return int(s.execute(select(RetrievalCounter.hits).where(RetrievalCounter.key == key,
                                                             RetrievalCounter.window == window)).scalar_one())


# ---- share links (SMART Health Links) ----
def link_by_token(s: Session, token: str) -> ShareLink | None:
    return s.execute(select(ShareLink).where(ShareLink.token_hash == token_hash(token))).scalar_one_or_none()


def links_for(s: Session, patient_id: str) -> list[ShareLink]:
    q = select(ShareLink).where(ShareLink.patient_id == patient_id).order_by(ShareLink.created_at.desc(),
                                                                               ShareLink.id.desc())
    return list(s.execute(q).scalars().all())


def link_for_patient(s: Session, patient_id: str, link_id: int) -> ShareLink | None:
    return s.execute(select(ShareLink).where(ShareLink.id == link_id,
                                             ShareLink.patient_id == patient_id)).scalar_one_or_none()


def spend_attempt(s: Session, link_id: int) -> int | None:
    """Take one passcode attempt with a conditional UPDATE (no lost decrements across processes); the attempts
    left after it, or None when none were left to take."""
    res = s.execute(update(ShareLink).where(ShareLink.id == link_id, ShareLink.attempts_left > 0)
                    .values(attempts_left=ShareLink.attempts_left - 1))
    if res.rowcount == 0:  # type: ignore[attr-defined]
        return None
    return int(s.execute(select(ShareLink.attempts_left).where(ShareLink.id == link_id)).scalar_one())


def erase_link(s: Session, link_id: int, revoked_at: datetime | None = None) -> None:
    """Drop a link's ciphertext, sealed key and pending file locations; with revoked_at, mark it revoked."""
    values: dict[str, object] = {"jwe": None, "wrapped_key": None}
    if revoked_at is not None:
        values["revoked_at"] = revoked_at
    s.execute(update(ShareLink).where(ShareLink.id == link_id).values(**values))
    s.execute(delete(ShareLinkFile).where(ShareLinkFile.link_id == link_id))


def replace_content(s: Session, link_id: int, jwe: str, counts: str, when: datetime) -> None:
    """A long-term link's rebuilt ciphertext (only while it still has content: never revives an erased link)."""
    s.execute(update(ShareLink).where(ShareLink.id == link_id, ShareLink.jwe.is_not(None))
              .values(jwe=jwe, counts=counts, content_at=when))


def record_access(s: Session, link_id: int, recipient: str, outcome: str, when: datetime) -> None:
    """One manifest request; an opening also counts on the link (a conditional increment: no lost counts)."""
    s.add(ShareLinkAccess(link_id=link_id, at=when, recipient=recipient, outcome=outcome))
    if outcome == "opened":
        s.execute(update(ShareLink).where(ShareLink.id == link_id)
                  .values(open_count=ShareLink.open_count + 1, last_opened_at=when))


def accesses_for(s: Session, link_ids: list[int]) -> list[ShareLinkAccess]:
    if not link_ids:
        return []
    q = select(ShareLinkAccess).where(ShareLinkAccess.link_id.in_(link_ids)).order_by(ShareLinkAccess.at.desc(),
                                                                                    ShareLinkAccess.id.desc())
    return list(s.execute(q).scalars().all())


def add_file(s: Session, token: str, link_id: int, expires_at: datetime, now: datetime) -> None:
    """A new single-use location; locations past their time are dropped on the way."""
    s.execute(delete(ShareLinkFile).where(ShareLinkFile.expires_at < now))
    s.add(ShareLinkFile(token_hash=token_hash(token), link_id=link_id, expires_at=expires_at))


def claim_file(s: Session, token: str, now: datetime) -> int | None:
    """Use a location once: a conditional UPDATE claims it (one winner across processes); its link id or None."""
    th = token_hash(token)
    res = s.execute(update(ShareLinkFile).where(ShareLinkFile.token_hash == th, ShareLinkFile.used_at.is_(None),
                                                ShareLinkFile.expires_at > now).values(used_at=now))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return int(s.execute(select(ShareLinkFile.link_id).where(ShareLinkFile.token_hash == th)).scalar_one())
