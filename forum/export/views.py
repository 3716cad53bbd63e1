"""Export downloads and the participation dashboard."""

from flask import Blueprint

bp = Blueprint("export", __name__, url_prefix="/datos")
