"""Moderators' ingest forms: upload, triage assignment, release. Format only."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileRequired
from wtforms import MultipleFileField, SelectField


class UploadForm(FlaskForm):
    files = MultipleFileField(
        "Archivos de correo",
        validators=[FileRequired("Elige al menos un archivo .eml o .mbox.")],
        description="Mensajes sueltos (.eml) o un buzón exportado (.mbox). Subir dos veces "
        "el mismo mensaje no lo duplica.",
    )


class AssignForm(FlaskForm):
    theme = SelectField("Tema", choices=[], validate_choice=True)
    draft = SelectField("Borrador", choices=[], validate_choice=True)


class ActionForm(FlaskForm):
    """A button that changes state: CSRF only."""
