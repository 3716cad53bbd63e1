"""`flask ingest ...`."""

import click


@click.group("ingest")
def ingest_group():
    """Read e-mail contributions from IMAP or files."""
