"""Moderation forms: they check format only (the services check the rules)."""

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional

from forum.accounts.models import ORGANISATION_TYPES, REGIONS
from forum.consultation.models import CHANNELS
from forum.moderation.models import DISPOSITIONS, HIDE_REASONS, TAG_KINDS


def choices(pairs) -> list[SelectChoice]:
    """(value, label) pairs, or a dict, as a select's options."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return [SelectChoice(value, label) for value, label in items]


ANY = choices([("", "Todos")])


class QueueFilterForm(FlaskForm):
    """The queue's filters (a GET form: no CSRF token, nothing changes)."""

    class Meta:
        csrf = False

    q = StringField(
        "Texto",
        validators=[Optional(), Length(max=200)],
        description=(
            "Busca en el aporte, su síntesis y el nombre del remitente, sin distinguir "
            "mayúsculas ni tildes; muestra los aportes que contienen todas las palabras. "
            "Las de una o dos letras solo se buscan junto con otra más larga."
        ),
    )
    tema = SelectField("Tema", choices=[], validate_choice=False)
    borrador = SelectField("Borrador", choices=[], validate_choice=False)
    canal = SelectField("Canal", choices=ANY + choices(CHANNELS), validate_choice=False)
    estado = SelectField(
        "Estado",
        choices=ANY
        + choices(
            [("visible", "Visibles"), ("hidden", "Ocultos"), ("reported", "Con denuncias abiertas")]
        ),
        validate_choice=False,
    )
    disposicion = SelectField(
        "Disposición",
        choices=choices([("", "Todas")]) + choices(DISPOSITIONS),
        validate_choice=False,
    )
    etiqueta = SelectField("Etiqueta", choices=[], validate_choice=False)
    desde = DateField("Desde (fecha)", validators=[Optional()])
    hasta = DateField("Hasta (fecha)", validators=[Optional()])
    tipo = SelectField(
        "Tipo de organización", choices=ANY + choices(ORGANISATION_TYPES), validate_choice=False
    )
    region = SelectField(
        "Región", choices=choices([("", "Todas")]) + choices(REGIONS), validate_choice=False
    )
    tardio = SelectField(
        "Fuera de plazo",
        choices=ANY + choices([("si", "Solo fuera de plazo"), ("no", "Solo dentro del plazo")]),
        validate_choice=False,
    )
    agrupado = SelectField(
        "Agrupación",
        choices=ANY + choices([("si", "En un aporte sistematizado"), ("no", "Sin agrupar")]),
        validate_choice=False,
    )
    orden = SelectField(
        "Orden",
        choices=choices([("", "Más recientes primero"), ("antiguos", "Más antiguos primero")]),
        validate_choice=False,
    )


BULK_ACTIONS = [
    ("etiquetar", "Poner la etiqueta"),
    ("desetiquetar", "Quitar la etiqueta"),
    ("ocultar", "Ocultar con el motivo"),
    ("disposicion", "Fijar la disposición"),
    ("agrupar", "Agrupar como un aporte sistematizado"),
]


class BulkForm(FlaskForm):
    """An action on the contributions selected in the queue."""

    accion = SelectField("Acción", choices=choices(BULK_ACTIONS))
    etiqueta = SelectField("Etiqueta", choices=[], validate_choice=False)
    motivo = SelectField("Motivo para ocultar", choices=choices(HIDE_REASONS))
    disposicion = SelectField("Disposición", choices=choices(DISPOSITIONS))
    volver = HiddenField()


class HideForm(FlaskForm):
    reason = SelectField("Motivo (se muestra al público)", choices=choices(HIDE_REASONS))
    note = TextAreaField(
        "Nota interna (opcional)",
        validators=[Optional(), Length(max=2000)],
        description="Solo la ven moderación y administración.",
    )


class ActionForm(FlaskForm):
    """A button that changes state: only the CSRF token."""


class TagForm(FlaskForm):
    """Add or remove one tag on one contribution."""

    tag = SelectField("Etiqueta", choices=[], validate_choice=False)


class SystematisationForm(FlaskForm):
    synthesis = TextAreaField(
        "Síntesis",
        validators=[Optional(), Length(max=2000)],
        description="Una o dos frases: qué propone el aporte.",
    )
    disposition = SelectField("Disposición", choices=choices(DISPOSITIONS))
    response = TextAreaField(
        "Respuesta razonada",
        validators=[Optional(), Length(max=5000)],
        description="Por qué se incorpora o no; se publica junto al aporte.",
    )
    note = TextAreaField(
        "Nota interna", validators=[Optional(), Length(max=2000)], description="No se publica."
    )
    version = HiddenField()


class SenderForm(FlaskForm):
    """What the signature of an e-mail says about a sender without an account."""

    organisation = StringField("Organización", validators=[Optional(), Length(max=200)])
    organisation_type = SelectField(
        "Tipo de organización",
        choices=choices([("", "Sin dato")]) + choices(ORGANISATION_TYPES),
    )
    region = SelectField("Región", choices=choices([("", "Sin dato")]) + choices(REGIONS))


class GroupForm(FlaskForm):
    title = StringField("Título del aporte sistematizado", validators=[Optional(), Length(max=300)])
    synthesis = TextAreaField("Síntesis compartida", validators=[Optional(), Length(max=2000)])
    disposition = SelectField("Disposición", choices=choices(DISPOSITIONS))
    response = TextAreaField(
        "Respuesta razonada compartida",
        validators=[Optional(), Length(max=5000)],
        description="Se publica junto a cada aporte del grupo.",
    )
    version = HiddenField()


class SuggestionForm(FlaskForm):
    """Answer to one near-duplicate suggestion."""

    propuestos = HiddenField()
    resto = HiddenField()
    respuesta = HiddenField()


class NewTagForm(FlaskForm):
    name = StringField(
        "Nombre", validators=[InputRequired("Escribe el nombre de la etiqueta."), Length(max=120)]
    )
    kind = SelectField("Tipo", choices=choices(TAG_KINDS))


class EditTagForm(FlaskForm):
    name = StringField(
        "Nombre", validators=[InputRequired("Escribe el nombre de la etiqueta."), Length(max=120)]
    )
    kind = SelectField("Tipo", choices=choices(TAG_KINDS))
    is_active = BooleanField("Activa (se puede aplicar)")


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False

    actor = SelectField("Persona", choices=[], validate_choice=False)
    accion = SelectField("Acción", choices=[], validate_choice=False)
    objeto = SelectField(
        "Tipo de objeto",
        choices=ANY
        + choices(
            [
                ("contributions", "Aporte"),
                ("contribution_groups", "Aporte sistematizado"),
                ("tags", "Etiqueta"),
                ("consultations", "Consulta"),
            ]
        ),
        validate_choice=False,
    )
    objeto_id = IntegerField("N.º del objeto", validators=[Optional()])
    desde = DateField("Desde (fecha)", validators=[Optional()])
    hasta = DateField("Hasta (fecha)", validators=[Optional()])


class ReportForm(FlaskForm):
    reason = SelectField("Motivo", choices=choices(HIDE_REASONS))
    note = TextAreaField(
        "Comentario (opcional)",
        validators=[Optional(), Length(max=1000)],
        description="Cuéntanos qué problema ves. Solo lo lee el equipo de moderación.",
    )
