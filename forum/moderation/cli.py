"""`flask moderation ...`."""

import click


@click.group("moderation")
def moderation_group():
    """Moderation tasks from the command line."""
