"""Export downloads and the participation dashboard (public and secretariat)."""

import json
import os
import tempfile

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    render_template,
    request,
    stream_with_context,
)
from flask_login import current_user

from forum.accounts.access import role_required
from forum.consultation.models import CHANNELS
from forum.export import charts, services
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
    if fmt == "zip":
        return _spooled(
            lambda path: services.write_datapackage(path, consultation, filters, _actor()),
            fmt,
            headers,
        )
    return _spooled(
        lambda path: services.write_xlsx(path, consultation, filters, audience, _actor()),
        fmt,
        headers,
    )


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
    )


@bp.get("/secretaria/aportes.<fmt>")
@role_required(*STAFF)
@_download_limit()
def staff_download(fmt: str):
    """The secretariat's contributions table: every field, e-mail addresses included."""
    return _download(fmt, Audience.SECRETARIAT, "aportes-secretaria")


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
    return _spooled(
        lambda path: services.write_institution_pack(
            path, consultation, institution, filters, _actor()
        ),
        "xlsx",
        headers,
    )
