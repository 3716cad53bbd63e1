"""Moderators' ingest pages: upload, triage, quarantine, original messages."""

import tempfile
from urllib.parse import quote

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from forum.accounts.access import role_required
from forum.consultation import services as consultation_services
from forum.consultation.models import Contribution, Draft, Theme
from forum.errors import ForumError
from forum.extensions import db
from forum.ingest import services
from forum.ingest.forms import ActionForm, AssignForm, UploadForm
from forum.ingest.models import REASONS, InboundAttachment, InboundMessage
from forum.ingest.pipeline import Run
from forum.ingest.sources import RawItem, mbox_items

bp = Blueprint("ingest", __name__, url_prefix="/moderacion/correo")

STAFF = ("moderator", "admin")
PER_PAGE = 50
HELD = ("quarantined", "error", "duplicate")


@bp.before_request
def _upload_limit():
    if request.endpoint == "ingest.upload" and request.method == "POST":
        request.max_content_length = services.settings().upload_max_bytes


def _message(message_id: int) -> InboundMessage:
    return db.session.get(InboundMessage, message_id) or abort(404)


def _assign_form(contribution: Contribution) -> AssignForm:
    form = AssignForm(prefix=f"c{contribution.id}")
    themes = db.session.scalars(
        select(Theme)
        .options(selectinload(Theme.drafts))
        .where(Theme.consultation_id == contribution.consultation_id)
        .order_by(Theme.position)
    ).all()
    form.theme.choices = [("", "Sin tema")] + [(str(t.id), t.name) for t in themes]
    form.draft.choices = [("", "Sin borrador")] + [
        (str(d.id), f"{d.code} · {d.title}") for t in themes for d in t.drafts
    ]
    if not form.is_submitted():
        form.theme.data = str(contribution.theme_id or "")
        form.draft.data = str(contribution.draft_id or "")
    return form


@bp.get("/")
@role_required(*STAFF)
def triage():
    """E-mail contributions waiting for a draft, oldest first, with the counts per status."""
    rows = db.session.execute(
        select(Contribution, InboundMessage)
        .join(InboundMessage, InboundMessage.contribution_id == Contribution.id)
        .where(
            Contribution.channel == "email",
            Contribution.draft_id.is_(None),
            InboundMessage.status.in_(("contribution", "released")),
        )
        .order_by(Contribution.received_at, Contribution.id)
        .limit(PER_PAGE)
    ).all()
    counts = dict(
        db.session.execute(
            select(InboundMessage.status, func.count()).group_by(InboundMessage.status)
        ).all()
    )
    items = [(c, m, _assign_form(c)) for c, m in rows]
    return render_template("ingest/triage.html", items=items, counts=counts)


@bp.post("/aportes/<int:contribution_id>/asignar")
@role_required(*STAFF)
def assign(contribution_id: int):
    """Put an e-mail contribution under a theme and draft."""
    contribution = db.session.get(Contribution, contribution_id) or abort(404)
    form = _assign_form(contribution)
    if not form.validate_on_submit():
        flash("Elige un tema o un borrador de la lista.", "error")
        return redirect(url_for("ingest.triage"))
    theme = db.session.get(Theme, int(form.theme.data)) if form.theme.data else None
    draft = db.session.get(Draft, int(form.draft.data)) if form.draft.data else None
    consultation_services.assign_draft(contribution, theme, draft, current_user)
    db.session.commit()
    flash(f"Aporte {contribution.id} asignado.", "success")
    return redirect(url_for("ingest.triage"))


@bp.get("/retenidos")
@role_required(*STAFF)
def held():
    """Quarantined, failed and likely-duplicate messages, newest first, with their reason."""
    status = request.args.get("estado", "")
    query = select(InboundMessage).where(InboundMessage.status.in_(HELD))
    if status in HELD:
        query = query.where(InboundMessage.status == status)
    messages = db.session.scalars(query.order_by(InboundMessage.id.desc()).limit(PER_PAGE)).all()
    return render_template(
        "ingest/held.html", messages=messages, status=status, form=ActionForm(), reasons=REASONS
    )


@bp.get("/mensajes/<int:message_id>")
@role_required(*STAFF)
def message(message_id: int):
    """One received message as it arrived: envelope, text, attachments, what became of it."""
    inbound = _message(message_id)
    text = ""
    if not inbound.is_truncated:
        text = services.parse_message(inbound.raw, services.parse_options()).text
    return render_template("ingest/message.html", message=inbound, text=text, form=ActionForm())


@bp.post("/mensajes/<int:message_id>/liberar")
@role_required(*STAFF)
def release(message_id: int):
    """Make a held message a contribution, by a moderator's decision."""
    inbound = _message(message_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        consultation = services.target_consultation()
        contribution = services.release_message(inbound, consultation, current_user)
    except ForumError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("ingest.message", message_id=message_id))
    db.session.commit()
    flash(f"Mensaje liberado como aporte {contribution.id}; espera asignación.", "success")
    return redirect(url_for("ingest.message", message_id=message_id))


@bp.get("/mensajes/<int:message_id>/original.eml")
@role_required(*STAFF)
def original(message_id: int):
    """The raw message, as a download (never rendered)."""
    inbound = _message(message_id)
    return _download(inbound.raw, f"mensaje-{inbound.id}.eml")


@bp.get("/adjuntos/<int:attachment_id>")
@role_required(*STAFF)
def attachment(attachment_id: int):
    """An allowed attachment, as a download (never rendered inline)."""
    found = db.session.get(InboundAttachment, attachment_id) or abort(404)
    if not found.is_allowed or found.data is None:
        abort(404)
    return _download(found.data, found.filename)


def _download(data: bytes, filename: str) -> Response:
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    response = Response(data, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = (
        f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@bp.route("/subir", methods=["GET", "POST"])
@role_required(*STAFF)
def upload():
    """Upload .eml or .mbox files exported from the inbox; same pipeline as IMAP."""
    form = UploadForm()
    if form.validate_on_submit():
        try:
            run = Run()
            for item in _uploaded_items(form.files.data):
                run.ingest(item)
        except ForumError as error:
            flash(error.message, "error")
            return render_template("ingest/upload.html", form=form), error.status
        flash(run.totals.line(), "success")
        return redirect(url_for("ingest.triage"))
    return render_template("ingest/upload.html", form=form)


def _uploaded_items(files):
    for storage in files:
        name = storage.filename or "subido.eml"
        data = storage.read()
        if not (name.lower().endswith(".mbox") or data.startswith(b"From ")):
            yield RawItem(raw=data, source="upload", source_ref=name)
            continue
        with tempfile.NamedTemporaryFile(suffix=".mbox") as handle:
            handle.write(data)
            handle.flush()
            yield from mbox_items(handle.name, source="upload", label=name)
