"""Account services: registration, authentication, password reset, user creation."""

import logging

from flask import current_app, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select

from forum import clock, text
from forum.accounts.models import CONSENT_VERSION, ROLES, User
from forum.consultation.services import link_email_contributions
from forum.errors import InvalidInput
from forum.extensions import db
from forum.mail import send_mail

log = logging.getLogger(__name__)

RESET_SALT = "aporta-password-reset"
VERIFY_SALT = "aporta-email-verification"


class EmailTaken(InvalidInput):
    message = "Ya existe una cuenta con ese correo electrónico. ¿Olvidaste tu contraseña?"


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def register_user(
    *,
    name: str,
    email: str,
    password: str,
    organisation: str,
    organisation_type: str,
    region: str,
    is_name_public: bool,
    role: str = "citizen",
) -> User:
    """Create an account; the caller has checked the consent box was ticked."""
    if role not in ROLES:
        raise InvalidInput(f"Rol desconocido: {role}")
    if find_user_by_email(email) is not None:
        raise EmailTaken()
    user = User(
        name=text.normalise(name),
        email=email.strip().lower(),
        organisation=text.normalise(organisation),
        organisation_type=organisation_type,
        region=region,
        role=role,
        is_name_public=is_name_public,
        consent_version=CONSENT_VERSION,
        consented_at=clock.now(),
    )
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    log.info("user %s registered with role %s", user.id, role)
    return user


def authenticate(email: str, password: str) -> User | None:
    """The user with that e-mail and password, or None (one message for both failures)."""
    user = find_user_by_email(email)
    if user is None or not user.is_enabled or not user.check_password(password):
        log.info("failed login")
        return None
    return user


def _serializer(salt: str = RESET_SALT) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)


def password_reset_token(user: User) -> str:
    """A signed token; it dies with the next password change (the session token rotates)."""
    return _serializer().dumps({"id": user.id, "s": user.session_token})


def send_email_verification(user: User) -> None:
    """Mail a link that proves the person reads this address."""
    token = _serializer(VERIFY_SALT).dumps({"id": user.id, "e": user.email})
    link = url_for("accounts.verify_email", token=token, _external=True)
    days = current_app.config["EMAIL_VERIFICATION_MAX_AGE"] // 86400
    send_mail(
        user.email,
        "Aporta: confirma tu correo electrónico",
        f"Hola, {user.name}:\n\n"
        f"Para confirmar tu correo y poder publicar aportes, abre este enlace (vale {days} días):"
        f"\n\n{link}\n\n"
        "Si no creaste una cuenta en Aporta, ignora este mensaje.\n",
    )
    log.info("verification mailed to user %s", user.id)


def verify_email(token: str) -> User | None:
    """Mark the address of a valid token as verified and return its user, or None."""
    try:
        data = _serializer(VERIFY_SALT).loads(
            token, max_age=current_app.config["EMAIL_VERIFICATION_MAX_AGE"]
        )
    except (BadSignature, SignatureExpired):
        return None
    user = db.session.get(User, data.get("id"))
    if user is None or user.email != data.get("e"):
        return None
    if user.email_verified_at is None:
        user.email_verified_at = clock.now()
        linked = link_email_contributions(user)
        db.session.flush()
        log.info("user %s verified their address; %s e-mail contributions linked", user.id, linked)
    return user


def notify_existing_account(email: str) -> None:
    """Someone registered with an address that has an account: tell its owner, not them."""
    user = find_user_by_email(email)
    if user is None:
        return
    link = url_for("accounts.forgot_password", _external=True)
    send_mail(
        user.email,
        "Aporta: ya tienes una cuenta",
        f"Hola, {user.name}:\n\nAlguien intentó crear una cuenta nueva con este correo. "
        f"Ya tienes una; si olvidaste tu contraseña, puedes elegir otra aquí:\n\n{link}\n\n"
        "Si no fuiste tú, ignora este mensaje.\n",
    )


def send_password_reset(email: str) -> None:
    """Mail a reset link if an account exists; say nothing either way (no enumeration)."""
    user = find_user_by_email(email)
    if user is None or not user.is_enabled:
        return
    link = url_for("accounts.reset_password", token=password_reset_token(user), _external=True)
    minutes = current_app.config["PASSWORD_RESET_MAX_AGE"] // 60
    send_mail(
        user.email,
        "Aporta: restablecer tu contraseña",
        f"Hola, {user.name}:\n\n"
        f"Para elegir una contraseña nueva abre este enlace (vale {minutes} minutos y "
        f"una sola vez):\n\n{link}\n\n"
        "Si no lo pediste, ignora este mensaje: tu contraseña no cambia.\n",
    )
    log.info("password reset mailed to user %s", user.id)


def user_from_reset_token(token: str) -> User | None:
    """The user a valid, unexpired, unused token belongs to, or None."""
    try:
        data = _serializer().loads(token, max_age=current_app.config["PASSWORD_RESET_MAX_AGE"])
    except (BadSignature, SignatureExpired):
        return None
    user = db.session.get(User, data.get("id"))
    if user is None or user.session_token != data.get("s"):
        return None
    return user


def change_password(user: User, password: str) -> None:
    """Set a new password; every existing session of the user ends."""
    user.set_password(password)
    db.session.flush()
    log.info("password changed for user %s", user.id)


def load_user(session_token: str) -> User | None:
    return db.session.scalar(select(User).where(User.session_token == session_token))
