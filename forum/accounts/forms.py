"""Account forms: they check format only."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Email, EqualTo, InputRequired, Length

from forum.accounts.models import ORGANISATION_TYPES, REGIONS

REQUIRED = "Este campo es obligatorio."
EMAIL = Email(message="Escribe un correo electrónico válido, por ejemplo nombre@dominio.pe.")
PASSWORD_LENGTH = Length(
    min=10, max=128, message="La contraseña debe tener entre 10 y 128 caracteres."
)


def _choices(options: dict) -> list[SelectChoice]:
    return [SelectChoice("", "Elige una opción")] + [SelectChoice(k, v) for k, v in options.items()]


class RegistrationForm(FlaskForm):
    name = StringField(
        "Nombre y apellidos",
        validators=[InputRequired(REQUIRED), Length(max=120, message="Máximo 120 caracteres.")],
    )
    email = EmailField(
        "Correo electrónico", validators=[InputRequired(REQUIRED), EMAIL, Length(max=254)]
    )
    password = PasswordField("Contraseña", validators=[InputRequired(REQUIRED), PASSWORD_LENGTH])
    password_confirm = PasswordField(
        "Repite la contraseña",
        validators=[
            InputRequired(REQUIRED),
            EqualTo("password", message="Las contraseñas no coinciden."),
        ],
    )
    organisation = StringField(
        "Organización (opcional)", validators=[Length(max=200, message="Máximo 200 caracteres.")]
    )
    organisation_type = SelectField(
        "Tipo de organización",
        choices=_choices(ORGANISATION_TYPES),
        validators=[InputRequired("Elige el tipo de organización.")],
    )
    region = SelectField(
        "Región", choices=_choices(REGIONS), validators=[InputRequired("Elige tu región.")]
    )
    is_name_public = BooleanField(
        "Mostrar mi nombre junto a mis aportes",
        default=True,
        description="Si no marcas esta casilla, tus aportes aparecerán como «Participante» "
        "seguido de un número.",
    )
    consent = BooleanField(
        "Acepto el tratamiento de mis datos personales para los fines indicados",
        validators=[InputRequired("Para registrarte debes aceptar el tratamiento de tus datos.")],
    )


class LoginForm(FlaskForm):
    email = EmailField("Correo electrónico", validators=[InputRequired(REQUIRED), EMAIL])
    password = PasswordField("Contraseña", validators=[InputRequired(REQUIRED)])
    remember = BooleanField("Mantener la sesión iniciada en este dispositivo")


class ResetRequestForm(FlaskForm):
    email = EmailField("Correo electrónico", validators=[InputRequired(REQUIRED), EMAIL])


class ResetPasswordForm(FlaskForm):
    password = PasswordField(
        "Contraseña nueva", validators=[InputRequired(REQUIRED), PASSWORD_LENGTH]
    )
    password_confirm = PasswordField(
        "Repite la contraseña nueva",
        validators=[
            InputRequired(REQUIRED),
            EqualTo("password", message="Las contraseñas no coinciden."),
        ],
    )
