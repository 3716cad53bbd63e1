"""Public consultation pages, posting, and the window's admin page."""

import uuid

from cachetools import LRUCache, TTLCache
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from forum import clock
from forum.accounts.access import role_required
from forum.consultation import services
from forum.consultation.forms import CommentForm, WindowForm
from forum.consultation.models import Consultation, Contribution, Document, Draft, Theme
from forum.consultation.services import window_of
from forum.consultation.visits import visits
from forum.errors import ForumError, InvalidInput
from forum.extensions import db, limiter
from forum.moderation import services as moderation
from forum.moderation.forms import ReportForm
from forum.moderation.models import DISPOSITIONS, HIDE_REASONS

bp = Blueprint("consultation", __name__)
admin_bp = Blueprint("consultation_admin", __name__, url_prefix="/admin")

RESPONSES_PER_PAGE = 100

# Rendered comment threads, keyed by draft, its thread_version, page, window state and
# whether the responses are published (moderation bumps thread_version on every change).
_thread_cache: LRUCache = LRUCache(maxsize=512)


def _post_limit():
    return limiter.limit(
        lambda: current_app.config["POST_LIMIT"],
        key_func=lambda: f"user:{current_user.get_id()}",
        methods=["POST"],
    )


def _consultation(slug: str) -> Consultation:
    return db.first_or_404(select(Consultation).where(Consultation.slug == slug))


def _draft(consultation: Consultation, code: str) -> Draft:
    return db.first_or_404(
        select(Draft)
        .options(joinedload(Draft.theme), joinedload(Draft.consultation))
        .where(Draft.consultation_id == consultation.id, Draft.code == code.upper())
    )


def _count_visit(kind: str, object_id: int) -> None:
    config = current_app.config
    visits.record(kind, object_id, config["VISIT_FLUSH_SECONDS"], config["VISIT_FLUSH_HITS"])


@bp.route("/")
def home():
    """The current consultation: its state, time left and themes."""
    consultation = services.current_consultation()
    if consultation is None:
        return render_template("consultation/empty.html")
    return render_template(
        "consultation/home.html",
        consultation=consultation,
        themes=services.themes_with_drafts(consultation),
        counts=services.contribution_counts_by_theme(consultation),
    )


@bp.route("/consultas/<slug>/temas/<theme_slug>")
def theme(slug: str, theme_slug: str):
    """A theme and its draft commitments, with contribution counts."""
    consultation = _consultation(slug)
    theme = db.first_or_404(
        select(Theme).where(Theme.consultation_id == consultation.id, Theme.slug == theme_slug)
    )
    _count_visit("theme", theme.id)
    return render_template(
        "consultation/theme.html",
        consultation=consultation,
        theme=theme,
        counts=services.contribution_counts_by_draft(consultation),
    )


@bp.route("/consultas/<slug>/borradores/<code>")
def draft(slug: str, code: str):
    """A draft commitment's sheet and its comment threads."""
    cache_key = _anonymous_page_key()
    cached = _page_cache().get(cache_key) if cache_key else None
    if cached is not None:
        draft_id, body = cached
        _count_visit("draft", draft_id)
        return Response(body, mimetype="text/html")
    consultation = _consultation(slug)
    draft = _draft(consultation, code)
    _count_visit("draft", draft.id)
    page = request.args.get("pagina", 1, type=int)
    form = CommentForm(idempotency_key=uuid.uuid4().hex) if current_user.is_authenticated else None
    html = render_template(
        "consultation/draft.html",
        consultation=consultation,
        draft=draft,
        threads_html=_render_threads(draft, page),
        form=form,
        page=page,
    )
    if cache_key:
        _page_cache()[cache_key] = (draft.id, html.encode())
    return html


def _anonymous_page_key() -> str | None:
    """Anonymous readers without pending messages share a page for a few seconds."""
    if current_user.is_authenticated or session.get("_flashes"):
        return None
    if current_app.config["PAGE_CACHE_SECONDS"] <= 0:
        return None
    return request.full_path


def _page_cache() -> TTLCache:
    """This worker's micro-cache of whole anonymous pages (absorbs bursts of readers)."""
    cache = current_app.extensions.get("aporta_page_cache")
    if cache is None:
        cache = TTLCache(maxsize=256, ttl=current_app.config["PAGE_CACHE_SECONDS"])
        current_app.extensions["aporta_page_cache"] = cache
    return cache


