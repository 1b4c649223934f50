"""The SQL of Bulk Data export jobs (fhir_export_job) and of the store reads the export needs beyond search.

A job is claimed, renewed and finished by conditional UPDATEs (on its status and lease owner), so across
processes exactly one worker holds it; each function runs in the caller's unit of work.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, func, select, update

from .models import ExportJob, ResourceRow
from .repository import Repository

_ROW = ResourceRow.__table__.c
_ANY_OF_TYPE = select(_ROW.pk).where(_ROW.res_type == bindparam("t"), _ROW.deleted.is_(False)).limit(1)


def add(repo: Repository, job: ExportJob) -> None:
    repo.s.add(job)


def get(repo: Repository, job_id: str) -> ExportJob | None:
    return repo.s.get(ExportJob, job_id) if len(job_id) <= 64 else None


def remove(repo: Repository, job: ExportJob) -> None:
    repo.s.delete(job)


def expire(repo: Repository, finished_before: float) -> list[str]:
    """Delete the jobs finished before the instant; their ids (their files go next)."""
    return list(repo.s.execute(delete(ExportJob).where(
        ExportJob.finished_at.is_not(None), ExportJob.finished_at < finished_before)
        .returning(ExportJob.id)).scalars().all())


def fail_stale(repo: Repository, now: float, max_attempts: int, error: str) -> None:
    """Fail the running jobs whose lease ran out after `max_attempts` starts."""
    repo.s.execute(update(ExportJob).where(
        ExportJob.status == "running", ExportJob.lease_until < now, ExportJob.attempts >= max_attempts)
        .values(status="failed", finished_at=now, lease_owner=None, error=error, progress="failed"))


def _waiting(now: float) -> ColumnElement[bool]:
    return (ExportJob.status == "queued") | ((ExportJob.status == "running") & (ExportJob.lease_until < now))


def running(repo: Repository, now: float) -> int:
    """Jobs some worker holds a live lease on."""
    return int(repo.s.execute(select(func.count()).select_from(ExportJob).where(
        ExportJob.status == "running", ExportJob.lease_until >= now)).scalar_one())


def waiting(repo: Repository, now: float, limit: int) -> list[str]:
    """Oldest first: queued jobs, and running jobs whose worker's lease ran out."""
    return list(repo.s.execute(select(ExportJob.id).where(_waiting(now)).order_by(ExportJob.created_at)
                               .limit(limit)).scalars().all())


def claim(repo: Repository, job_id: str, now: float, owner: str, until: float) -> bool:
    """Take the job if it is still waiting (one conditional UPDATE: one claimer wins)."""
    done = repo.s.execute(update(ExportJob).where(ExportJob.id == job_id, _waiting(now)).values(
        status="running", lease_owner=owner, lease_until=until, attempts=ExportJob.attempts + 1, progress="started"))
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def renew(repo: Repository, job_id: str, owner: str, until: float, progress: str) -> bool:
    """Extend the owner's lease; False when the job was deleted or another worker holds it."""
    done = repo.s.execute(update(ExportJob).where(
        ExportJob.id == job_id, ExportJob.lease_owner == owner, ExportJob.status == "running")
        .values(lease_until=until, progress=progress[:200]))
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def finish(repo: Repository, job_id: str, owner: str, values: dict[str, Any]) -> bool:
    """Record the owner's outcome (done or failed); False when the job is no longer the owner's."""
    done = repo.s.execute(update(ExportJob).where(
        ExportJob.id == job_id, ExportJob.lease_owner == owner, ExportJob.status == "running")
        .values(lease_owner=None, **values))
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def any_of_type(repo: Repository, rtype: str) -> bool:
    """Whether some live resource of the type exists (one indexed look-up)."""
    return repo.s.execute(_ANY_OF_TYPE, {"t": rtype}).first() is not None


def deleted_since(repo: Repository, types: list[str], after_ms: int) -> Iterator[tuple[str, str]]:
    """(type, id) of resources of `types` deleted after the instant, in key order."""
    rows = repo.s.execute(select(_ROW.res_type, _ROW.fhir_id).where(
        _ROW.deleted.is_(True), _ROW.updated_ms > after_ms, _ROW.res_type.in_(types)).order_by(_ROW.pk))
    for rtype, fid in rows:
        yield str(rtype), str(fid)
