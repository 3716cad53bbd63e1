"""Factories: build objects through the services, flushed but not committed."""

from datetime import timedelta
from itertools import count

from forum import clock
from forum.accounts import services as accounts
from forum.accounts.models import User
from forum.consultation import services as consultation
from forum.consultation.models import Consultation, Contribution, Draft
from forum.extensions import db

PASSWORD = "contraseña-segura-1"
_sequence = count(1)


def make_user(role: str = "citizen", **overrides) -> User:
    n = next(_sequence)
    fields = {
        "name": f"Persona {n}",
        "email": f"persona{n}@correo.example",
        "password": PASSWORD,
        "organisation": f"Organización {n}",
        "organisation_type": "ong",
        "region": "cusco",
        "is_name_public": True,
        "role": role,
    }
    fields.update(overrides)
    return accounts.register_user(**fields)


def make_consultation(state: str = "open", slug: str = "paga-prueba") -> Consultation:
    """A consultation with two themes and three drafts, open (or upcoming/closed) now."""
    now = clock.now()
    windows = {
        "open": (now - timedelta(days=2), now + timedelta(days=12)),
        "upcoming": (now + timedelta(days=1), now + timedelta(days=15)),
        "closed": (now - timedelta(days=20), now - timedelta(days=6)),
    }
    data = {
        "consultation": {
            "slug": slug,
            "title": "Plan de prueba",
            "summary": "Resumen de prueba.",
            "description": "Descripción.",
            "contact": {"email": "aportes@aporta.example"},
        },
        "themes": [
            {
                "slug": "saneamiento",
                "name": "Saneamiento",
                "drafts": [
                    {
                        "code": "SAN-1",
                        "title": "Sistema de información de saneamiento",
                        "responsible_institution": "Ministerio de Vivienda",
                        "ogp_values": ["Transparencia"],
                        "products": ["Plataforma"],
                    },
                    {"code": "SAN-2", "title": "Repositorio de estudios"},
                ],
            },
            {
                "slug": "salud",
                "name": "Salud",
                "drafts": [{"code": "SAL-1", "title": "Salud abierta"}],
            },
        ],
    }
    created = consultation.import_consultation(data, actor="test")
    opens, closes = windows[state]
    consultation.set_window(created, opens, closes, actor="test")
    return created


def draft(code: str = "SAN-1") -> Draft:
    return db.session.scalar(db.select(Draft).where(Draft.code == code))


def make_comment(
    target: Draft, author: User, body: str = "Un aporte.", parent=None
) -> Contribution:
    return consultation.add_contribution(
        consultation=target.consultation,
        draft=target,
        body=body,
        channel="web",
        author=author,
        parent=parent,
        received_at=clock.now(),
    )
