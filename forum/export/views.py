"""Export downloads and the participation dashboard (public and secretariat)."""

import json
import os
import tempfile

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_file,
    stream_with_context,
    url_for,
)
from flask_login import current_user

from forum.accounts.access import role_required
from forum.consultation.models import CHANNELS
from forum.export import charts, jobs, services
from forum.export.models import JOB_KINDS
from forum.export.privacy import mask_emails
from forum.export.rows import Audience, count_rows, responses_are_public
from forum.export.services import MEDIA_TYPES
from forum.extensions import db, limiter
from forum.moderation.models import DISPOSITIONS, Tag

bp = Blueprint("export", __name__, url_prefix="/datos")
bp.add_app_template_filter(
    mask_emails, "mask_emails"
)  # public pages: no address, whatever the data

STAFF = ("moderator", "admin")


def _download_limit():
    return limiter.limit(lambda: current_app.config["EXPORT_DOWNLOAD_LIMIT"])


def _actor() -> str:
    return f"user {current_user.id}" if current_user.is_authenticated else "anonymous"


def _selection():
    consultation = services.find_consultation(request.args.get("consulta"))
    return consultation, services.parse_filters(consultation, request.args)


def _headers(consultation, filters, audience: Audience, filename: str) -> dict:
    meta = services.metadata(consultation, filters, audience, filename.rsplit(".", 1)[-1])
    return {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
        "X-Aporta-Generated-At": meta["generated_at"],
        "X-Aporta-Audience": audience.value,
        "X-Aporta-Filters": json.dumps(meta["filters"]),  # ASCII: non-ASCII is escaped
    }


def _download(fmt: str, audience: Audience, prefix: str):
    if fmt not in (*services.FORMATS, "zip") or (fmt == "zip" and audience is not Audience.PUBLIC):
        abort(404)
    consultation, filters = _selection()
    filename = f"{prefix}-{consultation.slug}.{fmt}"
    headers = _headers(consultation, filters, audience, filename)
    if fmt in ("csv", "json"):
        stream = services.stream_csv if fmt == "csv" else services.stream_json
        chunks = stream(consultation, filters, audience, _actor())
        return Response(stream_with_context(chunks), content_type=MEDIA_TYPES[fmt], headers=headers)

    def write(path):
        if fmt == "zip":
            return services.write_datapackage(path, consultation, filters, _actor())
        return services.write_xlsx(path, consultation, filters, audience, _actor())

    return _file_or_job(fmt, count_rows(consultation, filters), write, headers)


def _file_or_job(kind: str, rows: int, write, headers: dict):
    """Small files are written and sent at once; larger ones are offered as a job."""
    if rows > current_app.config["EXPORT_DIRECT_MAX_ROWS"]:
        return _prepare_page(kind, rows)
    return _spooled(write, jobs.EXTENSIONS[kind], headers)


def _prepare_page(kind: str, rows: int):
    """Too many rows to build the file while the browser waits (a proxy would time out):
    a page that offers to prepare it in the background (a POST to this address)."""
    return render_template(
        "export/prepare.html",
        kind_label=JOB_KINDS[kind],
        count=rows,
        action=request.full_path.rstrip("?"),
        keep_hours=current_app.config["EXPORT_JOB_KEEP_HOURS"],
    )


def _start_job(kind: str, audience: Audience, prefix: str, institution: str = ""):
    consultation, _ = _selection()
    extension = jobs.EXTENSIONS[kind]
    filename = f"{prefix}-{institution or consultation.slug}.{extension}"
    job = jobs.request_job(
        kind,
        consultation,
        {name: request.args[name] for name in services.FILTER_NAMES if request.args.get(name)},
        audience,
        filename,
        current_user if current_user.is_authenticated else None,
        institution,
    )
    db.session.commit()
    jobs.start(job)
    return redirect(url_for("export.job_status", token=job.token), 303)


def _spooled(write, fmt: str, headers: dict) -> Response:
    """Write a file to a temporary path, then stream it with its SHA-256 and delete it."""
    handle, path = tempfile.mkstemp(suffix="." + fmt, prefix="aporta-export-")
    os.close(handle)
    try:
        write(path)
        headers = headers | {
            "X-Aporta-SHA256": services.file_sha256(path),
            "Content-Length": str(os.path.getsize(path)),
        }
    except BaseException:
        os.unlink(path)
        raise

    def chunks():
        try:
            with open(path, "rb") as source:
                yield from iter(lambda: source.read(256 * 1024), b"")
        finally:
            os.unlink(path)

    return Response(chunks(), content_type=MEDIA_TYPES[fmt], headers=headers)


def _choices(consultation) -> dict:
    return {
        "themes": consultation.themes,
        "drafts": [d for theme in consultation.themes for d in theme.drafts],
        "channels": CHANNELS,
        "dispositions": DISPOSITIONS,
        "tags": db.session.scalars(db.select(Tag).order_by(Tag.name)).all(),
    }


def _index(template: str, **extra):
    consultation, filters = _selection()
    return render_template(
        template,
        consultation=consultation,
        filters=filters,
        args={k: v for k, v in request.args.items() if v},
        count=count_rows(consultation, filters),
        responses_public=responses_are_public(consultation),
        **_choices(consultation),
        **extra,
    )


