"""E-mail ingest: every message to the secretariat's inbox becomes a contribution."""
