"""Exports and participation figures: the contributions table, packs, open data, dashboard."""
