"""Consultation forms: they check format only."""

from flask_wtf import FlaskForm
from wtforms import DateTimeLocalField, HiddenField, TextAreaField
from wtforms.validators import InputRequired, Length

from forum.config import Defaults


class CommentForm(FlaskForm):
    body = TextAreaField(
        "Tu aporte",
        validators=[
            InputRequired("Escribe tu aporte antes de enviarlo."),
            Length(
                max=Defaults.COMMENT_MAX_LENGTH,
                message=f"El aporte no puede superar los {Defaults.COMMENT_MAX_LENGTH} caracteres.",
            ),
        ],
        description=(
            "Separa los párrafos con una línea en blanco. Para una lista, empieza cada línea "
            "con «- ». Los enlaces (https://...) se activan solos."
        ),
    )
    idempotency_key = HiddenField()


class WindowForm(FlaskForm):
    opens_at = DateTimeLocalField(
        "Apertura (hora de Lima)",
        format="%Y-%m-%dT%H:%M",
        validators=[InputRequired("Indica la fecha y hora de apertura.")],
    )
    closes_at = DateTimeLocalField(
        "Cierre (hora de Lima)",
        format="%Y-%m-%dT%H:%M",
        validators=[InputRequired("Indica la fecha y hora de cierre.")],
    )
