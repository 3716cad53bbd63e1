"""Moderation pages: the queue, tags, hiding, groups, responses, audit log."""

from urllib.parse import urlencode

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from forum.accounts.access import role_required, safe_next
from forum.consultation.models import Consultation, Contribution, Draft, Theme
from forum.consultation.services import current_consultation
from forum.errors import ForumError, InvalidInput
from forum.extensions import db
from forum.moderation import forms, services
from forum.moderation.models import (
    DISPOSITIONS,
    HIDE_REASONS,
    TAG_KINDS,
    ContributionGroup,
    Tag,
)

bp = Blueprint("moderation", __name__, url_prefix="/moderacion")

STAFF = ("moderator", "admin")
PER_PAGE = 50


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _ids(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.isdigit()]


def _tag_choices(tags: list[Tag]) -> list:
    return forms.choices([(str(t.id), f"{t.name} ({TAG_KINDS.get(t.kind, t.kind)})") for t in tags])


def _queue_filter(form: forms.QueueFilterForm) -> services.QueueFilter:
    return services.QueueFilter(
        text=form.q.data or "",
        theme_id=_int(form.tema.data),
        draft_id=_int(form.borrador.data),
        channel=form.canal.data or "",
        state=form.estado.data or "",
        disposition=form.disposicion.data or "",
        tag_id=_int(form.etiqueta.data),
        since=form.desde.data if not form.desde.errors else None,
        until=form.hasta.data if not form.hasta.errors else None,
        organisation_type=form.tipo.data or "",
        region=form.region.data or "",
        late=form.tardio.data or "",
        grouped=form.agrupado.data or "",
        oldest_first=form.orden.data == "antiguos",
    )


@bp.get("/")
@role_required(*STAFF)
def queue():
    """Every contribution, whatever its channel, filtered, sorted and paginated."""
    form = forms.QueueFilterForm(formdata=request.args)
    form.validate()
    themes = db.session.scalars(select(Theme).order_by(Theme.consultation_id, Theme.position)).all()
    drafts = db.session.scalars(select(Draft).order_by(Draft.consultation_id, Draft.code)).all()
    tags = services.all_tags()
    form.tema.choices = forms.ANY + forms.choices([(str(t.id), t.name) for t in themes])
    form.borrador.choices = forms.ANY + forms.choices(
        [(str(d.id), f"{d.code} {d.title}") for d in drafts]
    )
    form.etiqueta.choices = forms.choices([("", "Todas")]) + _tag_choices(tags)
    page = services.filter_queue(
        _queue_filter(form),
        request.args.get("pagina", 1, type=int),
        PER_PAGE,
        services.parse_cursor(request.args.get("despues")),
    )
    bulk = forms.BulkForm(prefix="lote", volver=request.full_path)
    bulk.etiqueta.choices = _tag_choices(services.active_tags())
    args = {k: v for k, v in request.args.items() if k not in ("pagina", "despues") and v}

    def page_url(number: int) -> str:
        extra = {"pagina": number}
        if number == page.page + 1 and page.items:
            extra["despues"] = page.next_cursor  # keyset: as cheap as the first page
        return url_for("moderation.queue") + "?" + urlencode({**args, **extra})

    text = (form.q.data or "").strip()
    return render_template(
        "moderation/queue.html",
        form=form,
        bulk=bulk,
        queue=page,
        text_ignored=text if text and not services.search_words(text)[0] else "",
        page_url=page_url,
        dispositions=DISPOSITIONS,
        hide_reasons=HIDE_REASONS,
    )


@bp.post("/lote")
@role_required(*STAFF)
def bulk():
    """Apply one action to the contributions selected in the queue."""
    form = forms.BulkForm(prefix="lote")
    form.etiqueta.choices = _tag_choices(services.active_tags())
    back = safe_next(form.volver.data, url_for("moderation.queue"))
    selected = services.contributions_by_ids(_ids(request.form.getlist("aporte")))
    if not form.validate_on_submit():
        flash("La acción no es válida: elige una de la lista.", "error")
        return redirect(back)
    if not selected:
        flash("Marca al menos un aporte de la lista antes de aplicar una acción.", "error")
        return redirect(back)
    try:
        message = _apply_bulk(form, selected)
    except ForumError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(back)
    db.session.commit()
    flash(message, "success")
    return redirect(back)


