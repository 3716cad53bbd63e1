"""People who take part, and what the public may see of them."""

import secrets
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from forum import clock
from forum.dbtypes import UTCDateTime
from forum.extensions import db

ROLES = ("citizen", "moderator", "admin")

ORGANISATION_TYPES = {
    "ong": "ONG",
    "academia": "Academia",
    "empresa-privada": "Empresa privada",
    "cooperacion-internacional": "Cooperación internacional",
    "entidad-publica": "Entidad pública",
    "persona-natural": "Persona natural",
    "otro": "Otro",
}

REGIONS = {
    "amazonas": "Amazonas",
    "ancash": "Áncash",
    "apurimac": "Apurímac",
    "arequipa": "Arequipa",
    "ayacucho": "Ayacucho",
    "cajamarca": "Cajamarca",
    "callao": "Callao",
    "cusco": "Cusco",
    "huancavelica": "Huancavelica",
    "huanuco": "Huánuco",
    "ica": "Ica",
    "junin": "Junín",
    "la-libertad": "La Libertad",
    "lambayeque": "Lambayeque",
    "lima-metropolitana": "Lima Metropolitana",
    "lima-provincias": "Lima Provincias",
    "loreto": "Loreto",
    "madre-de-dios": "Madre de Dios",
    "moquegua": "Moquegua",
    "pasco": "Pasco",
    "piura": "Piura",
    "puno": "Puno",
    "san-martin": "San Martín",
    "tacna": "Tacna",
    "tumbes": "Tumbes",
    "ucayali": "Ucayali",
    "extranjero": "Extranjero",
}

CONSENT_VERSION = "2026-11"


def new_session_token() -> str:
    return secrets.token_urlsafe(24)


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-case
    name: Mapped[str] = mapped_column(String(120))
    organisation: Mapped[str] = mapped_column(String(200), default="")
    organisation_type: Mapped[str] = mapped_column(String(40))
    region: Mapped[str] = mapped_column(String(40))
    role: Mapped[str] = mapped_column(String(20), default="citizen")
    password_hash: Mapped[str] = mapped_column(String(256))
    is_name_public: Mapped[bool] = mapped_column(Boolean, default=True)
    consent_version: Mapped[str] = mapped_column(String(20))
    consented_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Rotated on password change: every session and remember-me cookie made before dies.
    session_token: Mapped[str] = mapped_column(String(64), unique=True, default=new_session_token)

    def get_id(self) -> str:
        return self.session_token

    @property
    def is_active(self) -> bool:
        return self.is_enabled

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)
        self.session_token = new_session_token()

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def is_moderator(self) -> bool:
        return self.role in ("moderator", "admin")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def organisation_type_label(self) -> str:
        return ORGANISATION_TYPES.get(self.organisation_type, "")

    @property
    def region_label(self) -> str:
        return REGIONS.get(self.region, "")

    @property
    def public_name(self) -> str:
        """What the public sees: the name where the person agreed to it, else a pseudonym."""
        return self.name if self.is_name_public else f"Participante {self.id}"
