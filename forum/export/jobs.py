"""Background export jobs: a large XLSX or data package is built by a process of its own
(`flask export run-job TOKEN`, started by the web worker) while the person watches its
progress, then downloaded (with resume) from the export folder. Small files are still sent
at once (see views). A separate process, not a thread: gunicorn recycles its workers
(max_requests), which would cut a thread off, and the export's CPU stays out of the
worker's request threads.

A job's process writes `<token>.<ext>.part`, renames it when complete and records the
size and SHA-256. Its progress and heartbeat go through short transactions of their own,
so the long read of the rows is never interrupted by them. A job whose heartbeat stops
(the process was restarted or killed) is marked interrupted; finished files are deleted
after EXPORT_JOB_KEEP_HOURS. See docs/exports.md.
"""

import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update

from forum import clock
from forum.accounts.models import User
from forum.consultation.models import Consultation
from forum.errors import ForumError
from forum.export import services
from forum.export.models import ExportJob
from forum.export.rows import Audience, count_rows
from forum.extensions import db

log = logging.getLogger(__name__)

EXTENSIONS = {"xlsx": "xlsx", "zip": "zip", "pack": "xlsx"}
PROGRESS_EVERY_SECONDS = 1.0


class TooManyJobs(ForumError):
    status = 503
    message = (
        "Ya se están preparando varias exportaciones grandes. Vuelve a pedir el archivo en "
        "unos minutos."
    )


def folder() -> str:
    """Where job files are kept (EXPORT_JOB_FOLDER, by default instance/exports)."""
    path = current_app.config["EXPORT_JOB_FOLDER"] or os.path.join(
        current_app.instance_path, "exports"
    )
    os.makedirs(path, exist_ok=True)
    return path


def file_path(job: ExportJob) -> str:
    return os.path.join(folder(), f"{job.token}.{EXTENSIONS[job.kind]}")


def keep() -> timedelta:
    return timedelta(hours=float(current_app.config["EXPORT_JOB_KEEP_HOURS"]))


def _stale_after() -> timedelta:
    return timedelta(seconds=float(current_app.config["EXPORT_JOB_STALE_SECONDS"]))


def tidy_jobs() -> None:
    """Mark jobs whose process died as interrupted and delete files past their keep time."""
    now = clock.now()
    for job in db.session.scalars(
        select(ExportJob).where(ExportJob.status.in_(("pending", "running", "ready")))
    ):
        if job.is_stale(now, _stale_after()):
            job.status, job.finished_at = "interrupted", now
            _remove(file_path(job) + ".part")
        elif job.status == "ready" and job.expires_at(keep()) <= now:
            job.status = "expired"
            _remove(file_path(job))
    db.session.flush()


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def job_rows(
    kind: str, consultation: Consultation, values: Mapping[str, str], institution: str
) -> int:
    """How many rows the job's file will have."""
    filters = services.parse_filters(consultation, values)
    if kind == "pack":
        found = services.find_institution(consultation, institution)
        filters = services.pack_filters(filters, found)
    return count_rows(consultation, filters)


def request_job(
    kind: str,
    consultation: Consultation,
    values: Mapping[str, str],
    audience: Audience,
    file_name: str,
    requested_by: User | None,
    institution: str = "",
) -> ExportJob:
    """A job for this file: the same one still in preparation for this person, or a new
    one (refused while EXPORT_JOBS_MAX_RUNNING others are in preparation: counted apart for
    public files and the secretariat's, so anonymous requests cannot hold up the staff's)."""
    tidy_jobs()
    filters_json = json.dumps(dict(sorted(values.items())), ensure_ascii=False)
    requester_id = requested_by.id if requested_by else None
    same = db.session.scalar(
        select(ExportJob).where(
            ExportJob.status.in_(("pending", "running")),
            ExportJob.kind == kind,
            ExportJob.audience == audience.value,
            ExportJob.consultation_id == consultation.id,
            ExportJob.filters == filters_json,
            ExportJob.institution == institution,
            ExportJob.requested_by_id.is_(None)
            if requester_id is None
            else ExportJob.requested_by_id == requester_id,
        )
    )
    if same is not None:
        return same
    public = ExportJob.audience == Audience.PUBLIC.value
    active = db.session.scalar(
        select(func.count(ExportJob.id)).where(
            ExportJob.status.in_(("pending", "running")),
            public if audience is Audience.PUBLIC else ~public,
        )
    )
    if active >= int(current_app.config["EXPORT_JOBS_MAX_RUNNING"]):
        raise TooManyJobs()
    job = ExportJob(
        token=secrets.token_urlsafe(32),
        kind=kind,
        audience=audience.value,
        consultation_id=consultation.id,
        filters=filters_json,
        institution=institution,
        requested_by_id=requester_id,
        rows_total=job_rows(kind, consultation, values, institution),
        file_name=file_name,
    )
    db.session.add(job)
    db.session.flush()
    log.info(
        "export job %s: %s for %s requested by %s, filters %s",
        job.id,
        kind,
        audience.value,
        f"user {requester_id}" if requester_id else "anonymous",
        filters_json,
    )
    return job