def _apply_bulk(form: forms.BulkForm, selected: list[Contribution]) -> str:
    action = form.accion.data
    if action in ("etiquetar", "desetiquetar"):
        tag = db.session.get(Tag, _int(form.etiqueta.data) or 0)
        if tag is None:
            raise InvalidInput("Elige una etiqueta.")
        if action == "etiquetar":
            done = services.tag_contributions(selected, tag, current_user)
            return f"Etiqueta «{tag.name}» puesta en {done} aporte(s)."
        done = services.untag_contributions(selected, tag, current_user)
        return f"Etiqueta «{tag.name}» quitada de {done} aporte(s)."
    if action == "ocultar":
        hidden = 0
        for contribution in selected:
            if not contribution.is_hidden:
                services.hide_contribution(contribution, current_user, form.motivo.data)
                hidden += 1
        return f"{hidden} aporte(s) ocultado(s): {HIDE_REASONS[form.motivo.data]}."
    if action == "disposicion":
        done = services.set_disposition(selected, form.disposicion.data, current_user)
        return f"Disposición «{DISPOSITIONS[form.disposicion.data]}» fijada en {done} aporte(s)."
    group = services.group_contributions(selected, current_user)
    return f"{len(selected)} aporte(s) en el aporte sistematizado n.º {group.id}."


def _contribution_page(contribution: Contribution, form=None, status: int = 200, sender_form=None):
    if form is None:
        form = forms.SystematisationForm(
            synthesis=contribution.synthesis,
            disposition=contribution.disposition,
            response=contribution.response,
            note=contribution.moderator_note,
            version=contribution.version,
        )
    tag_form = forms.TagForm()
    tags = services.tags_by_contribution([contribution.id])[contribution.id]
    tag_form.tag.choices = _tag_choices(
        [t for t in services.active_tags() if t.id not in {x.id for x in tags}]
    )
    group = (
        db.session.get(ContributionGroup, contribution.group_id) if contribution.group_id else None
    )
    if sender_form is None:
        sender_form = forms.SenderForm(
            organisation=contribution.sender_organisation,
            organisation_type=contribution.sender_organisation_type,
            region=contribution.sender_region,
        )
    return (
        render_template(
            "moderation/contribution.html",
            contribution=contribution,
            form=form,
            sender_form=sender_form,
            hide_form=forms.HideForm(),
            tag_form=tag_form,
            action_form=forms.ActionForm(),
            tags=tags,
            reports=services.reports_of(contribution),
            group=group,
            counts=services.group_counts([group.id]).get(group.id) if group else None,
            hide_reasons=HIDE_REASONS,
            dispositions=DISPOSITIONS,
        ),
        status,
    )


@bp.get("/aportes/<int:contribution_id>")
@role_required(*STAFF)
def contribution(contribution_id: int):
    """One contribution: its text, reports, tags, hiding and systematisation."""
    return _contribution_page(db.get_or_404(Contribution, contribution_id))


@bp.post("/aportes/<int:contribution_id>/sistematizar")
@role_required(*STAFF)
def systematise(contribution_id: int):
    """Save synthesis, disposition, response and note, refusing a stale form."""
    contribution = db.get_or_404(Contribution, contribution_id)
    form = forms.SystematisationForm()
    if not form.validate_on_submit():
        return _contribution_page(contribution, form, 422)
    try:
        services.update_systematisation(
            contribution,
            current_user,
            expected_version=_int(form.version.data),
            synthesis=form.synthesis.data or "",
            disposition=form.disposition.data,
            response=form.response.data or "",
            note=form.note.data or "",
        )
    except ForumError as error:
        db.session.rollback()
        contribution = db.get_or_404(Contribution, contribution_id)
        form.form_errors.append(error.message)
        if isinstance(error, services.StaleEdit):
            form.version.data = contribution.version  # saving again overwrites, knowingly
        return _contribution_page(contribution, form, error.status)
    db.session.commit()
    flash("Sistematización guardada.", "success")
    return redirect(url_for("moderation.contribution", contribution_id=contribution_id))


