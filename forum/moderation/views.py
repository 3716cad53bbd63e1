"""Moderation pages: the queue, tags, hiding, groups, responses, audit log."""

from flask import Blueprint

from forum.moderation import models  # noqa: F401  (the tables must be known to the app)

bp = Blueprint("moderation", __name__, url_prefix="/moderacion")