def _render_threads(draft: Draft, page: int) -> str:
    """The thread section's HTML; the same for every visitor, so it is cached."""
    is_open = draft.consultation.is_open()
    published = draft.consultation.responses_published_at is not None
    key = (draft.id, draft.thread_version, page, is_open, published)
    cached = _thread_cache.get(key)
    if cached is not None and current_app.config.get("THREAD_CACHE", True):
        return cached
    threads = services.thread_page(draft, page, current_app.config["THREADS_PER_PAGE"])
    html = render_template(
        "consultation/_threads.html",
        draft=draft,
        thread_page=threads,
        is_open=is_open,
        published=published,
        hide_reasons=HIDE_REASONS,
        dispositions=DISPOSITIONS,
    )
    _thread_cache[key] = html
    return html


@bp.route("/consultas/<slug>/borradores/<code>/aportes", methods=["POST"])
@login_required
@_post_limit()
def post_comment(slug: str, code: str):
    """Post a top-level comment on a draft."""
    consultation = _consultation(slug)
    draft = _draft(consultation, code)
    return _handle_compose(draft, parent=None)


@bp.route("/aportes/<int:contribution_id>/responder", methods=["GET", "POST"])
@login_required
@_post_limit()
def reply(contribution_id: int):
    """Reply to a contribution (a page of its own, so it works without JavaScript)."""
    parent = db.get_or_404(Contribution, contribution_id)
    if parent.draft is None:
        abort(404)
    if request.method == "GET":
        form = CommentForm(idempotency_key=uuid.uuid4().hex)
        return render_template(
            "consultation/compose.html", form=form, draft=parent.draft, parent=parent
        )
    return _handle_compose(parent.draft, parent=parent)


def _handle_compose(draft: Draft, parent: Contribution | None):
    form = CommentForm()
    if form.validate_on_submit():
        try:
            contribution = services.add_comment(
                draft,
                current_user,
                form.body.data,
                parent=parent,
                idempotency_key=form.idempotency_key.data or None,
            )
        except InvalidInput as error:
            form.body.errors.append(error.message)
        except ForumError as error:
            db.session.rollback()
            return _refused(error, form, draft, parent)
        else:
            db.session.commit()
            flash("Gracias: tu aporte fue publicado.", "success")
            return redirect(_thread_url(contribution))
    return (
        render_template("consultation/compose.html", form=form, draft=draft, parent=parent),
        422,
    )


def _refused(error: ForumError, form: CommentForm, draft: Draft, parent: Contribution | None):
    """A refusal that keeps what the person typed, so nothing is lost."""
    return (
        render_template(
            "consultation/refused.html",
            message=error.message,
            form=form,
            draft=draft,
            parent=parent,
        ),
        error.status,
    )


