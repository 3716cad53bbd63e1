"""Account pages: register, log in and out, reset a password."""

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from forum.accounts import services
from forum.accounts.access import safe_next
from forum.accounts.forms import LoginForm, RegistrationForm, ResetPasswordForm, ResetRequestForm
from forum.extensions import db, limiter, login

bp = Blueprint("accounts", __name__, url_prefix="/cuenta")

CHECK_YOUR_MAIL = (
    "Te enviamos un correo para confirmar tu dirección. Abre el enlace que contiene para "
    "poder publicar aportes (revisa también la carpeta de correo no deseado)."
)


@login.user_loader
def _load_user(session_token: str):
    return services.load_user(session_token)


def _limit(name: str):
    return limiter.limit(lambda: current_app.config[name], methods=["POST"])


@bp.route("/registro", methods=["GET", "POST"])
@_limit("REGISTER_LIMIT")
def register():
    """Create an account, with consent to the processing of personal data."""
    form = RegistrationForm()
    if form.validate_on_submit():
        verification_required = current_app.config["REQUIRE_EMAIL_VERIFICATION"]
        try:
            user = services.register_user(
                name=form.name.data,
                email=form.email.data,
                password=form.password.data,
                organisation=form.organisation.data or "",
                organisation_type=form.organisation_type.data,
                region=form.region.data,
                is_name_public=form.is_name_public.data,
            )
        except services.EmailTaken as error:
            if not verification_required:
                form.email.errors.append(error.message)
                return render_template("accounts/register.html", form=form), 422
            # Same answer as a new account: whether an address is registered stays private.
            services.notify_existing_account(form.email.data)
            flash(CHECK_YOUR_MAIL, "info")
            return redirect(url_for("accounts.login_view"))
        db.session.commit()
        services.send_email_verification(user)
        login_user(user)
        if verification_required:
            flash(CHECK_YOUR_MAIL, "info")
        else:
            flash("Tu cuenta está lista. Ya puedes comentar los borradores.", "success")
        return redirect(safe_next(request.args.get("next"), url_for("consultation.home")))
    return render_template("accounts/register.html", form=form), 200 if not form.errors else 422


@bp.route("/confirmar/<token>")
def verify_email(token: str):
    """Confirm the e-mail address from the mailed link."""
    user = services.verify_email(token)
    if user is None:
        flash("El enlace de confirmación no es válido o ya venció. Pide uno nuevo.", "error")
        return redirect(url_for("consultation.home"))
    db.session.commit()
    flash("Tu correo quedó confirmado. Ya puedes publicar aportes.", "success")
    return redirect(url_for("consultation.home"))


@bp.route("/confirmar", methods=["POST"])
@login_required
@_limit("RESET_LIMIT")
def resend_verification():
    """Send the confirmation link again."""
    if current_user.email_verified_at is None:
        services.send_email_verification(current_user)
    flash(CHECK_YOUR_MAIL, "info")
    return redirect(url_for("consultation.home"))


@bp.route("/entrar", methods=["GET", "POST"])
@_limit("LOGIN_LIMIT")
@limiter.limit(
    lambda: current_app.config["LOGIN_ACCOUNT_LIMIT"],
    key_func=lambda: "login-account:" + request.form.get("email", "").strip().lower(),
    methods=["POST"],
    deduct_when=lambda response: response.status_code != 302,
)
def login_view():
    """Log in with e-mail and password."""
    form = LoginForm()
    if form.validate_on_submit():
        user = services.authenticate(form.email.data, form.password.data)
        if user is not None:
            login_user(user, remember=form.remember.data)
            return redirect(safe_next(request.args.get("next"), url_for("consultation.home")))
        form.password.errors.append("El correo o la contraseña no son correctos.")
    return render_template("accounts/login.html", form=form), 200 if not form.errors else 422


@bp.route("/salir", methods=["POST"])
@login_required
def logout():
    """End the session."""
    logout_user()
    flash("Cerraste la sesión.", "info")
    return redirect(url_for("consultation.home"))


@bp.route("/contrasena/olvido", methods=["GET", "POST"])
@_limit("RESET_LIMIT")
def forgot_password():
    """Ask for a reset link; the answer is the same whether the account exists or not."""
    form = ResetRequestForm()
    if form.validate_on_submit():
        services.send_password_reset(form.email.data)
        flash(
            "Si existe una cuenta con ese correo, te enviamos un enlace para elegir una "
            "contraseña nueva. Revisa también la carpeta de correo no deseado.",
            "info",
        )
        return redirect(url_for("accounts.login_view"))
    return render_template("accounts/forgot.html", form=form), 200 if not form.errors else 422


@bp.route("/contrasena/nueva/<token>", methods=["GET", "POST"])
@_limit("RESET_LIMIT")
def reset_password(token: str):
    """Choose a new password from a mailed link."""
    user = services.user_from_reset_token(token)
    if user is None:
        flash("El enlace no es válido o ya venció. Pide uno nuevo.", "error")
        return redirect(url_for("accounts.forgot_password"))
    form = ResetPasswordForm()
    if form.validate_on_submit():
        services.change_password(user, form.password.data)
        db.session.commit()
        if current_user.is_authenticated:
            logout_user()
        flash("Tu contraseña cambió. Inicia sesión con la nueva.", "success")
        return redirect(url_for("accounts.login_view"))
    return render_template("accounts/reset.html", form=form), 200 if not form.errors else 422


@bp.route("/privacidad")
def privacy():
    """How personal data is processed (Ley 29733)."""
    return render_template("accounts/privacy.html")