def _dashboard(audience: Audience):
    consultation, filters = _selection()
    figures = services.dashboard(consultation, filters, audience)
    table = figures.theme_channel
    chart_themes = charts.stacked_bars(
        "Aportes por temática y vía",
        table.headings[1:-1],
        [(row[0], row[1:-1]) for row in table.rows[:-1]],
    )
    chart_days = charts.stacked_bars(
        "Aportes por día (hora de Lima)",
        [CHANNELS.get(c, c) for c in CHANNELS],
        [(day.strftime("%d/%m/%Y"), [n.get(c, 0) for c in CHANNELS]) for day, n in figures.by_day],
    )
    chart_visits = charts.stacked_bars(
        "Visitas por borrador",
        ["Visitas"],
        [(f"{v['code']} {v['title']}", [v["visits"]]) for v in figures.visits],
    )
    return render_template(
        "export/dashboard.html",
        consultation=consultation,
        filters=filters,
        figures=figures,
        charts=[chart_themes, chart_days, chart_visits],
        audience=audience,
        threshold=services.suppression_threshold(),
        args={k: v for k, v in request.args.items() if v},
        **_choices(consultation),
    )


@bp.get("/")
def index():
    """Open data: the public contributions table in every format, with filters."""
    return _index("export/index.html")


@bp.get("/aportes.<fmt>")
@_download_limit()
def public_download(fmt: str):
    """The public contributions table (CSV, JSON, XLSX, or the zipped data package)."""
    return _download(fmt, Audience.PUBLIC, "aportes")


@bp.post("/aportes.<fmt>")
@_download_limit()
def public_job(fmt: str):
    """Prepare the public XLSX or data package in the background."""
    if fmt not in JOB_KINDS or fmt == "pack":
        abort(404)
    return _start_job(fmt, Audience.PUBLIC, "aportes")


@bp.get("/exportaciones/<token>")
def job_status(token: str):
    """A background export: its progress, then its download link."""
    job = _visible_job(token)
    jobs.tidy_jobs()
    db.session.commit()
    return render_template(
        "export/job.html",
        job=job,
        keep_hours=current_app.config["EXPORT_JOB_KEEP_HOURS"],
        expires_at=job.expires_at(jobs.keep()),
    )


@bp.get("/exportaciones/<token>/<name>")
@_download_limit()
def job_file(token: str, name: str):
    """A background export's file (Range requests resume an interrupted download)."""
    job = _visible_job(token)
    path = jobs.file_path(job)
    if job.status != "ready" or name != job.file_name or not os.path.exists(path):
        abort(404)
    response = send_file(
        path,
        mimetype=MEDIA_TYPES[jobs.EXTENSIONS[job.kind]],
        as_attachment=True,
        download_name=job.file_name,
        conditional=True,
        etag=job.file_sha256,
    )
    response.headers["X-Aporta-SHA256"] = job.file_sha256
    response.headers["Cache-Control"] = "no-store"
    return response


def _visible_job(token: str):
    """The job, if this person may see it: public files for everyone, others for staff."""
    job = jobs.find_job(token)
    if job is None:
        abort(404)
    if job.audience != Audience.PUBLIC.value:
        if not current_user.is_authenticated:
            abort(401)
        if current_user.role not in STAFF:
            abort(403)
    return job


@bp.get("/panel")
def public_dashboard():
    """Participation figures for everyone, small counts suppressed."""
    return _dashboard(Audience.PUBLIC)


@bp.get("/secretaria/")
@role_required(*STAFF)
def staff_index():
    """The secretariat's exports, with every field, and the per-institution packs."""
    consultation = services.find_consultation(request.args.get("consulta"))
    return _index(
        "export/staff.html",
        institutions=services.institutions(consultation),
        recent_jobs=jobs.recent_jobs(),
    )


@bp.get("/secretaria/aportes.<fmt>")
@role_required(*STAFF)
@_download_limit()
def staff_download(fmt: str):
    """The secretariat's contributions table: every field, e-mail addresses included."""
    return _download(fmt, Audience.SECRETARIAT, "aportes-secretaria")


@bp.post("/secretaria/aportes.<fmt>")
@role_required(*STAFF)
@_download_limit()
def staff_job(fmt: str):
    """Prepare the secretariat's XLSX in the background."""
    if fmt != "xlsx":
        abort(404)
    return _start_job("xlsx", Audience.SECRETARIAT, "aportes-secretaria")


@bp.get("/secretaria/panel")
@role_required(*STAFF)
def staff_dashboard():
    """Participation figures for the secretariat, without suppression."""
    return _dashboard(Audience.SECRETARIAT)


@bp.get("/secretaria/entidades/<slug>.xlsx")
@role_required(*STAFF)
@_download_limit()
def institution_pack(slug: str):
    """The XLSX pack of one responsible institution: the contributions on its drafts."""
    consultation, filters = _selection()
    institution = services.find_institution(consultation, slug)
    filename = f"aportes-{institution.slug}.xlsx"
    headers = _headers(consultation, filters, Audience.INSTITUTION, filename)
    rows = count_rows(consultation, services.pack_filters(filters, institution))

    def write(path):
        return services.write_institution_pack(path, consultation, institution, filters, _actor())

    return _file_or_job("pack", rows, write, headers)


@bp.post("/secretaria/entidades/<slug>.xlsx")
@role_required(*STAFF)
@_download_limit()
def institution_job(slug: str):
    """Prepare one institution's XLSX pack in the background."""
    consultation, _ = _selection()
    institution = services.find_institution(consultation, slug)
    return _start_job("pack", Audience.INSTITUTION, "aportes", institution.slug)
