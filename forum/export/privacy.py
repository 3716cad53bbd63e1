"""What the public never gets from an export: e-mail addresses, even inside free text."""

import re

EMAIL_MASK = "[correo oculto]"

# Anything shaped like local@domain, however unusual (quotes, accents, "mailto:"): masking a
# few strings that are not addresses is better than publishing one that is.
_ADDRESS = re.compile(r"[^\s@<>()\[\]{}\"',;]+@[^\s@<>()\[\]{}\"',;]*[^\s@<>()\[\]{}\"',;.:!?]")


def mask_emails(value: str) -> str:
    """Replace every e-mail address in a text by "[correo oculto]"."""
    if not value or "@" not in value:
        return value
    return _ADDRESS.sub(EMAIL_MASK, value)
