"""`flask export ...`."""

import click


@click.group("export")
def export_group():
    """Export the contributions table and summaries."""