def _thread_url(contribution: Contribution) -> str:
    """Where a contribution stands in its draft's thread pages."""
    root_id = contribution.thread_root_id or contribution.id
    position = db.session.scalar(
        select(db.func.count()).where(
            Contribution.draft_id == contribution.draft_id,
            Contribution.parent_id.is_(None),
            Contribution.id <= root_id,
        )
    )
    page = max(1, -(-position // current_app.config["THREADS_PER_PAGE"]))
    draft = contribution.draft
    return url_for(
        "consultation.draft",
        slug=draft.consultation.slug,
        code=draft.code,
        pagina=page if page > 1 else None,
        _anchor=f"aporte-{contribution.id}",
    )


@bp.route("/aportes/<int:contribution_id>")
def permalink(contribution_id: int):
    """A contribution's own page: the text, what it answers, and a link into its thread."""
    contribution = db.get_or_404(Contribution, contribution_id)
    if contribution.draft is None:
        abort(404)
    return render_template(
        "consultation/permalink.html",
        contribution=contribution,
        thread_url=_thread_url(contribution),
        can_edit=services.can_edit(contribution, current_user),
        hide_reasons=HIDE_REASONS,
        dispositions=DISPOSITIONS,
    )


@bp.route("/aportes/<int:contribution_id>/denunciar", methods=["GET", "POST"])
@login_required
@_post_limit()
def report(contribution_id: int):
    """Report a contribution to the moderators, with a reason (once per person)."""
    contribution = db.get_or_404(Contribution, contribution_id)
    if contribution.draft is None:
        abort(404)
    form = ReportForm()
    if request.method == "POST" and form.validate_on_submit():
        try:
            _, is_new = moderation.report_contribution(
                contribution, current_user, form.reason.data, form.note.data or ""
            )
        except ForumError as error:
            db.session.rollback()
            form.reason.errors.append(error.message)
        else:
            db.session.commit()
            flash(
                "Gracias: el equipo de moderación revisará el aporte."
                if is_new
                else "Ya habías denunciado este aporte: el equipo de moderación lo está revisando.",
                "success",
            )
            return redirect(_thread_url(contribution))
    status = 422 if form.errors else 200
    return render_template("moderation/report.html", form=form, contribution=contribution), status


@bp.route("/consultas/<slug>/respuestas")
def responses(slug: str):
    """Every contribution with its disposition and reasoned response, once published."""
    consultation = _consultation(slug)
    if consultation.responses_published_at is None:
        return render_template("moderation/responses.html", consultation=consultation, rows=None)
    page = max(1, request.args.get("pagina", 1, type=int))
    rows, total = moderation.public_responses(consultation, page, RESPONSES_PER_PAGE)
    return render_template(
        "moderation/responses.html",
        consultation=consultation,
        rows=rows,
        total=total,
        page=page,
        pages=max(1, -(-total // RESPONSES_PER_PAGE)),
        counts=moderation.disposition_counts(consultation),
        hide_reasons=HIDE_REASONS,
        dispositions=DISPOSITIONS,
    )


@bp.route("/aportes/<int:contribution_id>/editar", methods=["GET", "POST"])
@login_required
@_post_limit()
def edit(contribution_id: int):
    """Edit one's own comment for a short time after posting."""
    contribution = db.get_or_404(Contribution, contribution_id)
    if contribution.draft is None:
        abort(404)
    form = CommentForm(body=contribution.body) if request.method == "GET" else CommentForm()
    if request.method == "POST" and form.validate_on_submit():
        try:
            services.edit_comment(contribution, current_user, form.body.data)
        except InvalidInput as error:
            form.body.errors.append(error.message)
        except ForumError as error:
            db.session.rollback()
            return _refused(error, form, contribution.draft, contribution.parent)
        else:
            db.session.commit()
            flash("Tu aporte fue actualizado.", "success")
            return redirect(_thread_url(contribution))
    elif not services.can_edit(contribution, current_user):
        abort(403)
    status = 422 if form.errors else 200
    return (
        render_template(
            "consultation/compose.html",
            form=form,
            draft=contribution.draft,
            parent=contribution.parent,
            editing=contribution,
        ),
        status,
    )


@bp.route("/consultas/<slug>/biblioteca")
def library(slug: str):
    """The library: supporting documents, some also under consultation."""
    consultation = _consultation(slug)
    return render_template("consultation/library.html", consultation=consultation)


@bp.route("/consultas/<slug>/biblioteca/<doc_slug>")
def document(slug: str, doc_slug: str):
    """One document of the library."""
    consultation = _consultation(slug)
    doc = db.first_or_404(
        select(Document).where(
            Document.consultation_id == consultation.id, Document.slug == doc_slug
        )
    )
    return render_template("consultation/document.html", consultation=consultation, document=doc)


@bp.route("/consultas/<slug>/preguntas-frecuentes")
def faq(slug: str):
    """Frequently asked questions."""
    return render_template("consultation/faq.html", consultation=_consultation(slug))


@bp.route("/consultas/<slug>/contacto")
def contact(slug: str):
    """How to reach the secretariat, and how to send a contribution by e-mail."""
    return render_template("consultation/contact.html", consultation=_consultation(slug))


@admin_bp.route("/consultas/<slug>/ventana", methods=["GET", "POST"])
@role_required("admin")
def window(slug: str):
    """Set when the consultation opens and closes, in Lima time."""
    consultation = _consultation(slug)
    form = WindowForm()
    if request.method == "GET":
        form.opens_at.data = clock.to_lima(consultation.opens_at).replace(tzinfo=None)
        form.closes_at.data = clock.to_lima(consultation.closes_at).replace(tzinfo=None)
    elif form.validate_on_submit():
        before = window_of(consultation)
        try:
            services.set_window(
                consultation,
                form.opens_at.data.replace(tzinfo=clock.LIMA),
                form.closes_at.data.replace(tzinfo=clock.LIMA),
                actor=f"user {current_user.id}",
            )
        except ForumError as error:
            form.closes_at.errors.append(error.message)
        else:
            moderation.record_audit(
                current_user,
                "consultation.set_window",
                consultation,
                before,
                window_of(consultation),
            )
            db.session.commit()
            flash("La ventana de la consulta fue actualizada.", "success")
            return redirect(url_for("consultation_admin.window", slug=slug))
    status = 422 if form.errors else 200
    return render_template("consultation/window.html", consultation=consultation, form=form), status
