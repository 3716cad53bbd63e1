"""Aporta: a participatory consultation forum for open-government secretariats."""

import os

from flask import Flask

from forum import backup, config, extensions, logs, security, web
from forum.accounts import cli as accounts_cli
from forum.accounts import views as accounts_views
from forum.consultation import cli as consultation_cli
from forum.consultation import views as consultation_views
from forum.export import cli as export_cli
from forum.export import views as export_views
from forum.ingest import cli as ingest_cli
from forum.ingest import views as ingest_views
from forum.moderation import cli as moderation_cli
from forum.moderation import views as moderation_views

TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "templates")
STATIC = os.path.join(os.path.dirname(os.path.dirname(__file__)), "static")


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: configuration, extensions, blueprints, CLI."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=TEMPLATES,
        static_folder=STATIC,
    )
    config.load(app, test_config)

    logs.init_app(app)
    extensions.init_app(app)
    security.init_app(app)
    web.init_app(app)

    app.register_blueprint(consultation_views.bp)
    app.register_blueprint(consultation_views.admin_bp)
    app.register_blueprint(accounts_views.bp)
    app.register_blueprint(moderation_views.bp)
    app.register_blueprint(export_views.bp)
    app.register_blueprint(ingest_views.bp)

    app.cli.add_command(consultation_cli.consultation_group)
    app.cli.add_command(consultation_cli.seed_demo)
    app.cli.add_command(accounts_cli.users_group)
    app.cli.add_command(moderation_cli.moderation_group)
    app.cli.add_command(export_cli.export_group)
    app.cli.add_command(ingest_cli.ingest_group)
    app.cli.add_command(backup.backup_command)
    app.cli.add_command(backup.restore_command)
    return app
