"""The demo: the 2017-2019 consultation from the seeds, open now, with fictional comments."""

import os
import secrets
from datetime import datetime, time, timedelta

import yaml
from sqlalchemy import select

from forum import clock
from forum.accounts import services as accounts
from forum.accounts.models import User
from forum.consultation import services
from forum.consultation.models import Draft
from forum.extensions import db
from forum.moderation import services as moderation
from forum.text import slugify

DEMO_FILE = os.path.join(os.path.dirname(__file__), "demo", "paga_2017_2019.yaml")
DEMO_ACCOUNTS = (
    # (role, e-mail, password, name): for trying the demo only; never loaded in production.
    ("admin", "admin@aporta.example", "demo-admin-aporta", "Administración (demo)"),
    ("moderator", "moderador@aporta.example", "demo-moderador-aporta", "Moderación (demo)"),
)


def _lima_day(offset_days: int, at: time) -> datetime:
    today = clock.to_lima(clock.now()).date()
    return datetime.combine(today + timedelta(days=offset_days), at, tzinfo=clock.LIMA)


def seed() -> str:
    """Load the demo consultation and return a one-line summary."""
    with open(DEMO_FILE, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    consultation = services.import_consultation(data, actor="seed-demo")
    services.set_window(
        consultation, _lima_day(-3, time(8, 0)), _lima_day(14, time(23, 59)), actor="seed-demo"
    )
    for role, email, password, name in DEMO_ACCOUNTS:
        if accounts.find_user_by_email(email) is None:
            accounts.register_user(
                name=name,
                email=email,
                password=password,
                organisation="Secretaría de Gestión Pública",
                organisation_type="entidad-publica",
                region="lima-metropolitana",
                is_name_public=True,
                role=role,
            )
    moderation.seed_tags()
    drafts = {
        d.code: d
        for d in db.session.scalars(select(Draft).where(Draft.consultation_id == consultation.id))
    }
    posted = 0
    start = consultation.opens_at + timedelta(hours=2)
    for comment in data.get("comments") or []:
        posted += _post(
            drafts[comment["draft"]], comment, None, start + timedelta(hours=posted * 3)
        )
    return (
        f"Demostración cargada: {consultation.title}, {len(drafts)} borradores, {posted} aportes. "
        f"Cuentas de prueba: {DEMO_ACCOUNTS[0][1]} / {DEMO_ACCOUNTS[0][2]} (admin), "
        f"{DEMO_ACCOUNTS[1][1]} / {DEMO_ACCOUNTS[1][2]} (moderación)."
    )


def _post(draft: Draft, comment: dict, parent, at: datetime) -> int:
    """Post a demo comment and its replies; returns how many were posted."""
    if parent is None and services.find_by_idempotency_key(_demo_key(draft, comment)):
        return 0  # loaded before: the demo is loaded once
    contribution = services.add_contribution(
        consultation=draft.consultation,
        draft=draft,
        body=comment["body"],
        channel="web",
        author=_demo_author(comment["author"]),
        parent=parent,
        received_at=min(at, clock.now()),
        idempotency_key=_demo_key(draft, comment) if parent is None else None,
    )
    posted = 1
    for reply in comment.get("replies") or []:
        posted += _post(draft, reply, contribution, at + timedelta(minutes=20 * posted))
    return posted


def _demo_key(draft: Draft, comment: dict) -> str:
    return f"demo:{draft.code}:{slugify(comment['body'][:40])}"[:64]


def _demo_author(author: dict) -> User:
    email = f"demo-{slugify(author['name'])[:40]}@aporta.example"
    user = accounts.find_user_by_email(email)
    if user is None:
        user = accounts.register_user(
            name=author["name"],
            email=email,
            password=secrets.token_urlsafe(24),
            organisation=author.get("organisation", ""),
            organisation_type=author["organisation_type"],
            region=author["region"],
            is_name_public=True,
        )
    return user