def find_job(token: str) -> ExportJob | None:
    return db.session.scalar(select(ExportJob).where(ExportJob.token == token))


def recent_jobs(limit: int = 10) -> list[ExportJob]:
    """The latest jobs, for the secretariat's exports page."""
    return list(db.session.scalars(select(ExportJob).order_by(ExportJob.id.desc()).limit(limit)))


# Settings the job's process must share with the web process that started it (beyond the
# environment both inherit): what the file contains and where it goes.
SHARED_SETTINGS = ("BASE_URL", "EXPORT_SUPPRESS_BELOW")
PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(job: ExportJob) -> subprocess.Popen | None:
    """Start the process that builds the job's file (call after the job is committed)."""
    if job.status != "pending":
        return None
    config = current_app.config
    env = os.environ | {
        "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
        "APORTA_EXPORT_JOB_FOLDER": folder(),
        **{f"APORTA_{name}": str(config[name]) for name in SHARED_SETTINGS},
    }
    # "--": a token may start with "-" (URL-safe base64), which click would take for an option.
    command = [
        sys.executable,
        "-m",
        "flask",
        "--app",
        "forum",
        "export",
        "run-job",
        "--",
        job.token,
    ]
    process = subprocess.Popen(  # noqa: S603 (our own command, no shell)
        command, cwd=PROJECT, env=env, stdin=subprocess.DEVNULL, start_new_session=True
    )
    app = current_app._get_current_object()
    threading.Thread(
        target=_watch,
        args=(app, job.id, process, file_path(job) + ".part"),
        name=f"export-job-{job.id}",
        daemon=True,
    ).start()
    return process


def _watch(app, job_id: int, process: subprocess.Popen, part: str) -> None:
    """Reap the job's process (no zombie; if this worker goes first, init reaps it), and
    mark the job failed at once if the process died before recording an outcome."""
    if process.wait() == 0:
        return
    _remove(part)
    with app.app_context():
        _record(
            job_id,
            ExportJob.status.in_(("pending", "running")),  # it recorded no outcome
            status="failed",
            finished_at=clock.now(),
            error="No se pudo preparar el archivo: el proceso de la exportación terminó con el "
            f"código {process.returncode}. Vuelve a pedirlo; si se repite, avisa al equipo "
            "técnico.",
        )


def _record(job_id: int, *conditions, **values) -> None:
    """Update a job (if `conditions` hold) in a short transaction of its own, apart from
    the session's."""
    with db.engine.begin() as connection:
        connection.execute(
            update(ExportJob).where(ExportJob.id == job_id, *conditions).values(**values)
        )


class _Progress:
    """Chunks of rows passed through, recording the rows done and a heartbeat each second."""

    def __init__(self, job_id: int):
        self.job_id, self.done, self.last = job_id, 0, 0.0

    def __call__(self, chunks: Iterable[list[tuple]]):
        for chunk in chunks:
            self.done += len(chunk)
            if time.monotonic() - self.last >= PROGRESS_EVERY_SECONDS:
                self.last = time.monotonic()
                _record(self.job_id, rows_done=self.done, heartbeat_at=clock.now())
            yield chunk


def _write(job: ExportJob, path: str, progress: _Progress) -> int:
    consultation = db.session.get(Consultation, job.consultation_id)
    filters = services.parse_filters(consultation, json.loads(job.filters))
    audience = Audience(job.audience)
    actor = f"user {job.requested_by_id}" if job.requested_by_id else "anonymous"
    if job.kind == "zip":
        return services.write_datapackage(path, consultation, filters, actor, progress)
    if job.kind == "pack":
        found = services.find_institution(consultation, job.institution)
        return services.write_institution_pack(path, consultation, found, filters, actor, progress)
    return services.write_xlsx(path, consultation, filters, audience, actor, progress)


def run_job(token: str) -> None:
    """Build one job's file (in the job's own process); any failure is recorded on the job."""
    job = find_job(token)
    if job is None or job.status != "pending":
        raise ForumError(f"No hay ninguna exportación pendiente con la clave {token}.")
    job_id, path = job.id, file_path(job)
    _record(job_id, status="running", heartbeat_at=clock.now())
    try:
        rows = _write(job, path + ".part", _Progress(job_id))
        os.replace(path + ".part", path)
    except Exception as error:
        log.exception("export job %s failed", job_id)
        _remove(path + ".part")
        db.session.rollback()
        reason = error.message if isinstance(error, ForumError) else type(error).__name__
        _record(
            job_id,
            status="failed",
            finished_at=clock.now(),
            error=f"No se pudo preparar el archivo: {reason}. Vuelve a pedirlo; si se "
            "repite, avisa al equipo técnico.",
        )
        return
    db.session.rollback()  # end the read before writing (SQLite: no stale snapshot)
    _record(
        job_id,
        status="ready",
        rows_done=rows,
        rows_total=rows,
        file_size=os.path.getsize(path),
        file_sha256=services.file_sha256(path),
        heartbeat_at=clock.now(),
        finished_at=clock.now(),
    )
    log.info("export job %s ready: %s rows", job_id, rows)
