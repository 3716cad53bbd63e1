"""Moderators' ingest pages: upload, triage, quarantine, original messages."""

from flask import Blueprint

bp = Blueprint("ingest", __name__, url_prefix="/moderacion/correo")
