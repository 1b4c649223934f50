"""Queries over sent records and retrieval counters (the caller owns the transaction)."""
from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import RetrievalCounter, SentRecord


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