@bp.post("/aportes/<int:contribution_id>/remitente")
@role_required(*STAFF)
def sender_profile(contribution_id: int):
    """Record a sender's organisation, type and region (e-mail without an account)."""
    contribution = db.get_or_404(Contribution, contribution_id)
    form = forms.SenderForm()
    if not form.validate_on_submit():
        return _contribution_page(contribution, status=422, sender_form=form)
    try:
        changed = services.update_sender_profile(
            contribution,
            current_user,
            organisation=form.organisation.data or "",
            organisation_type=form.organisation_type.data,
            region=form.region.data,
        )
    except ForumError as error:
        db.session.rollback()
        form.form_errors.append(error.message)
        contribution = db.get_or_404(Contribution, contribution_id)
        return _contribution_page(contribution, status=error.status, sender_form=form)
    db.session.commit()
    flash(f"Datos del remitente guardados en {changed} aporte(s) de la misma dirección.", "success")
    return redirect(url_for("moderation.contribution", contribution_id=contribution_id))


def _contribution_action(contribution_id: int, act, done: str, form_class=forms.ActionForm):
    """Run one POST action on a contribution, then go back to its page."""
    contribution = db.get_or_404(Contribution, contribution_id)
    form = form_class()
    if not form.validate_on_submit():
        abort(400)
    try:
        act(contribution, form)
    except ForumError as error:
        db.session.rollback()
        flash(error.message, "error")
    else:
        db.session.commit()
        flash(done, "success")
    return redirect(url_for("moderation.contribution", contribution_id=contribution_id))


@bp.post("/aportes/<int:contribution_id>/ocultar")
@role_required(*STAFF)
def hide(contribution_id: int):
    """Hide a contribution with a published reason."""
    return _contribution_action(
        contribution_id,
        lambda c, f: services.hide_contribution(c, current_user, f.reason.data, f.note.data or ""),
        "Aporte ocultado: el público ve el motivo en su lugar.",
        forms.HideForm,
    )


@bp.post("/aportes/<int:contribution_id>/restaurar")
@role_required(*STAFF)
def restore(contribution_id: int):
    """Show a hidden contribution again."""
    return _contribution_action(
        contribution_id,
        lambda c, f: services.restore_contribution(c, current_user),
        "Aporte restaurado: vuelve a verse en la conversación.",
    )


def _tag_action(contribution_id: int, add: bool):
    def act(contribution: Contribution, form: forms.TagForm) -> None:
        tag = db.session.get(Tag, _int(form.tag.data) or 0)
        if tag is None:
            raise InvalidInput("Elige una etiqueta.")
        if add:
            services.tag_contributions([contribution], tag, current_user)
        else:
            services.untag_contributions([contribution], tag, current_user)

    return _contribution_action(contribution_id, act, "Etiquetas actualizadas.", forms.TagForm)


@bp.post("/aportes/<int:contribution_id>/etiquetas")
@role_required(*STAFF)
def add_tag(contribution_id: int):
    """Put a tag on a contribution."""
    return _tag_action(contribution_id, add=True)


@bp.post("/aportes/<int:contribution_id>/etiquetas/quitar")
@role_required(*STAFF)
def remove_tag(contribution_id: int):
    """Take a tag off a contribution."""
    return _tag_action(contribution_id, add=False)


@bp.post("/aportes/<int:contribution_id>/denuncias/cerrar")
@role_required(*STAFF)
def dismiss_reports(contribution_id: int):
    """Close a contribution's open reports without hiding it."""
    return _contribution_action(
        contribution_id,
        lambda c, f: services.dismiss_reports(c, current_user),
        "Denuncias cerradas: el aporte sigue visible.",
    )


