"""Configuration: defaults, then the instance folder, then APORTA_* variables, then tests."""

import os

from flask import Flask

DEV_SECRET_KEY = "dev-only-not-secret"  # noqa: S105 (refused in production)


class Defaults:
    """Safe development defaults; production overrides them through the environment."""

    ENV_NAME = "development"  # "production" turns on every production guard
    SECRET_KEY = DEV_SECRET_KEY
    SQLALCHEMY_DATABASE_URI = "sqlite:///aporta.sqlite3"  # relative to the instance folder
    # Statement parameters (e-mails, password hashes) never reach error messages or logs;
    # a connection dropped by a database restart is replaced before it is used.
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"hide_parameters": True, "pool_pre_ping": True}
    MAX_CONTENT_LENGTH = 2 * 1024 * 1024
    SEND_FILE_MAX_AGE_DEFAULT = 3600  # static files: one hour, revalidated by ETag
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SECURE = False
    RATELIMIT_STORAGE_URI = "memory://"
    RATELIMIT_ENABLED = True
    RATELIMIT_HEADERS_ENABLED = True
    TIMEZONE = "America/Lima"
    SITE_NAME = "Aporta"
    BASE_URL = "http://127.0.0.1:5000"
    MAIL_FROM = "Aporta <no-responder@aporta.example>"
    MAIL_OUTBOX = "outbox"  # folder (relative to the instance folder) used when no SMTP host is set
    SMTP_HOST = ""
    SMTP_PORT = 25
    SMTP_USER = ""
    SMTP_PASSWORD = ""
    SMTP_STARTTLS = False
    PASSWORD_RESET_MAX_AGE = 3600  # seconds
    REQUIRE_EMAIL_VERIFICATION = False  # forced on in production
    EMAIL_VERIFICATION_MAX_AGE = 3 * 86400  # seconds
    COMMENT_MAX_LENGTH = 5000
    COMMENT_EDIT_MINUTES = 15
    THREADS_PER_PAGE = 20
    PAGE_CACHE_SECONDS = 10  # anonymous draft pages: per-worker micro-cache (0 turns it off)
    VISIT_FLUSH_SECONDS = 30
    VISIT_FLUSH_HITS = 200
    LOGIN_LIMIT = "10 per minute;50 per hour"  # per address
    LOGIN_ACCOUNT_LIMIT = "5 per minute;20 per hour"  # failed logins per account
    REGISTER_LIMIT = "5 per minute;30 per hour"
    RESET_LIMIT = "5 per minute;20 per hour"
    POST_LIMIT = "10 per minute;100 per hour"
    IMAP_HOST = ""
    IMAP_PORT = 993  # 143 with starttls
    IMAP_USER = ""
    IMAP_PASSWORD = ""
    IMAP_FOLDER = "INBOX"
    IMAP_SECURITY = "ssl"  # or "starttls"
    IMAP_CAFILE = ""  # a CA file to trust, e.g. for a self-signed server
    IMAP_TIMEOUT = 60
    INGEST_AFTER = "move"  # or "flag"
    INGEST_DONE_FOLDER = "Procesados"
    INGEST_ERROR_FOLDER = "Errores"
    INGEST_BATCH_SIZE = 50
    INGEST_STAFF_DOMAINS = ""  # e.g. "sgp.gob.pe": forwards from them are unwrapped
    INGEST_MESSAGE_MAX_BYTES = 10 * 1024 * 1024
    INGEST_ATTACHMENT_MAX_BYTES = 10 * 1024 * 1024
    INGEST_ATTACHMENT_TYPES = (
        "pdf,doc,docx,odt,rtf,txt,xls,xlsx,ods,csv,ppt,pptx,odp,jpg,jpeg,png,gif"
    )
    INGEST_UPLOAD_MAX_BYTES = 50 * 1024 * 1024
    INGEST_CONSULTATION = ""  # slug; default: the current consultation
    INGEST_ACK = None  # acknowledge e-mail contributions; None: on in production only
    EXPORT_SUPPRESS_BELOW = 5  # public org type x region tables hide smaller counts
    EXPORT_DOWNLOAD_LIMIT = "60 per hour"  # export downloads per client
    # XLSX and zip files with more rows are prepared in the background (export jobs).
    EXPORT_DIRECT_MAX_ROWS = 20_000
    EXPORT_JOB_FOLDER = None  # default: instance/exports (shared by every web worker)
    EXPORT_JOB_KEEP_HOURS = 24  # then the file is deleted (the job's record stays)
    EXPORT_JOB_STALE_SECONDS = 300  # a job silent this long is marked interrupted
    EXPORT_JOBS_MAX_RUNNING = 2  # jobs in preparation at once, over all workers


def load(app: Flask, test_config: dict | None) -> None:
    """Fill app.config in order; refuse to run production with a development secret."""
    app.config.from_object(Defaults)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("APORTA")
    if os.environ.get("DATABASE_URL"):
        app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    if test_config:
        app.config.update(test_config)

    app.config["SQLALCHEMY_DATABASE_URI"] = _normalise_database_url(
        app.config["SQLALCHEMY_DATABASE_URI"], app.instance_path
    )
    is_production = app.config["ENV_NAME"] == "production"
    if app.config["INGEST_ACK"] is None:
        app.config["INGEST_ACK"] = is_production
    if is_production:
        key = app.config.get("SECRET_KEY") or ""
        if key == DEV_SECRET_KEY or len(key) < 32:
            raise RuntimeError(
                "APORTA_SECRET_KEY must be a random value of 32 characters or more in "
                "production: python -c 'import secrets; print(secrets.token_hex(32))'"
            )
        app.config["SESSION_COOKIE_SECURE"] = True
        app.config["REMEMBER_COOKIE_SECURE"] = True
        app.config["REQUIRE_EMAIL_VERIFICATION"] = True


def _normalise_database_url(url: str, instance_path: str) -> str:
    """Use psycopg 3 for postgres URLs; put relative SQLite files in the instance folder."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        os.makedirs(instance_path, exist_ok=True)
        url = prefix + os.path.join(instance_path, url[len(prefix) :])
    return url
