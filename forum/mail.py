"""Outgoing mail: SMTP when a host is configured, otherwise .eml files in the outbox folder.

Callers send only after their database commit succeeded.
"""

import logging
import os
import smtplib
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from flask import current_app

log = logging.getLogger(__name__)


def send_mail(to: str, subject: str, body: str, headers: dict | None = None) -> EmailMessage:
    """Send one plain-text message; returns it (tests read it back)."""
    config = current_app.config
    message = EmailMessage()
    message["From"] = config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="aporta.example")
    message["Auto-Submitted"] = "auto-generated"
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)

    if config["SMTP_HOST"]:
        with smtplib.SMTP(config["SMTP_HOST"], config["SMTP_PORT"], timeout=30) as smtp:
            if config["SMTP_STARTTLS"]:
                smtp.starttls()
            if config["SMTP_USER"]:
                smtp.login(config["SMTP_USER"], config["SMTP_PASSWORD"])
            smtp.send_message(message)
        log.info("mail %r sent through SMTP", subject)
    else:
        outbox = os.path.join(current_app.instance_path, config["MAIL_OUTBOX"])
        os.makedirs(outbox, exist_ok=True)
        path = os.path.join(outbox, f"{uuid.uuid4().hex}.eml")
        with open(path, "wb") as handle:
            handle.write(message.as_bytes())
        log.info("mail %r written to the outbox folder %s", subject, outbox)
    return message