@bp.post("/aportes/<int:contribution_id>/desagrupar")
@role_required(*STAFF)
def ungroup(contribution_id: int):
    """Take a contribution out of its group."""
    return _contribution_action(
        contribution_id,
        lambda c, f: services.remove_from_group(c, current_user),
        "El aporte salió del aporte sistematizado.",
    )


@bp.get("/grupos")
@role_required(*STAFF)
def groups():
    """Every "aporte sistematizado" with its raw and distinct counts."""
    rows = services.list_groups()
    return render_template(
        "moderation/groups.html",
        groups=rows,
        counts=services.group_counts([g.id for g in rows]),
        dispositions=DISPOSITIONS,
    )


def _group_page(group: ContributionGroup, form=None, status: int = 200):
    if form is None:
        form = forms.GroupForm(
            title=group.title,
            synthesis=group.synthesis,
            disposition=group.disposition,
            response=group.response,
            version=group.version,
        )
    return (
        render_template(
            "moderation/group.html",
            group=group,
            form=form,
            members=services.group_members(group),
            counts=services.group_counts([group.id]).get(group.id),
            action_form=forms.ActionForm(),
            dispositions=DISPOSITIONS,
        ),
        status,
    )


@bp.route("/grupos/<int:group_id>", methods=["GET", "POST"])
@role_required(*STAFF)
def group(group_id: int):
    """A group's members and its shared synthesis, disposition and response."""
    group = db.get_or_404(ContributionGroup, group_id)
    if request.method == "GET":
        return _group_page(group)
    form = forms.GroupForm()
    if not form.validate_on_submit():
        return _group_page(group, form, 422)
    try:
        changed = services.update_group(
            group,
            current_user,
            expected_version=_int(form.version.data),
            title=form.title.data or "",
            synthesis=form.synthesis.data or "",
            disposition=form.disposition.data,
            response=form.response.data or "",
        )
    except ForumError as error:
        db.session.rollback()
        group = db.get_or_404(ContributionGroup, group_id)
        form.form_errors.append(error.message)
        if isinstance(error, services.StaleEdit):
            form.version.data = group.version
        return _group_page(group, form, error.status)
    db.session.commit()
    flash(f"Aporte sistematizado guardado; {changed} aporte(s) del grupo actualizados.", "success")
    return redirect(url_for("moderation.group", group_id=group_id))


def _consultation_arg() -> Consultation:
    slug = request.values.get("consulta")
    if slug:
        return db.first_or_404(select(Consultation).where(Consultation.slug == slug))
    consultation = current_consultation()
    if consultation is None:
        abort(404)
    return consultation


@bp.route("/duplicados", methods=["GET", "POST"])
@role_required(*STAFF)
def duplicates():
    """Proposed groups of near-identical contributions, to confirm or reject."""
    consultation = _consultation_arg()
    if request.method == "POST":
        form = forms.SuggestionForm()
        if not form.validate_on_submit():
            abort(400)
        proposed = services.contributions_by_ids(_ids((form.propuestos.data or "").split(",")))
        chosen_ids = set(_ids(request.form.getlist("incluir"))) | set(
            _ids((form.resto.data or "").split(","))
        )
        try:
            if form.respuesta.data == "agrupar":
                chosen = [c for c in proposed if c.id in chosen_ids]
                group = services.confirm_duplicates(consultation, chosen, proposed, current_user)
                message = f"Agrupados en el aporte sistematizado n.º {group.id}."
            else:
                services.reject_duplicates(consultation, proposed, current_user)
                message = "Sugerencia descartada: no se volverá a proponer."
        except ForumError as error:
            db.session.rollback()
            flash(error.message, "error")
        else:
            db.session.commit()
            flash(message, "success")
        return redirect(url_for("moderation.duplicates", consulta=consultation.slug))
    suggestions, total = services.suggest_duplicates(consultation)
    page = render_template(
        "moderation/duplicates.html",
        consultation=consultation,
        suggestions=suggestions,
        total=total,
        form=forms.SuggestionForm(),
    )
    db.session.commit()  # keeps the signatures computed for this page (after rendering it)
    return page


