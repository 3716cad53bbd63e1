"""Domain errors. Views turn them into a Spanish message and a status code."""


class ForumError(Exception):
    """Base of every domain error; `message` is shown to the person as is."""

    status = 400
    message = "No se pudo completar la acción."

    def __init__(self, message: str | None = None):
        super().__init__(message or self.message)
        if message:
            self.message = message


class NotAllowed(ForumError):
    status = 403
    message = "No tienes permiso para hacer esto."


class ConsultationNotOpen(ForumError):
    status = 403
    message = "La consulta no está abierta: no se reciben aportes en este momento."


class InvalidInput(ForumError):
    status = 400


class EmailNotVerified(ForumError):
    status = 403
    message = (
        "Antes de publicar, confirma tu correo electrónico con el enlace que te enviamos. "
        "Si no lo encuentras, pide uno nuevo desde tu cuenta."
    )
