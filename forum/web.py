"""What every page shares: error pages, template helpers, the health check."""

import logging

from flask import Flask, abort, flash, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from sqlalchemy import text as sql
from werkzeug.exceptions import HTTPException

from forum import clock, text
from forum.consultation.services import current_consultation
from forum.consultation.visits import install as install_visits
from forum.errors import ForumError
from forum.extensions import db

log = logging.getLogger(__name__)

ERROR_TITLES = {
    400: "Solicitud no válida",
    401: "Inicia sesión",
    403: "Acceso no permitido",
    404: "Página no encontrada",
    405: "Método no permitido",
    413: "El envío es demasiado grande",
    422: "Datos no válidos",
    429: "Demasiados intentos",
    500: "Error del servidor",
}
ERROR_TEXTS = {
    400: "No pudimos entender la solicitud. Vuelve a la página anterior e inténtalo otra vez.",
    403: "No tienes permiso para ver esta página o hacer esta acción.",
    404: "La página que buscas no existe o cambió de dirección.",
    405: "Esta dirección no admite esa acción.",
    413: "Lo que enviaste supera el tamaño máximo permitido.",
    429: "Hiciste demasiados intentos en poco tiempo. Espera unos minutos y vuelve a intentarlo.",
    500: "Algo falló de nuestro lado. Ya quedó registrado; inténtalo de nuevo en unos minutos.",
}


def lima(instant, fmt: str = "%d/%m/%Y %H:%M") -> str:
    """Format an aware instant in Lima time."""
    return clock.to_lima(instant).strftime(fmt) if instant else ""


def time_left(until) -> str:
    """'3 días y 4 horas' until an instant (coarse, for people)."""
    seconds = int((until - clock.now()).total_seconds())
    if seconds <= 0:
        return "0 minutos"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = []
    if days:
        parts.append(f"{days} día{'s' if days != 1 else ''}")
    if hours:
        parts.append(f"{hours} hora{'s' if hours != 1 else ''}")
    if not days and (minutes or not parts):
        parts.append(f"{minutes} minuto{'s' if minutes != 1 else ''}")
    return " y ".join(parts)


def init_app(app: Flask) -> None:
    """Error handlers, template helpers and /healthz."""
    app.jinja_env.add_extension("jinja2.ext.do")
    app.jinja_env.filters["lima"] = lima
    app.jinja_env.globals.update(
        time_left=time_left,
        render_text=text.render_repeated,
        nav_consultation=current_consultation,
    )
    install_visits(app)

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return _error_page(
            400,
            "La página caducó o el formulario no es válido. "
            "Vuelve a cargar la página y envíalo de nuevo; lo que escribiste "
            "sigue en tu navegador si usas el botón «Atrás».",
        )

    @app.errorhandler(ForumError)
    def forum_error(error: ForumError):
        return _error_page(error.status, error.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code == 401:
            flash("Inicia sesión para continuar.", "info")
            return redirect(url_for("accounts.login_view", next=request.full_path.rstrip("?")))
        return _error_page(error.code or 500, ERROR_TEXTS.get(error.code))

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        return _error_page(500, ERROR_TEXTS[500])

    @app.before_request
    def refuse_nul_bytes():
        """NUL never belongs in a URL or a form (and PostgreSQL refuses it in text)."""
        if "\x00" in request.path:
            abort(404)
        if any("\x00" in value for _, values in request.values.lists() for value in values):
            return _error_page(400, "El formulario contiene caracteres no válidos (NUL).")
        return None

    @app.get("/healthz")
    def healthz():
        """Liveness and database check for load balancers."""
        db.session.execute(sql("SELECT 1"))
        return {"status": "ok"}


def _error_page(status: int, message: str | None):
    title = ERROR_TITLES.get(status, "Error")
    try:
        page = render_template(
            "errors/error.html", status=status, title=title, message=message or title
        )
    except Exception:  # the layout itself failed (e.g. the database is down): plain text
        log.exception("error page could not be rendered")
        page = f"{title}. {message or ''}"
    return page, status