@bp.route("/etiquetas", methods=["GET", "POST"])
@role_required("admin")
def tags():
    """The controlled vocabulary: add terms, rename or retire them."""
    form = forms.NewTagForm()
    if request.method == "POST" and form.validate_on_submit():
        try:
            tag = services.create_tag(current_user, form.name.data, form.kind.data)
        except ForumError as error:
            db.session.rollback()
            form.name.errors.append(error.message)
        else:
            db.session.commit()
            flash(f"Etiqueta «{tag.name}» creada.", "success")
            return redirect(url_for("moderation.tags"))
    rows = services.all_tags()
    edit_forms = {
        t.id: forms.EditTagForm(prefix=f"t{t.id}", name=t.name, kind=t.kind, is_active=t.is_active)
        for t in rows
    }
    status = 422 if form.errors else 200
    return render_template(
        "moderation/tags.html", form=form, tags=rows, edit_forms=edit_forms, kinds=TAG_KINDS
    ), status


@bp.post("/etiquetas/<int:tag_id>")
@role_required("admin")
def edit_tag(tag_id: int):
    """Rename, reclassify, retire or bring back a tag."""
    tag = db.get_or_404(Tag, tag_id)
    form = forms.EditTagForm(prefix=f"t{tag.id}")
    if not form.validate_on_submit():
        flash("Escribe el nombre de la etiqueta.", "error")
        return redirect(url_for("moderation.tags"))
    try:
        services.update_tag(current_user, tag, form.name.data, form.kind.data, form.is_active.data)
    except ForumError as error:
        db.session.rollback()
        flash(error.message, "error")
    else:
        db.session.commit()
        flash(f"Etiqueta «{tag.name}» actualizada.", "success")
    return redirect(url_for("moderation.tags"))


@bp.get("/auditoria")
@role_required("admin")
def audit():
    """The audit log, newest first, filterable (read only: there is no way to edit it)."""
    form = forms.AuditFilterForm(formdata=request.args)
    form.validate()
    form.actor.choices = forms.choices(
        [("", "Todas")] + [(str(u.id), u.name) for u in services.staff()]
    )
    form.accion.choices = forms.choices(
        [("", "Todas")] + [(a, a) for a in services.audit_actions()]
    )
    entries, total = services.audit_entries(
        services.AuditFilter(
            actor_id=_int(form.actor.data),
            action=form.accion.data or "",
            target_type=form.objeto.data or "",
            target_id=form.objeto_id.data if not form.objeto_id.errors else None,
            since=form.desde.data if not form.desde.errors else None,
            until=form.hasta.data if not form.hasta.errors else None,
        ),
        request.args.get("pagina", 1, type=int),
        PER_PAGE,
    )
    args = {k: v for k, v in request.args.items() if k != "pagina" and v}
    return render_template(
        "moderation/audit.html",
        form=form,
        entries=entries,
        total=total,
        page=max(1, request.args.get("pagina", 1, type=int)),
        pages=max(1, -(-total // PER_PAGE)),
        page_url=lambda n: url_for("moderation.audit") + "?" + urlencode({**args, "pagina": n}),
    )


@bp.route("/consultas/<slug>/publicar", methods=["GET", "POST"])
@role_required("admin")
def publish(slug: str):
    """Publish the dispositions and responses once the window has closed."""
    consultation = db.first_or_404(select(Consultation).where(Consultation.slug == slug))
    form = forms.ActionForm()
    if request.method == "POST" and form.validate_on_submit():
        try:
            services.publish_responses(consultation, current_user)
        except ForumError as error:
            db.session.rollback()
            flash(error.message, "error")
        else:
            db.session.commit()
            flash("Respuestas publicadas: ya se ven en cada borrador.", "success")
            return redirect(url_for("consultation.responses", slug=slug))
    return render_template(
        "moderation/publish.html",
        consultation=consultation,
        form=form,
        pending=services.count_pending(consultation),
        counts=services.disposition_counts(consultation),
        dispositions=DISPOSITIONS,
    )
